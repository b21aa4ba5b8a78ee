"""Moderation quality: precision/recall per category on the held-out part of the training data,
over-blocking of benign text, and held-out look-alikes.

    python bench/moderation.py [--per-source 300]

- Held-out: the 20% of OpenAI's moderation evaluation set that `luoxia train
  configs/safety/moderation.yaml` keeps out (same seed, same split), scored by the full moderator
  (rules + classifier) and by the classifier alone.
- Over-blocking: the share flagged among ordinary texts that contain nothing harmful — pydoc prose,
  Tiny Shakespeare passages, Tang poems, banking77 queries and customer-support requests
  (``--per-source`` of each that this machine has) — and among bench/data/moderation_lookalikes.tsv,
  benign sentences with risky words, written for this benchmark and never used to write the rules.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

LOOKALIKES = Path(__file__).with_name("data") / "moderation_lookalikes.tsv"


def ordinary_texts(per_source: int, rng: random.Random) -> dict[str, list[str]]:
    """Harmless texts from every source this machine has."""
    import csv

    from luoxia.data.corpora import corpus_documents, shared_data_dir
    from luoxia.errors import DataError

    sources: dict[str, list[str]] = {}
    for name in ("pydoc", "shakespeare", "poems"):
        try:
            documents = [d.text for d in corpus_documents(name)]
        except DataError:
            continue
        paragraphs = [p.strip() for d in documents for p in d.split("\n\n") if 40 <= len(p.strip()) <= 600]
        sources[name] = rng.sample(paragraphs, min(per_source, len(paragraphs)))
    shared = shared_data_dir()
    for name, relative, column in (("banking77", "banking77/test.csv", "text"),
                                   ("customer_support", "customer_support_faq/"
                                    "Bitext_Sample_Customer_Support_Training_Dataset.csv", "instruction")):
        path = shared / relative if shared else None
        if path and path.is_file():
            with open(path, newline="", encoding="utf-8") as handle:
                rows = [row[column] for row in csv.DictReader(handle)]
            sources[name] = rng.sample(rows, min(per_source, len(rows)))
    return sources


def held_out(moderator) -> dict:
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.model_selection import train_test_split

    from luoxia.registry import load_recipe
    from luoxia.train.moderation import read_moderation_data

    recipe = load_recipe("configs/safety/moderation.yaml")
    texts, labels, categories, _ = read_moderation_data(recipe.data)
    _, eval_idx = train_test_split(np.arange(len(texts)), test_size=recipe.data.eval_fraction,
                                   random_state=recipe.seed, stratify=(labels > 0).any(1))
    results = moderator.moderate([texts[i] for i in eval_idx])
    report = {}
    for c, category in enumerate(categories):
        known = labels[eval_idx, c] >= 0
        gold = labels[eval_idx, c][known]
        flags = np.array([r.categories[category] for r in results])[known]
        p, r, f, _ = precision_recall_fscore_support(gold, flags, average="binary", zero_division=0)
        report[category] = {"precision": round(float(p), 3), "recall": round(float(r), 3), "f1": round(float(f), 3),
                            "support": int(gold.sum())}
    any_gold = (labels[eval_idx] > 0).any(1)
    any_flag = np.array([r.flagged for r in results])
    p, r, f, _ = precision_recall_fscore_support(any_gold, any_flag, average="binary", zero_division=0)
    report["any"] = {"precision": round(float(p), 3), "recall": round(float(r), 3), "f1": round(float(f), 3),
                     "support": int(any_gold.sum())}
    return report


def main() -> None:
    from luoxia.errors import DataError
    from luoxia.safety.moderation import Moderator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-source", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(0)
    moderator = Moderator()
    result: dict = {"benchmark": "moderation"}
    try:
        result["held_out"] = held_out(moderator)
    except DataError as error:
        result["held_out"] = f"skipped: {error}"
    started = time.perf_counter()
    over_block, count = {}, 0
    for name, texts in ordinary_texts(args.per_source, rng).items():
        flagged = [r.flagged for r in moderator.moderate(texts)]
        over_block[name] = {"rate": round(sum(flagged) / len(flagged), 4), "n": len(flagged)}
        count += len(flagged)
    result["over_block"] = over_block
    result["texts_per_s"] = round(count / (time.perf_counter() - started), 1)
    rows = [line.split("\t", 1) for line in LOOKALIKES.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]
    verdicts = moderator.moderate([text for _, text in rows])
    for label in ("benign", "harmful"):
        picked = [v.flagged for (gold, _), v in zip(rows, verdicts, strict=True) if gold == label]
        result[f"lookalikes_{label}_flagged"] = {"rate": round(sum(picked) / len(picked), 4), "n": len(picked)}
    result["missed_or_overblocked"] = [text for (gold, text), v in zip(rows, verdicts, strict=True)
                                       if v.flagged != (gold == "harmful")]
    print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
