"""Summaries on the test splits: ROUGE-1/2/L F1 (rouge-score; best of all references, as SciTLDR
reports; Chinese on characters) for lead-1, TextRank and the fine-tuned model, and the length error
|produced − requested| when the reference's length is requested.

    python bench/apps_summarize.py [--model RUN] [--pretrain-steps N] [--finetune-steps N]
                                   [--test-limit N] [--model-limit N] [--zh-limit N]

Data: ../shared/data/summarization_en_scitldr (SciTLDR-A: abstract → TLDR; train trains, dev selects,
test scores, 1-3 references each) and summarization_zh_csl (abstract → title; test scores the
extractive baselines, and a Chinese run given with --zh-model, trained with configs/apps/summarize_csl*.yaml
on 80% of CSL dev; none is trained here). The model: with no --model, a small BPE
GPT (configs/apps/summarize_scitldr_base.yaml) is pre-trained on the train abstracts and TLDRs,
then fully fine-tuned on (abstract → TLDR) chats with a length token
(configs/apps/summarize_scitldr.yaml; dev's validation loss keeps the best weights); each stage
stops at its step count or time budget. No pre-trained decoder is available offline, so this model
is tiny and weak: the numbers say how far lead-1 is from it, not what abstractive summarisation can do.

- rouge: lead-1 and TextRank (k=1, character n-grams) on all of test (and CSL test); the model
  (length from its length head) and the two baselines on the first --model-limit test documents;
- length_error: mean |produced − requested| in words (characters for CSL) when the first
  reference's length is requested: the model through its length token, lead/TextRank by keeping
  ranked sentences until nearest it.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from report import print_report

BASE = "configs/apps/summarize_scitldr_base.yaml"
RECIPE = "configs/apps/summarize_scitldr.yaml"


def score(method: str, pairs, writer=None, head=None, config=None) -> dict:
    """ROUGE of ``method`` (k=1 / the head's length) and its length error at the reference's length."""
    from luoxia.apps.abstractive import text_length
    from luoxia.apps.summarize import summarize
    from luoxia.evaluate.rouge import rouge

    free = [summarize(p.document, method, writer=writer, head=head, config=config).text for p in pairs]
    asked = [text_length(p.references[0]) for p in pairs]
    sized = [summarize(p.document, method, length=n, writer=writer, config=config) for p, n in zip(pairs, asked,
                                                                                                   strict=True)]
    scores = rouge(free, [p.references for p in pairs])
    return {**{k: round(v, 4) for k, v in scores.items()},
            "length_error": round(float(np.mean([abs(s.length - n) for s, n in zip(sized, asked, strict=True)])), 2),
            "mean_length": round(float(np.mean([text_length(t) for t in free])), 2)}


def train_model(tmp: Path, args) -> tuple[Path, dict]:
    """Prepare the data, pre-train the base and fine-tune it; the run directory and what it took."""
    from luoxia.apps.abstractive import LENGTH_HEAD_FILE, prepare
    from luoxia.registry import load_recipe
    from luoxia.train.finetune import finetune
    from luoxia.train.lm import train_lm
    from luoxia.train.loop import TimeBudget

    data = tmp / "data"
    counts = prepare(data, "en", seed=args.seed)
    common = ["train.progress=false", "train.device=cpu", f"seed={args.seed}"]
    start = time.perf_counter()
    base = train_lm(load_recipe(BASE, [f"out_dir={tmp}/base", f"data.corpus={data}/pretrain.txt",
                                       f"train.max_steps={args.pretrain_steps}", *common], allowed=("lm",)),
                    callbacks=[TimeBudget(args.pretrain_budget)])
    pretrain_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tuned = finetune(load_recipe(RECIPE, [f"out_dir={tmp}/run", f"base_model={tmp}/base",
                                          f"data.train={data}/train.jsonl", f"data.val={data}/dev.jsonl",
                                          f"train.max_steps={args.finetune_steps}", *common], allowed=("finetune",)),
                     callbacks=[TimeBudget(args.finetune_budget)])
    shutil.copy(data / LENGTH_HEAD_FILE, tmp / "run" / LENGTH_HEAD_FILE)
    return tmp / "run", {"pairs": counts, "pretrain_steps": base.step, "pretrain_seconds": round(pretrain_seconds, 1),
                         "pretrain_val_loss": round(base.best_val, 4), "finetune_steps": tuned.step,
                         "finetune_seconds": round(time.perf_counter() - start, 1),
                         "finetune_val_loss": round(tuned.best_val, 4)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a fine-tuned run to score (default: train one here)")
    parser.add_argument("--pretrain-steps", type=int, default=150, help="base pre-training steps")
    parser.add_argument("--pretrain-budget", type=float, default=180, help="seconds of base pre-training at most")
    parser.add_argument("--finetune-steps", type=int, default=60, help="fine-tuning steps")
    parser.add_argument("--finetune-budget", type=float, default=90, help="seconds of fine-tuning at most")
    parser.add_argument("--test-limit", type=int, help="SciTLDR test documents for the baselines (default: all)")
    parser.add_argument("--zh-limit", type=int, help="CSL test documents (default: all)")
    parser.add_argument("--model-limit", type=int, default=40, help="test documents the model summarises")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="the model's longest summary in tokens")
    parser.add_argument("--no-model", action="store_true", help="the extractive baselines only")
    parser.add_argument("--zh-model", help="a fine-tuned CSL run (configs/apps/summarize_csl.yaml) to score on "
                        "the first --model-limit CSL test documents (default: none)")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()

    from luoxia.apps.abstractive import LENGTH_HEAD_FILE, AbstractiveConfig, LengthHead, read_csl, read_scitldr
    from luoxia.registry import load_writer

    torch.manual_seed(args.seed)
    test, csl = read_scitldr("test")[:args.test_limit], read_csl("test")[:args.zh_limit]
    report: dict = {"benchmark": "apps_summarize", "n_test": len(test), "n_csl_test": len(csl)}
    report["scitldr"] = {m: score(m, test) for m in ("lead", "textrank")}
    report["csl"] = {m: score(m, csl) for m in ("lead", "textrank")}
    if not args.no_model:
        with tempfile.TemporaryDirectory() as tmp:
            run, training = (Path(args.model), {}) if args.model else train_model(Path(tmp), args)
            writer = load_writer(str(run), device="cpu")
            head = LengthHead.load(run / LENGTH_HEAD_FILE)
            config = AbstractiveConfig(max_new_tokens=args.max_new_tokens, seed=args.seed)
            subset = test[:args.model_limit]
            start = time.perf_counter()
            model = score("model", subset, writer, head, config)
            seconds = time.perf_counter() - start
            report["model_subset"] = {"n": len(subset), "model": model, "model_seconds": round(seconds, 1),
                                      **{m: score(m, subset) for m in ("lead", "textrank")}}
            report["model_training"] = training or {"run": str(run)}
    if args.zh_model:
        run = Path(args.zh_model)
        config = AbstractiveConfig(max_new_tokens=args.max_new_tokens, seed=args.seed)
        subset = csl[:args.model_limit]
        report["csl_model_subset"] = {"n": len(subset), "model": score(
            "model", subset, load_writer(str(run), device="cpu"), LengthHead.load(run / LENGTH_HEAD_FILE), config),
            **{m: score(m, subset) for m in ("lead", "textrank")}}
    report["threads"] = torch.get_num_threads()
    return report


if __name__ == "__main__":
    print_report(main)
