"""Run directories as the studio's runs page shows them: name, task and loss curves."""

from __future__ import annotations

from pathlib import Path

MAX_POINTS = 400  # per curve: enough for a plot, small enough for a page


def list_runs(runs_dir: Path) -> list[dict]:
    """Every run under ``runs_dir`` (a directory with config.yaml and metrics.jsonl), newest first."""
    from luoxia.errors import LuoxiaError
    from luoxia.generate.load import run_recipe
    from luoxia.train.logging import read_metrics

    found = []
    if not runs_dir.is_dir():
        return found
    for run in sorted(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if not (run / "metrics.jsonl").is_file():
            continue
        try:
            recipe, rows = run_recipe(run), read_metrics(run)
        except (LuoxiaError, OSError, ValueError):
            continue  # a run being written or a foreign directory: skip it, the page still loads
        found.append({"name": run.name, "task": recipe.get("task", "lm"),
                      "train": _curve(rows, "train", "loss"), "eval": _curve(rows, "eval", "val_loss")})
    return found


def _curve(rows: list[dict], kind: str, field: str) -> list[tuple[int, float]]:
    points = [(row["step"], row[field]) for row in rows if row.get("kind") == kind and field in row]
    stride = max(1, len(points) // MAX_POINTS)
    return points[::stride]
