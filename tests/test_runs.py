"""The run-directory layout: a missing run is one clear line, weights fall back to the latest
checkpoint, metrics survive a line cut short, and a fine-tuning base must exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.nn as nn

from luoxia.checkpoint import save_checkpoint
from luoxia.errors import CheckpointError
from luoxia.runs import (
    BASE_DIR,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    base_dir,
    read_metrics,
    run_recipe,
    run_task,
    run_weights,
)


def test_a_missing_run_says_how_to_make_one(tmp_path: Path):
    with pytest.raises(CheckpointError, match=r"^no run at .*missing; train one with `luoxia train"):
        run_recipe(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="not a Luoxia run directory"):
        run_recipe(tmp_path)


def test_task_defaults_to_lm_and_weights_fall_back_to_the_latest_checkpoint(tmp_path: Path):
    (tmp_path / CONFIG_FILE).write_text("seed: 1\n", encoding="utf-8")
    assert run_task(tmp_path) == "lm"
    with pytest.raises(CheckpointError, match="no weights yet"):
        run_weights(tmp_path)
    saved = save_checkpoint(tmp_path / CHECKPOINT_DIR, 5, nn.Linear(2, 2), {}, {})
    assert run_weights(tmp_path) == saved / WEIGHTS_FILE
    (tmp_path / WEIGHTS_FILE).write_bytes(b"")
    assert run_weights(tmp_path) == tmp_path / WEIGHTS_FILE


def test_metrics_stop_at_a_line_cut_short(tmp_path: Path):
    (tmp_path / METRICS_FILE).write_text(json.dumps({"step": 1}) + "\n" + '{"step": 2, "lo', encoding="utf-8")
    assert read_metrics(tmp_path) == [{"step": 1}]
    assert read_metrics(tmp_path / "elsewhere") == []


def test_a_fine_tuning_base_must_exist(tmp_path: Path):
    luoxia_base = tmp_path / "base-run"
    luoxia_base.mkdir()
    (luoxia_base / CONFIG_FILE).write_text("task: lm\n", encoding="utf-8")
    assert base_dir(tmp_path / "run", str(luoxia_base)) == tmp_path / "run" / BASE_DIR
    assert base_dir(tmp_path / "run", str(tmp_path)) == tmp_path  # a local Hugging Face directory
    with pytest.raises(CheckpointError, match="base model .*nope: no such run or Hugging Face model directory"):
        base_dir(tmp_path / "run", str(tmp_path / "nope"))
