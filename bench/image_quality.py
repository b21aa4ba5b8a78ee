"""Image generators on MNIST under one CPU training budget: FID, KID, conditional accuracy, per-class
coverage and sampling speed of the VAE, the GAN and the diffusion model.

    python bench/image_quality.py [--minutes 5] [--n-per-class 100] [--families vae gan ddpm] [--keep DIR]

Data: the 10,000 MNIST images in ../shared/data/mnist (or $LUOXIA_DATA_DIR) at 28×28, split 80/20 by
the recipes' seed; every model trains on the same 8,000 and is measured against the same 2,000
held-out images. First the digit classifier (configs/image/classifier.yaml) is trained once: its
penultimate layer gives the features for FID and KID, its predictions the conditional accuracy
(samples of class c called c) and coverage (share of all samples called c; 10% each when nothing
collapses). Then each family trains from its recipe (configs/image/<family>.yaml, MNIST at 28×28)
for as many steps as fit in ``--minutes`` on this machine: the steps come from a short timing run
of the same recipe, so the budget is met up to that estimate and the real training time is printed.
Sampling: ``--n-per-class`` images per class, seed 0, with each recipe's sampling settings (diffusion: 25
DDIM steps, guidance 1.25).

Prints one JSON line per model (and one for the classifier).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

MNIST = ["data.source=mnist", "data.image_size=28", "train.progress=false"]


def train(recipe: str, out_dir: Path, overrides: list[str]):
    from luoxia.registry import load_recipe
    from luoxia.runs import read_metrics
    from luoxia.train.image import train_image

    started = time.perf_counter()
    train_image(load_recipe(recipe, [f"out_dir={out_dir}", *MNIST, *overrides]))
    return time.perf_counter() - started, read_metrics(out_dir)


def steps_for_budget(family: str, minutes: float, workdir: Path, probe_steps: int = 20) -> int:
    """Steps of ``family`` that fit in ``minutes``, from the time of a short run (after its first step)."""
    _, rows = train(f"configs/image/{family}.yaml", workdir / f"probe-{family}",
                    [f"train.max_steps={probe_steps}", "train.log_interval=1", f"train.eval_interval={10 ** 9}",
                     f"train.checkpoint_interval={10 ** 9}", "train.sample_interval=null"])
    times = [row["time"] for row in rows if row["kind"] == "train"]
    per_step = (times[-1] - times[0]) / (len(times) - 1)
    return max(probe_steps, int(minutes * 60 / per_step))


def main() -> None:
    from luoxia.evaluate.image import evaluate_image_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per generator")
    parser.add_argument("--n-per-class", type=int, default=100)
    parser.add_argument("--families", nargs="+", default=["vae", "gan", "ddpm"])
    parser.add_argument("--keep", type=Path, help="keep the runs here (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        seconds, rows = train("configs/image/classifier.yaml", workdir / "classifier", [])
        evals = [row for row in rows if row["kind"] == "eval"]
        print(json.dumps({"benchmark": "image_quality", "model": "classifier", "train_seconds": round(seconds, 1),
                          "val_accuracy": evals[-1].get("val_accuracy")}), flush=True)
        for family in args.families:
            steps = steps_for_budget(family, args.minutes, workdir)
            seconds, _ = train(f"configs/image/{family}.yaml", workdir / family, [f"train.max_steps={steps}"])
            result = evaluate_image_run(workdir / family, workdir / "classifier", args.n_per_class, seed=0,
                                        device="cpu")
            print(json.dumps({
                "benchmark": "image_quality", "model": family, "budget_minutes": args.minutes, "steps": steps,
                "train_seconds": round(seconds, 1), "fid": round(result["fid"], 3),
                "kid_mean": round(result["kid_mean"], 5), "kid_std": round(result["kid_std"], 5),
                "conditional_accuracy": round(result["accuracy"], 4),
                "min_coverage": round(result["min_coverage"], 4),
                "coverage": {k: round(v, 4) for k, v in result["coverage"].items()},
                "per_class_accuracy": {k: round(v, 4) for k, v in result["per_class_accuracy"].items()},
                "samples_per_s": round(result["samples_per_s"], 1), "n": result["n"],
                "real_accuracy": round(result["real_accuracy"], 4), "threads": torch.get_num_threads(),
            }), flush=True)


if __name__ == "__main__":
    main()
