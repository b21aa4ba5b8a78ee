"""What a run reports while it trains: a rich progress bar, TensorBoard and ``metrics.jsonl``.

Only the main process (rank 0) writes anything. ``metrics.jsonl`` has one JSON object per logged
step, flushed as it is written; on resume the rows past the checkpoint are dropped, so the file
reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from luoxia.checkpoint import atomic_write_text
from luoxia.runs import METRICS_FILE, TENSORBOARD_DIR, read_metrics


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Keep only the rows up to ``step`` (the checkpoint a resumed run continues from)."""
    rows = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in rows))


def _format_metric(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class RunLogger:
    """Progress bar + TensorBoard scalars/text + ``metrics.jsonl``; silent on non-main ranks."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, enabled: bool, progress: bool,
                 console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.metrics_file = None
        self.writer = None
        self.progress = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run wrote after the checkpoint we resume from.
        self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=start_step or None)
        self.metrics_file = open(run_dir / METRICS_FILE, "a", encoding="utf-8")
        if progress:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
            )
            self.task_id = self.progress.add_task("train", total=total_steps, completed=start_step, loss="-", rate="-")
            self.progress.start()

    def log(self, step: int, metrics: dict[str, Any], kind: str = "train") -> None:
        """Record one row: to the JSONL file, as TensorBoard scalars, and on the bar."""
        if not self.enabled:
            return
        row = {"step": step, "kind": kind, **metrics, "time": round(time.time(), 3)}
        self.metrics_file.write(json.dumps(row) + "\n")
        self.metrics_file.flush()
        for name, value in metrics.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"{kind}/{name}", value, step)
        if kind != "train":
            self.print(f"step {step}: " + "  ".join(f"{k} {_format_metric(v)}" for k, v in metrics.items()))

    def advance(self, step: int, loss: float, rate: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task_id, completed=step, loss=f"{loss:.4f}", rate=rate)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def image(self, tag: str, image, step: int) -> None:
        """An (H, W, 3) uint8 array or (3, H, W) tensor, e.g. a grid of generated samples."""
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC" if image.shape[-1] == 3 else "CHW")

    def print(self, message: str) -> None:
        if self.enabled:
            self.console.print(message)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.writer is not None:
            self.writer.close()
        if self.metrics_file is not None:
            self.metrics_file.close()
