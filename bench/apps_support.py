"""The support assistant on a held-out split of the Bitext FAQ: intent accuracy, retrieval hit@k
(an answer of the right intent; BM25, dense and hybrid), slot-fill accuracy, hand-off
precision/recall with banking77 as out of domain, latency per turn.

    python bench/apps_support.py [--max-steps N | --time-budget S] [--set key=value ...]

Data: ../shared/data/customer_support_faq (or $LUOXIA_DATA_DIR), split by question with
`luoxia.apps.faq.split_faq` (seeded, stratified by intent: 80/10/10). The intent classifier is
configs/apps/support_intents.yaml (LoRA on MiniLM) trained here on the train split (its
validation loss, for picking the best weights, on dev). `build_support` indexes the train split and
tunes the hand-off thresholds (classifier confidence, similarity of the closest FAQ question) on dev
plus a seeded sample of banking77 *train* questions as out of domain. Everything is then scored on
the test split, which nothing above sees, and banking77 *test* questions as out of domain.

- intent accuracy: the classifier's top intent against the gold one;
- retrieval hit@1/hit@5, per mode: the top 1 / 5 FAQ entries include one of the gold intent; and
  ``answer_hit@1``: the entry the assistant answers from (the best of the predicted intent);
- slot-fill accuracy: over test questions with an annotated entity, the learnt pattern's value
  equals the annotation (its offset span or its value, case and surrounding punctuation ignored);
- hand-off: positives are banking77 test questions and test questions of the hand-off intent
  (contact_human_agent); a hand-off for any reason counts as predicted positive;
- latency: wall time of `SupportApp.reply` per one-turn conversation (classifier, two searches,
  slots, the mood tagger; no guard, no writer) on
  ``--latency-turns`` test questions, p50/p95, on this CPU.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from report import print_report

from luoxia.apps.faq import read_faq, write_split
from luoxia.apps.slots import TRIM, find_slots, surface
from luoxia.apps.support import best_hit, build_support, handoff_reason, load_support, read_texts
from luoxia.data.corpora import resolve_data_path
from luoxia.registry import load_recipe
from luoxia.safety.audit import AuditStore
from luoxia.train.finetune import finetune
from luoxia.train.loop import TimeBudget

FAQ = "shared:customer_support_faq/Bitext_Sample_Customer_Support_Training_Dataset.csv"
RECIPE = "configs/apps/support_intents.yaml"
MODES = ("bm25", "dense", "hybrid")


def hit_rates(app, questions: list[str], gold: list[str], mode: str) -> dict[str, float]:
    hits = [app.index.search(q, k=5, mode=mode) for q in questions]
    at1 = np.mean([bool(h) and h[0].meta.get("intent") == g for h, g in zip(hits, gold, strict=True)])
    at5 = np.mean([any(x.meta.get("intent") == g for x in h) for h, g in zip(hits, gold, strict=True)])
    return {"hit@1": round(float(at1), 4), "hit@5": round(float(at5), 4)}


def slot_accuracy(slots, entries) -> dict[str, float | int]:

    right = total = 0
    for entry in entries:
        found = find_slots(slots, entry.question)
        for entity in entry.entities:
            total += 1
            gold = {surface(entry.question, entity).lower(), entity.value.strip(TRIM).lower()}
            right += found.get(entity.type, "").lower() in gold
    return {"slot_accuracy": round(right / max(total, 1), 4), "slot_examples": total}


def handoff_scores(app, readings, positive: np.ndarray) -> dict[str, float]:

    predicted = np.array([handoff_reason(r, app.config) is not None for r in readings])
    tp = float((predicted & positive).sum())
    return {"handoff_precision": round(tp / max(float(predicted.sum()), 1.0), 4),
            "handoff_recall": round(tp / max(float(positive.sum()), 1.0), 4),
            "in_domain_handoff_rate": round(float(predicted[~positive].mean()) if (~positive).any() else 0.0, 4)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faq", default=FAQ, help="the FAQ (default: the Bitext worked example)")
    parser.add_argument("--ood-train", default="shared:banking77/train.csv", help="out of domain for tuning")
    parser.add_argument("--ood-test", default="shared:banking77/test.csv", help="out of domain for scoring")
    parser.add_argument("--ood-tune-limit", type=int, default=1000, help="banking77 train questions for tuning")
    parser.add_argument("--ood-test-limit", type=int, help="banking77 test questions scored (default: all)")
    parser.add_argument("--test-limit", type=int, help="test questions scored (default: all; a quick check)")
    parser.add_argument("--max-steps", type=int, help="classifier steps (default: the recipe's)")
    parser.add_argument("--time-budget", type=float, help="stop the classifier's training after this many seconds")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="an extra recipe override (repeatable)")
    parser.add_argument("--latency-turns", type=int, default=200, help="turns timed for latency")
    parser.add_argument("--seed", type=int, default=1337, help="seed of the split and the samples")
    args = parser.parse_args()


    for path in (args.faq, args.ood_train, args.ood_test):  # a missing ../shared fails here, in one line
        resolve_data_path(path)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        split = write_split(args.faq, Path(tmp) / "faq", 0.1, 0.1, args.seed)
        overrides = [f"out_dir={tmp}/intents", f"data.train={split['train']}", f"data.val={split['dev']}",
                     "train.progress=false", "train.device=cpu",
                     *([f"train.max_steps={args.max_steps}"] if args.max_steps is not None else []),
                     *args.overrides]
        recipe = load_recipe(RECIPE, overrides, allowed=("classify",))
        budget = [TimeBudget(args.time_budget)] if args.time_budget else []
        start = time.perf_counter()
        state = finetune(recipe, callbacks=budget)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        config = build_support(split["train"], Path(tmp) / "app", recipe.out_dir, dev=split["dev"],
                               ood=args.ood_train, ood_limit=args.ood_tune_limit, device="cpu")
        build_seconds = time.perf_counter() - start
        app = load_support(Path(tmp) / "app", device="cpu", audit=AuditStore(Path(tmp) / "home"))

        n_train, test = len(read_faq(split["train"])), read_faq(split["test"])
        if args.test_limit:
            test = [test[i] for i in sorted(np.random.default_rng(args.seed).permutation(len(test))[:args.test_limit])]
        questions, gold = [e.question for e in test], [e.intent for e in test]
        ood = read_texts(args.ood_test, "text", args.ood_test_limit, args.seed)
        readings = app.read(questions + ood)
        mine = readings[:len(test)]
        intent_accuracy = np.mean([r.intent == g for r, g in zip(mine, gold, strict=True)])
        answer_hit = np.mean([(best_hit(r.hits, r.intent) or r.hits[0]).meta.get("intent") == g
                              for r, g in zip(mine, gold, strict=True)])
        positive = np.array([g in config.handoff_intents for g in gold] + [True] * len(ood))
        ablation = {mode: hit_rates(app, questions, gold, mode) for mode in MODES}

        latencies = []
        for question in questions[:args.latency_turns]:
            start = time.perf_counter()
            app.reply([{"role": "user", "content": question}])
            latencies.append(time.perf_counter() - start)

    return {
        "benchmark": "apps_support",
        "intent_accuracy": round(float(intent_accuracy), 4),
        "retrieval": {**ablation[config.search_mode], "answer_hit@1": round(float(answer_hit), 4),
                      "mode": config.search_mode},
        "retrieval_ablation": ablation,
        **slot_accuracy(config.slots, test),
        **handoff_scores(app, readings, positive),
        "thresholds": {"confidence": config.confidence_threshold, "similarity": config.ood_threshold,
                       "tuned_on_dev": config.tuning},
        "latency_ms": {"p50": round(1000 * float(np.percentile(latencies, 50)), 1),
                       "p95": round(1000 * float(np.percentile(latencies, 95)), 1), "turns": len(latencies)},
        "classifier": {"steps": state.step, "stop_reason": state.stop_reason, "train_seconds": round(train_seconds, 1),
                       "best_val_loss": round(state.best_val, 4) if state.best_val != float("inf") else None},
        "build_seconds": round(build_seconds, 1),
        "n_train": n_train, "n_test": len(test), "n_ood_test": len(ood),
        "max_steps": recipe.train.max_steps, "time_budget": args.time_budget, "overrides": args.overrides,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    print_report(main)
