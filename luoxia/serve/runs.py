"""Run directories as the studio's runs page shows them: name, task and loss curves."""

from __future__ import annotations

from pathlib import Path

from luoxia.errors import LuoxiaError
from luoxia.registry import run_family
from luoxia.runs import METRICS_FILE, read_metrics

MAX_POINTS = 400  # per curve: enough for a plot, small enough for a page


def list_runs(runs_dir: Path) -> list[dict]:
    """Every run under ``runs_dir`` (a directory with config.yaml and metrics.jsonl) of a family
    Luoxia knows, newest first."""
    found = []
    if not runs_dir.is_dir():
        return found
    for run in sorted(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if not (run / METRICS_FILE).is_file():
            continue
        try:
            rows, task = read_metrics(run), run_family(run).task
        except (LuoxiaError, OSError, ValueError):
            continue  # a run being written or a foreign directory: skip it, the page still loads
        found.append({"name": run.name, "task": task,
                      "train": _curve(rows, "train", "loss"), "eval": _curve(rows, "eval", "val_loss")})
    return found


def _curve(rows: list[dict], kind: str, field: str) -> list[tuple[int, float]]:
    points = [(row["step"], row[field]) for row in rows if row.get("kind") == kind and field in row]
    stride = max(1, len(points) // MAX_POINTS)
    return points[::stride]
