"""The LSTM/GRU language model as a family of ``task: lm``: registry selection by ``model.family``,
same seed same losses, exact resume after a crash (stateful and not), and truncated BPTT that
carries each stream's state into its next window without letting gradients through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from luoxia.config import load_config, resolve_recipe
from luoxia.data.packed import StreamSampler
from luoxia.errors import ConfigError
from luoxia.registry import family, load_recipe, recipe_family
from luoxia.runs import read_metrics
from luoxia.runtime import DistributedContext
from luoxia.train.lm import LMRecipe, prepare_run_dir
from luoxia.train.logging import RunLogger
from luoxia.train.loop import ONE_PROCESS
from luoxia.train.rnn import RNNRecipe, RNNTask, train_rnn
from tests.helpers import REPO, TEXT

TINY_RNN = ["model.n_layer=1", "model.n_embd=16", "model.hidden_size=16", "model.block_size=16", "batch_size=4",
            "warmup_steps=2", "eval_interval=5", "eval_batches=2", "log_interval=1", "checkpoint_interval=5",
            "keep_checkpoints=10", "progress=false", "num_threads=1", "device=cpu", "data.max_documents=null"]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT * 8, encoding="utf-8")  # ~2,000 characters: 4 streams of ~500
    return path


def rnn_recipe(out_dir: Path, corpus: Path, *overrides: str) -> RNNRecipe:
    return load_config(RNNRecipe, resolve_recipe("lm/lstm_shakespeare.yaml"),
                       [f"out_dir={out_dir}", f"data.corpus={corpus}", *TINY_RNN, *overrides])


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir) if r["kind"] == "train"]


def test_registry_selects_the_family_by_model_family(tmp_path: Path):
    assert family("lm").model == "gpt" and family("lm", "rnn").recipe is RNNRecipe
    assert isinstance(load_recipe(REPO / "configs/lm/gru_poems.yaml"), RNNRecipe)
    assert isinstance(load_recipe(REPO / "configs/lm/tiny.yaml"), LMRecipe)  # no model.family: the GPT
    assert recipe_family({"task": "lm", "model": {"family": "rnn"}}).model == "rnn"
    with pytest.raises(ConfigError, match=r"^\S+tiny.yaml: unknown model.family 'cnn' for task 'lm'; valid: gpt, rnn$"):
        load_recipe(REPO / "configs/lm/tiny.yaml", ["model.family=cnn"])
    with pytest.raises(ConfigError, match="^train.optimizer=muon is not available here: torch's LSTM/GRU"):
        load_recipe(REPO / "configs/lm/lstm_shakespeare.yaml", ["train.optimizer=muon"])


def test_same_seed_same_losses_and_loss_falls(tmp_path: Path, corpus: Path):
    for name in ("a", "b"):
        train_rnn(rnn_recipe(tmp_path / name, corpus, "max_steps=12", "model.cell=gru", "dropout=0.1", "lr=0.02"))
    a, b = train_losses(tmp_path / "a"), train_losses(tmp_path / "b")
    assert a == b and len(a) == 12  # bit-identical: same process, same seed
    assert a[-1][1] < a[0][1] - 0.3


class Crash:
    """Raises after a step, as a killed process stops: the last checkpoint is all that survives."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stateful", [True, False])
def test_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path: Path, corpus: Path, stateful: bool):
    """In-process (a kill -9 of a CLI run costs two interpreter starts; the loop's own test covers that
    path); stateful, the carried state travels in the checkpoint: without it the resumed losses differ."""
    steps = ["max_steps=20", f"train.stateful={str(stateful).lower()}", "dropout=0.1"]
    train_rnn(rnn_recipe(tmp_path / "reference", corpus, *steps))
    with pytest.raises(KeyboardInterrupt):
        train_rnn(rnn_recipe(tmp_path / "killed", corpus, *steps), callbacks=[Crash(13)])  # last checkpoint: 10
    train_rnn(rnn_recipe(tmp_path / "killed", corpus, *steps), resume=True)
    assert_same_runs(tmp_path / "reference", tmp_path / "killed", 20)


