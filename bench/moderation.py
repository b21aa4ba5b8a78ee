"""Moderation quality in English and Chinese: look-alike twins, COLDataset, over-blocking of ordinary text,
and the shipped head's dev report.

    python bench/moderation.py [--per-source 300] [--limit N]

- Look-alikes: the test split of luoxia/safety/data/lookalikes.tsv (safe/unsafe twins written for Luoxia), per
  language: over-blocking of the safe twins (target ≤ 5%) and recall on the unsafe ones (target ≥ 0.90), per theme
  and per category; the ids of the pairs that went wrong (never their texts).
- COLDataset (../shared/data/safety_offensive_zh/test.csv, Chinese offensive language; offensive = label 1):
  precision/recall/F1 of `flagged`, over-blocking on label-0 rows, and the flagged share per fine-grained label
  (0 other, 1 attack on an individual, 2 attack on a group, 3 anti-bias, labelled safe). Counts only.
- Dev (not held out): the report `luoxia train configs/safety/moderation.yaml` wrote into the head, on the
  sets its thresholds were tuned on (COLDataset dev, the twins' dev split, OpenAI's set out-of-fold: all of
  OpenAI's set is fitted, so no part of it is held out).
- Over-blocking of ordinary text (target ≤ 1%): pydoc prose, Tiny Shakespeare passages, Tang poems, banking77
  queries and customer-support requests (``--per-source`` of each that this machine has).
- The older bench/data/moderation_lookalikes.tsv (benign sentences with risky words and a few harmful ones),
  a second held-out set: flagged shares and the line numbers that went wrong.

Only ``Moderator().moderate(texts)`` is used. A source this machine lacks is skipped with the reason.
``--limit N`` keeps at most N texts of each set (look-alike pairs stay whole), for a quick smoke run.
Prints one JSON line; no text of any set is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from luoxia.data.corpora import corpus_documents, shared_data_dir
from luoxia.errors import DataError, LuoxiaError
from luoxia.safety.lookalikes import LANGS, read_lookalikes
from luoxia.safety.moderation import Moderator

LEGACY_LOOKALIKES = Path(__file__).with_name("data") / "moderation_lookalikes.tsv"
COLD_TEST = "safety_offensive_zh/test.csv"
COLD_FINE_LABELS = {"0": "other_safe", "1": "attack_individual", "2": "attack_group", "3": "anti_bias"}
TARGETS = {"lookalike_over_block": 0.05, "lookalike_recall": 0.90, "cold_over_block": 0.05, "cold_recall": 0.90,
           "ordinary_over_block": 0.01}


def rate(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def prf(gold: Sequence[bool], flagged: Sequence[bool]) -> dict:
    """Precision, recall and F1 of `flagged` against `gold`, with the counts behind them."""
    tp = sum(g and f for g, f in zip(gold, flagged, strict=True))
    precision = tp / sum(flagged) if sum(flagged) else 0.0
    recall = tp / sum(gold) if sum(gold) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "support": int(sum(gold)), "n": len(gold)}


def sample(items: list, limit: int | None, seed: int = 0) -> list:
    """At most ``limit`` items, a seeded sample in their original order."""
    if limit is None or len(items) <= limit:
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def lookalikes(moderator: Moderator, limit: int | None) -> dict:
    """Over-blocking and recall on the test split's twins, per language, theme and category."""
    report = {}
    for lang in LANGS:
        rows = read_lookalikes(splits=["test"], langs=[lang])
        pair_ids = sample(sorted({r.pair for r in rows}), None if limit is None else max(1, limit // 2))
        rows = [r for r in rows if r.pair in set(pair_ids)]
        flags = [v.flagged for v in moderator.moderate([r.text for r in rows])]
        by_theme, by_category = defaultdict(lambda: ([], [])), defaultdict(list)
        for row, flag in zip(rows, flags, strict=True):
            by_theme[row.theme][row.unsafe].append(flag)
            if row.unsafe:
                by_category[row.category].append(flag)
        safe = [f for r, f in zip(rows, flags, strict=True) if not r.unsafe]
        unsafe = [f for r, f in zip(rows, flags, strict=True) if r.unsafe]
        report[lang] = {
            "pairs": len(pair_ids), "over_block": rate(safe), "recall": rate(unsafe),
            "meets_targets": bool(safe and unsafe and rate(safe) <= TARGETS["lookalike_over_block"]
                                  and rate(unsafe) >= TARGETS["lookalike_recall"]),
            "per_theme": {t: {"pairs": len(s), "over_block": rate(s), "recall": rate(u)}
                          for t, (s, u) in sorted(by_theme.items())},
            "recall_per_category": {c: {"n": len(f), "recall": rate(f)} for c, f in sorted(by_category.items())},
            "overblocked_pairs": [r.pair for r, f in zip(rows, flags, strict=True) if f and not r.unsafe],
            "missed_pairs": [r.pair for r, f in zip(rows, flags, strict=True) if r.unsafe and not f],
        }
    return report


def cold(moderator: Moderator, limit: int | None) -> dict:
    """COLDataset's test split: offensive (label 1) against `flagged`; counts only, never a text."""
    shared = shared_data_dir()
    path = shared / COLD_TEST if shared else None
    if path is None or not path.is_file():
        raise DataError(f"{COLD_TEST} not found under ../shared/data")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [(r["TEXT"], r["label"] == "1", r.get("fine-grained-label", "")) for r in csv.DictReader(handle)]
    rows = sample(rows, limit)
    flags = [v.flagged for v in moderator.moderate([text for text, _, _ in rows])]
    fine = defaultdict(list)
    for (_, _, label), flag in zip(rows, flags, strict=True):
        fine[COLD_FINE_LABELS.get(label, label or "none")].append(flag)
    report = prf([gold for _, gold, _ in rows], flags)
    report["over_block"] = rate([f for (_, gold, _), f in zip(rows, flags, strict=True) if not gold])
    report["meets_targets"] = bool(report["over_block"] is not None
                                   and report["over_block"] <= TARGETS["cold_over_block"]
                                   and report["recall"] >= TARGETS["cold_recall"])
    report["flagged_per_fine_label"] = {k: {"n": len(f), "flagged": rate(f)} for k, f in sorted(fine.items())}
    return report


def head_dev(moderator: Moderator) -> dict:
    """The shipped head's own dev report (`luoxia train configs/safety/moderation.yaml` writes it):
    the sets its thresholds were tuned on, so not held out. OpenAI's set has no dev split and is all
    fitted; its numbers are out-of-fold."""
    if moderator.head is None:
        raise DataError("this moderator has no learned head")
    return dict(moderator.head.info.get("dev", {}))


def ordinary_texts(per_source: int, rng: random.Random) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Harmless texts from every source this machine has, and why each other source is missing."""
    sources: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for name in ("pydoc", "shakespeare", "poems"):
        try:
            documents = [d.text for d in corpus_documents(name)]
        except DataError as error:
            skipped[name] = str(error)
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
        else:
            skipped[name] = f"{relative} not found under ../shared/data"
    return sources, skipped


def ordinary(moderator: Moderator, per_source: int) -> dict:
    """Share of ordinary, harmless texts flagged, per source and pooled, and the throughput."""
    started, report, pooled = time.perf_counter(), {}, []
    sources, skipped = ordinary_texts(per_source, random.Random(0))
    for name, texts in sources.items():
        flags = [r.flagged for r in moderator.moderate(texts)]
        report[name] = {"over_block": rate(flags), "n": len(flags)}
        pooled += flags
    report["all"] = {"over_block": rate(pooled), "n": len(pooled),
                     "meets_target": bool(pooled and rate(pooled) <= TARGETS["ordinary_over_block"])}
    report.update({name: f"skipped: {why}" for name, why in skipped.items()})
    report["texts_per_s"] = round(len(pooled) / (time.perf_counter() - started), 1)
    return report


def legacy_lookalikes(moderator: Moderator, limit: int | None) -> dict:
    """The older hand-written look-alike sentences: flagged shares and the line numbers that went wrong."""
    lines = LEGACY_LOOKALIKES.read_text(encoding="utf-8").splitlines()
    rows = sample([(n, *line.split("\t", 1)) for n, line in enumerate(lines, 1)
                   if line and not line.startswith("#")], limit)
    flags = [v.flagged for v in moderator.moderate([text for _, _, text in rows])]
    report = {}
    for label in ("benign", "harmful"):
        report[f"{label}_flagged"] = {"rate": rate([f for (_, g, _), f in zip(rows, flags, strict=True)
                                                    if g == label]),
                                      "n": sum(g == label for _, g, _ in rows)}
    report["wrong_lines"] = [n for (n, g, _), f in zip(rows, flags, strict=True) if f != (g == "harmful")]
    return report


def section(run: Callable[[], dict]) -> dict | str:
    """A section's report with its seconds, or why it was skipped."""
    started = time.perf_counter()
    try:
        report = run()
    except (LuoxiaError, OSError, KeyError) as error:
        return f"skipped: {type(error).__name__}: {error}"
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-source", type=int, default=300, help="ordinary texts per source")
    parser.add_argument("--limit", type=int, default=None, help="at most this many texts per set (smoke run)")
    args = parser.parse_args()
    if args.limit is not None and args.limit < 2:
        parser.error("--limit must be at least 2 (one look-alike pair)")
    moderator = Moderator()
    per_source = args.per_source if args.limit is None else min(args.per_source, args.limit)
    result: dict = {"benchmark": "moderation", "limit": args.limit, "targets": TARGETS,
                    "lookalikes_test": section(lambda: lookalikes(moderator, args.limit)),
                    "cold_test": section(lambda: cold(moderator, args.limit)),
                    "head_dev_not_held_out": section(lambda: head_dev(moderator)),
                    "ordinary": section(lambda: ordinary(moderator, per_source)),
                    "legacy_lookalikes": section(lambda: legacy_lookalikes(moderator, args.limit))}
    print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
