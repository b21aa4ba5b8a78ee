"""Run directories as the studio's runs page shows them: name, task and loss curves."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from luoxia.errors import LuoxiaError
from luoxia.registry import run_family
from luoxia.runs import METRICS_FILE, read_metrics

MAX_POINTS = 400  # per curve: enough for a plot, small enough for a page
log = logging.getLogger("luoxia.serve")
# What a run being written, a foreign directory or a damaged file raises: skip that entry.
UNREADABLE = (LuoxiaError, OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError)


def list_runs(runs_dir: Path) -> list[dict]:
    """Every run under ``runs_dir`` (a directory with config.yaml and metrics.jsonl) of a family
    Luoxia knows, newest first; an entry that cannot be read is logged and skipped, so the page still loads."""
    found = []
    if not runs_dir.is_dir():
        return found
    for run in sorted(runs_dir.iterdir(), key=_mtime, reverse=True):
        try:
            if not run.exists():
                raise FileNotFoundError(run.name)  # a broken link
            if not (run / METRICS_FILE).is_file():
                continue
            rows, task = read_metrics(run), run_family(run).task
            found.append({"name": run.name, "task": task,
                          "train": _curve(rows, "train", "loss"), "eval": _curve(rows, "eval", "val_loss")})
        except UNREADABLE as error:
            log.warning("runs page: skipping %s (%s)", run.name, type(error).__name__)
    return found


def _mtime(path: Path) -> float:
    """Modification time, 0 for an entry that cannot be stat'ed (a broken symlink)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _curve(rows: list[dict], kind: str, field: str) -> list[tuple[int, float]]:
    points = [(row["step"], row[field]) for row in rows if row.get("kind") == kind and field in row]
    stride = max(1, len(points) // MAX_POINTS)
    return points[::stride]