def assert_same_runs(reference: Path, resumed: Path, last_step: int) -> None:
    assert train_losses(resumed) == train_losses(reference)  # bit-identical: same seed, exact resume
    final = [load_file(run / f"checkpoints/step-{last_step:07d}/model.safetensors") for run in (reference, resumed)]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])


def test_streams_are_contiguous_and_restart_each_epoch():
    tokens = np.arange(1000, dtype=np.uint16)
    streams = StreamSampler(tokens, block_size=10, batch_size=4, seed=0)
    assert streams.per_epoch == 24  # 250 tokens a stream: a shift below 10, 24 windows of 10, one last target
    for index in range(streams.per_epoch - 1):
        (x0, y0), (x1, _) = streams.batch(index), streams.batch(index + 1)
        assert torch.equal(x1[:, 0], y0[:, -1]) and torch.equal(x0[:, 1:], y0[:, :-1])
    assert [streams.fresh(i) for i in (0, 1, 23, 24, 48)] == [True, False, False, True, True]
    assert (streams.batch(24)[0][:, 0] % 250 < 10).all()  # a new epoch starts each stream again


def test_stateful_training_carries_the_detached_state(tmp_path: Path, corpus: Path):
    recipe = rnn_recipe(tmp_path / "run", corpus, "model.n_layer=2")
    _, data_dir = prepare_run_dir(recipe, ONE_PROCESS)
    task = RNNTask(recipe, data_dir, ONE_PROCESS, torch.device("cpu"))
    seen: list = []
    task.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs.get("state")),
                                         with_kwargs=True)
    task.train_step(0)
    after_first = task.state
    task.train_step(1)
    assert seen[0] is None  # an epoch starts from zeros
    h, c = seen[1]
    assert h is after_first[0] and c is after_first[1]  # window 1 starts where window 0 ended …
    assert h.grad_fn is None and not h.requires_grad and h.shape == (2, 4, 16)  # … with the gradient cut there
    with torch.no_grad():  # … and it is the final state of reading window 0 with the weights before step 0
        fresh = RNNTask(recipe, data_dir, ONE_PROCESS, torch.device("cpu"))
        x, y = task.streams.batch(0)
        _, _, (h0, c0) = fresh.model(x, y)
    # Training ran under autograd, which takes another CPU kernel than no_grad: float32 rounding apart.
    torch.testing.assert_close(h, h0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, c0, rtol=1e-5, atol=1e-6)


def test_random_windows_start_from_zeros(tmp_path: Path, corpus: Path):
    recipe = rnn_recipe(tmp_path / "run", corpus, "train.stateful=false")
    _, data_dir = prepare_run_dir(recipe, ONE_PROCESS)
    task = RNNTask(recipe, data_dir, ONE_PROCESS, torch.device("cpu"))
    seen: list = []
    task.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs.get("state", args[2:])),
                                         with_kwargs=True)
    task.train_step(0)
    task.train_step(1)
    assert all(state in (None, ()) for state in seen) and task.state is None


def test_training_samples_come_from_the_rnn_generator(tmp_path: Path, corpus: Path, monkeypatch):
    texts: list[str] = []
    monkeypatch.setattr(RunLogger, "text", lambda self, tag, text, step: texts.append(text))
    train_rnn(rnn_recipe(tmp_path / "run", corpus, "max_steps=2", "sample_interval=2", "sample.max_new_tokens=8",
                         "sample.prompt=To"))
    assert len(texts) == 1 and texts[0].startswith("To") and len(texts[0]) > 2


def test_stateful_training_under_torchrun_is_refused_in_one_line(tmp_path: Path, corpus: Path):
    recipe = rnn_recipe(tmp_path / "run", corpus)
    _, data_dir = prepare_run_dir(recipe, ONE_PROCESS)
    with pytest.raises(ConfigError, match="^train.stateful=true under torchrun is not supported .*stateful=false$"):
        RNNTask(recipe, data_dir, DistributedContext(rank=0, world_size=2), torch.device("cpu"))
