"""LSTM, GRU and GPT language models on Tiny Shakespeare at equal wall time, plus a bigram baseline.

    python bench/lm_families.py [--seconds 60 180] [--threads N]

Data: the nanoGPT split (first 90% / last 10% of the characters, 65-character vocabulary) from
../shared/data/tinyshakespeare (or $LUOXIA_DATA_DIR); without it the script stops with a one-line
error. The corpus is prepared once and every model trains on the same prepared directory.

Each model trains through the real ``train_rnn`` / ``train_lm``. A probe run of 40 steps times its
steps; the real run then plans as many steps as fit in ``--seconds``, warms up for 30 and decays the
learning rate linearly to zero over them (each model gets a full schedule in its budget), and a
callback stops it if ``--seconds`` of wall time pass first (timed from the end of its first step,
which carries one-off warm-up costs). Only optimizer steps are timed: evaluation runs after the stop.

Sizes, chosen for similar parameter counts (~0.56-0.63M), all reading 32 windows of 64 characters a step:
- GPT: configs/lm/shakespeare_char.yaml's model and optimizer (2 blocks × 160, RoPE, RMSNorm,
  squared-ReLU MLP, Muon on hidden matrices);
- LSTM: 2 layers, 128-wide embedding, hidden 192, AdamW 3e-3, stateful truncated BPTT;
- GRU: 2 layers, 128-wide embedding, hidden 224, AdamW 3e-3, stateful truncated BPTT.

Reported per model: ``val_loss`` on the whole validation split in consecutive 64-character windows,
each from an empty context (the same windows for all three, through each run's `luoxia.load` generator);
for the RNNs also ``val_loss_streamed``, the validation split read as 16 streams with the state
carried across windows (how a stateful RNN is used); training tokens/s; parameters; steps. The
character bigram baseline counts pairs on the train split with add-one smoothing. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from report import print_report

from luoxia.config import load_config, resolve_recipe
from luoxia.data.packed import WindowSampler, open_tokens, read_meta
from luoxia.data.prepare import DataConfig, prepare_cached
from luoxia.generate.load import load_gpt
from luoxia.generate.rnn import load_rnn
from luoxia.generate.text import CausalLMGenerator
from luoxia.models.rnn import RNNLM, detach_state
from luoxia.registry import load
from luoxia.train.lm import LMRecipe, train_lm
from luoxia.train.loop import TimeBudget
from luoxia.train.rnn import RNNRecipe, train_rnn

DATA = DataConfig(corpus="shakespeare", tokenizer="char", eos=False, split="tail", val_fraction=0.1)
# Equal-time settings shared by all three: evaluate only after the run; a linear decay to zero over the
# steps a probe run says fit in the budget (`planned_steps`).
LOOP = ["schedule=linear", "min_lr_ratio=0.0", "warmup_steps=30", "eval_interval=1000000000",
        "checkpoint_interval=1000000000", "log_interval=50", "eval_batches=8", "eval_batch_size=64",
        "progress=false", "sample_interval=null", "batch_size=32", "model.block_size=64"]
PROBE_STEPS = 40
RNN = ["lr=3.0e-3", "weight_decay=0.0", "train.stateful=true", "model.n_layer=2", "model.n_embd=128"]
MODELS = {
    "lstm": (RNNRecipe, "lm/lstm_shakespeare.yaml", train_rnn, [*RNN, "model.cell=lstm", "model.hidden_size=192"]),
    "gru": (RNNRecipe, "lm/lstm_shakespeare.yaml", train_rnn, [*RNN, "model.cell=gru", "model.hidden_size=224"]),
    "gpt": (LMRecipe, "lm/shakespeare_char.yaml", train_lm, []),
}


def bigram_loss(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Mean next-character loss (nats) on ``val`` of add-one-smoothed bigram counts from ``train``."""
    counts = np.bincount(train[:-1].astype(np.int64) * vocab_size + train[1:], minlength=vocab_size ** 2)
    counts = counts.reshape(vocab_size, vocab_size) + 1.0
    log_p = np.log(counts / counts.sum(axis=1, keepdims=True))
    return float(-log_p[val[:-1].astype(np.int64), val[1:].astype(np.int64)].mean())


