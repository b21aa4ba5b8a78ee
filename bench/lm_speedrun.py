"""Speedrun: seconds from process start until Tiny Shakespeare char-level validation loss ≤ 1.886.

    python bench/lm_speedrun.py [key=value ...]      # overrides of configs/lm/shakespeare_char.yaml

Data: the nanoGPT split (first 90% / last 10% of the characters, 65-character vocabulary), read
from ../shared/data/tinyshakespeare (or $LUOXIA_DATA_DIR). The clock starts when the operating
system started this process, so imports, data preparation and every evaluation count. Validation
loss is measured on a fixed set of validation windows (32,768 tokens, twice what nanoGPT's
``--eval_iters=20`` README command averages over); after the clock stops, the whole validation
split is scored too. Prints one JSON line.

Reference on the same machine: nanoGPT's CPU "baby GPT" README command reaches 1.8857 after
2,000 iterations; see the closing notes for its measured wall time.
"""

from __future__ import annotations

import os
import time


def process_start_time() -> float:
    """Wall-clock time at which this process was started (Linux /proc), else now."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
        return boot + start_ticks / ticks
    except (OSError, ValueError, StopIteration, IndexError):
        return time.time()


STARTED = process_start_time()

import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

TARGET = 1.886


def main(overrides: list[str]) -> dict:
    from luoxia.config import load_config, resolve_recipe
    from luoxia.evaluate.lm import evaluate_run
    from luoxia.runs import read_metrics
    from luoxia.train.lm import LMRecipe, train_lm

    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_config(LMRecipe, resolve_recipe("lm/shakespeare_char.yaml"), [
            f"out_dir={tmp}/run", f"train.target_val_loss={TARGET}", "progress=false", *overrides])
        state = train_lm(recipe)
        rows = read_metrics(recipe.out_dir)
        evals = [r for r in rows if r["kind"] == "eval"]
        hit = next((r for r in evals if r["val_loss"] <= TARGET), None)
        train_rows = [r for r in rows if r["kind"] == "train" and "tok_per_s" in r]
        full_val = evaluate_run(recipe.out_dir, device="cpu")["loss"]
    return {
        "benchmark": "lm_speedrun",
        "total_seconds": round(time.time() - STARTED, 2),
        "target_val_loss": TARGET,
        "reached": hit is not None,
        "seconds_to_target": round(hit["time"] - STARTED, 2) if hit else None,
        "steps": hit["step"] if hit else state.step,
        "tokens_per_s": round(sum(r["tok_per_s"] for r in train_rows) / max(1, len(train_rows)), 1),
        "final_val_loss": round(evals[-1]["val_loss"], 4) if evals else None,
        "full_val_split_loss": round(full_val, 4),
        "tokens_seen": (hit or {"step": state.step})["step"] * recipe.train.batch_size * recipe.model.block_size,
        "config": {"model": recipe.model.model_dump(exclude={"vocab_size"}), "train": recipe.train.model_dump(
            include={"optimizer", "lr", "muon_lr", "batch_size", "warmup_steps", "schedule", "decay_start",
                     "min_lr_ratio", "max_steps", "eval_interval", "eval_batches", "weight_decay", "beta2"})},
        "overrides": overrides,
        "threads": __import__("torch").get_num_threads(),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])), flush=True)
