"""The shared loop through the LM task: determinism, exact resume after kill -9, signals, corrupt
checkpoints, early stopping and DDP equivalence."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from luoxia.checkpoint import latest_checkpoint
from luoxia.errors import CheckpointError, LuoxiaError
from luoxia.runs import read_metrics
from luoxia.train.lm import train_lm
from tests.helpers import REPO, TEXT, tiny_recipe

LUOXIA = [sys.executable, "-m", "luoxia.cli"]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT * 40, encoding="utf-8")
    return path


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir) if r["kind"] == "train"]


def cli_args(run_dir: Path, corpus: Path, *overrides: str) -> list[str]:
    return ["train", "configs/lm/tiny.yaml", f"out_dir={run_dir}", f"data.corpus={corpus}", "data.max_documents=null",
            "progress=false", "num_threads=1", "device=cpu", "log_interval=1", *overrides]


def test_same_seed_same_losses_and_loss_falls(tmp_path: Path, corpus: Path):
    for name in ("a", "b"):
        train_lm(tiny_recipe(tmp_path / name, corpus, "max_steps=30", "log_interval=1", "eval_interval=15"))
    a, b = train_losses(tmp_path / "a"), train_losses(tmp_path / "b")
    assert a == b and len(a) == 30
    assert a[-1][1] < a[0][1] - 0.5
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert {"config.yaml", "tokenizer.json", "model.safetensors", "metrics.jsonl", "tensorboard",
            "checkpoints", "summary.json", "data"} <= files


def test_resume_after_kill_9_equals_uninterrupted_run(tmp_path: Path, corpus: Path):
    steps = ["max_steps=300", "checkpoint_interval=10", "eval_interval=100", "dropout=0.1"]
    reference = tmp_path / "reference"
    train_lm(tiny_recipe(reference, corpus, *steps, "log_interval=1"))

    killed = tmp_path / "killed"
    process = subprocess.Popen([*LUOXIA, *cli_args(killed, corpus, *steps)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = killed / "checkpoints" / "latest.json"
    while process.poll() is None and not (pointer.exists() and json.loads(pointer.read_text())["step"] >= 10):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = json.loads(pointer.read_text())["step"]
    assert killed_at < 300

    result = subprocess.run([*LUOXIA, *cli_args(killed, corpus, *steps), "--resume"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert train_losses(killed) == train_losses(reference)
    final_a, final_b = load_file(reference / "checkpoints/step-0000300/model.safetensors"), \
        load_file(killed / "checkpoints/step-0000300/model.safetensors")
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_sigterm_checkpoints_and_stops(tmp_path: Path, corpus: Path):
    run = tmp_path / "run"
    process = subprocess.Popen([*LUOXIA, *cli_args(run, corpus, "max_steps=100000", "checkpoint_interval=100000")],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = run / "metrics.jsonl"
    # A logged step means the loop (and its signal handlers) are running.
    while process.poll() is None and not (metrics.exists() and metrics.stat().st_size):
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "stopped by signal" in stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "signal"
    assert latest_checkpoint(run / "checkpoints").name == f"step-{summary['step']:07d}"


def test_existing_run_is_not_overwritten_without_resume(tmp_path: Path, corpus: Path):
    train_lm(tiny_recipe(tmp_path / "run", corpus, "max_steps=5"))
    with pytest.raises(LuoxiaError, match="pass --resume"):
        train_lm(tiny_recipe(tmp_path / "run", corpus, "max_steps=5"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_manifest"])
def test_corrupt_checkpoint_gives_a_clear_error(tmp_path: Path, corpus: Path, damage: str):
    run = tmp_path / "run"
    train_lm(tiny_recipe(run, corpus, "max_steps=10", "checkpoint_interval=5"))
    checkpoint = latest_checkpoint(run / "checkpoints")
    weights = checkpoint / "model.safetensors"
    if damage == "truncate":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[-3] ^= 0xFF
        weights.write_bytes(bytes(data))
    else:
        (checkpoint / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=r"step-0000010.*(truncated|corrupt|incomplete)"):
        train_lm(tiny_recipe(run, corpus, "max_steps=20"), resume=True)


def test_corrupt_checkpoint_from_the_cli_is_one_line(tmp_path: Path, corpus: Path):
    run = tmp_path / "run"
    train_lm(tiny_recipe(run, corpus, "max_steps=5"))
    (latest_checkpoint(run / "checkpoints") / "optimizer.pt").write_bytes(b"garbage")
    result = subprocess.run([*LUOXIA, *cli_args(run, corpus, "max_steps=10"), "--resume"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "optimizer.pt" in result.stderr
    assert "Traceback" not in result.stderr


def test_early_stopping_stops_when_validation_stalls(tmp_path: Path, corpus: Path):
    run = tmp_path / "run"
    state = train_lm(tiny_recipe(run, corpus, "max_steps=200", "eval_interval=5", "early_stop_patience=2",
                                 "early_stop_min_delta=10.0"))
    assert state.stop_reason == "early_stop"
    assert state.step == 15  # first eval sets the best, the next two do not beat it by 10 nats
    assert json.loads((run / "summary.json").read_text())["stop_reason"] == "early_stop"


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path, corpus: Path):
    state = train_lm(tiny_recipe(tmp_path / "run", corpus, "max_steps=3"), resume=True)
    assert state.step == 3


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process_with_double_batch(tmp_path: Path, corpus: Path):
    common = ["max_steps=4", "eval_interval=4", "warmup_steps=0", "dropout=0.0", "log_interval=1"]
    single = tmp_path / "single"
    train_lm(tiny_recipe(single, corpus, *common, "batch_size=8"))
    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    result = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "luoxia.cli",
                             *cli_args(ddp, corpus, *common, "batch_size=4")],
                            cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    a = load_file(single / "checkpoints/step-0000004/model.safetensors")
    b = load_file(ddp / "checkpoints/step-0000004/model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), name
    losses_single = [loss for _, loss in train_losses(single)]
    losses_ddp = [loss for _, loss in train_losses(ddp)]
    assert losses_single == pytest.approx(losses_ddp, abs=1e-5)


class Recorder:
    """Records every event `fit` sends, in order."""

    def __init__(self):
        self.events: list[tuple] = []

    def on_step(self, step: int, metrics: dict) -> None:
        self.events.append(("step", step, metrics["loss"]))

    def on_eval(self, step: int, metrics: dict) -> None:
        self.events.append(("eval", step, metrics["val_loss"]))

    def on_end(self, state) -> None:
        self.events.append(("end", state.step, state.stop_reason))


def test_callbacks_see_every_step_and_evaluation_in_order(tmp_path: Path, corpus: Path):
    run, recorder, seen = tmp_path / "run", Recorder(), []
    state = train_lm(tiny_recipe(run, corpus, "max_steps=12", "eval_interval=5", "log_interval=1"),
                     callbacks=[recorder, lambda step, metrics: seen.append(step)])  # a bare function: on_eval
    rows = read_metrics(run)
    evals = [("eval", r["step"], r["val_loss"]) for r in rows if r["kind"] == "eval"]
    steps = [("step", r["step"], r["loss"]) for r in rows if r["kind"] == "train"]
    assert [e for e in recorder.events if e[0] == "eval"] == evals and [s for _, s, _ in evals] == [5, 10, 12]
    assert [e for e in recorder.events if e[0] == "step"] == steps and len(steps) == 12
    assert recorder.events.index(("eval", 5, evals[0][2])) == 5  # after step 5's event, before step 6's
    assert recorder.events[-1] == ("end", 12, None) and state.stop_reason is None
    assert seen == [5, 10, 12]


def test_a_callback_that_stops_ends_the_run_with_a_checkpoint(tmp_path: Path, corpus: Path):
    run = tmp_path / "run"

    def prune(step: int, metrics: dict) -> str | None:  # e.g. a search's pruner
        return "pruned" if step >= 10 else None

    state = train_lm(tiny_recipe(run, corpus, "max_steps=40", "eval_interval=5", "checkpoint_interval=100"),
                     callbacks=[prune])
    assert state.stop_reason == "pruned" and state.step == 10
    assert latest_checkpoint(run / "checkpoints").name.endswith("0000010")
    assert json.loads((run / "summary.json").read_text())["stop_reason"] == "pruned"
    assert (run / "model.safetensors").is_file()
    resumed = train_lm(tiny_recipe(run, corpus, "max_steps=15", "eval_interval=5", "checkpoint_interval=100"),
                       resume=True)
    assert resumed.step == 15 and resumed.stop_reason is None  # the run continues from the stop


def test_early_stopping_count_survives_a_resume(tmp_path: Path, corpus: Path):
    rule = ["eval_interval=5", "early_stop_patience=3", "early_stop_min_delta=10.0", "checkpoint_interval=5"]
    whole = train_lm(tiny_recipe(tmp_path / "whole", corpus, "max_steps=200", *rule))
    assert (whole.stop_reason, whole.step) == ("early_stop", 20)
    part = tmp_path / "part"
    train_lm(tiny_recipe(part, corpus, "max_steps=10", *rule))  # evaluations at 5 (best) and 10 (one miss)
    resumed = train_lm(tiny_recipe(part, corpus, "max_steps=200", *rule), resume=True)
    assert (resumed.stop_reason, resumed.step) == ("early_stop", 20)  # not 30: the miss at 10 still counts