@torch.no_grad()
def window_loss(run_dir: Path, tokens: np.ndarray, block: int = 64, batch_size: int = 64) -> float:
    """Mean next-token loss of a run over ``tokens`` in consecutive ``block``-token windows, each read
    from an empty context (the last partial window is left out)."""
    generator = load(run_dir, device="cpu")
    assert isinstance(generator, CausalLMGenerator), run_dir
    total, count = 0.0, 0
    for x, y in WindowSampler(tokens, block, batch_size, seed=0).sequential(batch_size):
        logits = generator.sequence_logits(x)  # (B, T, V)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    return total / count


@torch.no_grad()
def streamed_loss(model: RNNLM, tokens: np.ndarray, streams: int = 16, block: int = 64) -> float:
    """Loss over ``streams`` contiguous streams of ``tokens``, the state carried across windows."""
    length = (len(tokens) - 1) // streams
    rows = np.stack([tokens[i * length : (i + 1) * length + 1] for i in range(streams)]).astype(np.int64)
    data = torch.from_numpy(rows)  # (S, length + 1)
    state, total = None, 0.0
    for start in range(0, length, block):
        x, y = data[:, start : min(start + block, length)], data[:, start + 1 : min(start + block, length) + 1]
        logits, _, state = model(x, state=state)
        state = detach_state(state)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
    return total / (streams * length)


def planned_steps(name: str, seconds: float, data_dir: Path, out: Path) -> int:
    """The steps that fit in ``seconds``, from a probe run's timed steps (all but its first)."""
    recipe_class, recipe_path, train, overrides = MODELS[name]
    recipe = load_config(recipe_class, resolve_recipe(recipe_path),
                         [f"out_dir={out}", f"prepared_data={data_dir}", *LOOP, *overrides,
                          f"max_steps={PROBE_STEPS}"])
    probe = TimeBudget(float("inf"))
    train(recipe, callbacks=[probe])
    return max(PROBE_STEPS, int(seconds * probe.steps / probe.elapsed))


def run_one(name: str, seconds: float, data_dir: Path, out: Path) -> dict:
    recipe_class, recipe_path, train, overrides = MODELS[name]
    planned = planned_steps(name, seconds, data_dir, out.with_name(out.name + "-probe"))
    recipe = load_config(recipe_class, resolve_recipe(recipe_path),
                         [f"out_dir={out}", f"prepared_data={data_dir}", *LOOP, *overrides, f"max_steps={planned}"])
    budget = TimeBudget(seconds)  # stops a run the probe under-estimated; a faster one ends at ``planned``
    state = train(recipe, callbacks=[budget])
    tokens = budget.steps * recipe.train.batch_size * recipe.model.block_size  # read in the timed steps
    val = np.asarray(open_tokens(data_dir, "val"))
    report = {"val_loss": round(window_loss(out, val), 4), "steps": state.step, "planned_steps": planned,
              "train_seconds": round(budget.elapsed, 2), "tokens_per_s": round(tokens / max(budget.elapsed, 1e-9), 1)}
    if recipe_class is RNNRecipe:
        model, _ = load_rnn(out, device="cpu")
        report["val_loss_streamed"] = round(streamed_loss(model, val), 4)
        report["params"] = model.num_params()
    else:
        report["params"] = sum(p.numel() for p in load_gpt(out, device="cpu")[0].parameters())
    return report


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[60.0], help="wall-time budgets per model")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        prepare_cached(DATA, data_dir)
        train, val = np.asarray(open_tokens(data_dir, "train")), np.asarray(open_tokens(data_dir, "val"))
        vocab = read_meta(data_dir)["vocab_size"]
        results = {f"{seconds:g}": {name: run_one(name, seconds, data_dir, Path(tmp) / f"{name}-{seconds:g}")
                                    for name in MODELS} for seconds in args.seconds}
    bigram = bigram_loss(train, val, vocab)
    return {"benchmark": "lm_families", "data": "tinyshakespeare nanoGPT split (char)", "vocab_size": vocab,
            "train_tokens": len(train), "val_tokens": len(val), "bigram_val_loss": round(bigram, 4),
            "uniform_val_loss": round(math.log(vocab), 4), "results": results, "threads": torch.get_num_threads()}


if __name__ == "__main__":
    print_report(main)
