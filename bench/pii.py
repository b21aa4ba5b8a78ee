"""PII detection on generated Chinese and English sentences: recall per type, and how many look-alikes are masked.

    python bench/pii.py [--n 200] [--seed 0] [--lookalikes 200]

Sentences come from `bench/pii_gen.py` (seeded templates and value generators written for this
benchmark, never sentences from a training set): ``--n`` per type of EMAIL, PHONE (CN mobiles and
landlines, US, UK and other international formats), CN_ID (valid check digit; 40% from districts
created after their holder's birth), BANK_CARD (Luhn-valid, Visa/Mastercard/Amex/UnionPay/…), IP,
URL_CREDENTIALS, SECRET, PERSON, ADDRESS and ORG, written with varied separators, full-width digits
or a zero-width character inside, at the sentence's start or end, next to Chinese characters and
punctuation. Some templates hold a person's name too; it is counted under PERSON.

Detection: `luoxia.safety.pii.find_pii(text, types=...)`, region chosen from the text, asking for
every type above that `find_pii` accepts (a type it does not know is listed under ``unsupported``
and scores 0). A value is **found** when spans of its own type cover every letter and digit of it;
``recall_any_type`` counts a value covered by spans of any type (masked, if misnamed).

Look-alikes (``--lookalikes`` per kind): dates, prices, order and tracking numbers, resident IDs
with a wrong check digit, Luhn-invalid cards, capitalised words that are not names ("May",
"Will"), company names used as such ("Apple announced": an ORG, so masked only where ORG is),
lone city names, landmarks (长城, 故宫). One is **masked** when any span touches a letter or digit
of it. Targets: recall ≥ 0.98 for every type, look-alikes masked ≤ 1%.

``misses`` holds up to 5 missed values per type (generated values, safe to print) with what was found
over them; ``false_positives`` up to 5 masked look-alikes per kind. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter, defaultdict

from pii_gen import LOOKALIKE_KINDS, PII_KINDS, Sample, Value, lookalike, sample  # bench/pii_gen.py, beside this file

from luoxia.errors import ConfigError
from luoxia.safety.pii import PIISpan, find_pii

RECALL_TARGET = 0.98
LOOKALIKE_TARGET = 0.01
EXAMPLES = 5


def supported_types() -> tuple[list[str], list[str]]:
    """The types of `PII_KINDS` that `find_pii` accepts, and those it does not know."""
    known, unknown = [], []
    for kind in PII_KINDS:
        try:
            find_pii("", types=[kind])
            known.append(kind)
        except ConfigError:
            unknown.append(kind)
    return known, unknown


def covered(text: str, value: Value, spans: list[PIISpan]) -> bool:
    """Every letter and digit of the value lies inside one of ``spans``."""
    return all(any(s.start <= i < s.end for s in spans) for i in range(value.start, value.end) if text[i].isalnum())


def touched(text: str, value: Value, spans: list[PIISpan]) -> list[PIISpan]:
    return [s for s in spans if any(text[i].isalnum() for i in range(max(s.start, value.start), min(s.end, value.end)))]


def rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def score_recall(samples: list[Sample], types: list[str]) -> dict:
    counts, found, found_any = Counter(), Counter(), Counter()
    groups: dict[str, Counter] = defaultdict(Counter)  # "TYPE|lang:zh" → [total, found]
    misses: dict[str, list[dict]] = defaultdict(list)
    seconds = 0.0
    for item in samples:
        start = time.perf_counter()
        spans = find_pii(item.text, types=types)
        seconds += time.perf_counter() - start
        for value in item.values:
            same = [s for s in spans if s.type == value.type]
            hit, hit_any = covered(item.text, value, same), covered(item.text, value, spans)
            counts[value.type] += 1
            found[value.type] += hit
            found_any[value.type] += hit_any
            for group in (f"lang:{item.lang}", f"variant:{value.variant}", f"kind:{value.kind}"):
                groups[f"{value.type}|{group}"]["n"] += 1
                groups[f"{value.type}|{group}"]["found"] += hit
            if not hit and len(misses[value.type]) < EXAMPLES:
                misses[value.type].append({
                    "value": item.text[value.start:value.end], "kind": value.kind, "variant": value.variant,
                    "lang": item.lang, "found": [[s.type, s.text] for s in touched(item.text, value, spans)]})
    recall = {t: rate(found[t], counts[t]) for t in PII_KINDS}
    breakdown: dict[str, dict[str, float | None]] = defaultdict(dict)
    for key, counter in sorted(groups.items()):
        kind, group = key.split("|")
        breakdown[kind][group] = rate(counter["found"], counter["n"])
    weak = {t: {g: r for g, r in rows.items() if r is not None and r < RECALL_TARGET}
            for t, rows in breakdown.items() if recall[t]}  # a type never found (unsupported) is weak throughout
    return {"counts": {t: counts[t] for t in PII_KINDS}, "recall": recall,
            "recall_any_type": {t: rate(found_any[t], counts[t]) for t in PII_KINDS},
            "recall_by_lang": {t: {g.removeprefix("lang:"): r for g, r in breakdown[t].items() if g.startswith("lang:")}
                               for t in PII_KINDS},
            "min_recall": min((r or 0.0) for r in recall.values()),
            "weak_groups": {t: rows for t, rows in weak.items() if rows},  # lang/variant/kind groups under target
            "misses": dict(misses), "ms_per_sentence": round(1000 * seconds / max(len(samples), 1), 2)}


def score_lookalikes(samples: list[Sample], types: list[str]) -> dict:
    by_kind, masked_kind, by_type = Counter(), Counter(), Counter()
    examples: dict[str, list[dict]] = defaultdict(list)
    for item in samples:
        (value,) = item.values
        hits = touched(item.text, value, find_pii(item.text, types=types))
        by_kind[value.kind] += 1
        if hits:
            masked_kind[value.kind] += 1
            by_type.update({s.type for s in hits})
            if len(examples[value.kind]) < EXAMPLES:
                examples[value.kind].append({"text": item.text, "masked": [[s.type, s.text] for s in hits]})
    total, masked = sum(by_kind.values()), sum(masked_kind.values())
    return {"n": total, "masked": masked, "masked_rate": rate(masked, total),
            "by_kind": {k: rate(masked_kind[k], by_kind[k]) for k in LOOKALIKE_KINDS},
            "masked_by_type": dict(by_type), "false_positives": dict(examples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="sentences per PII type")
    parser.add_argument("--lookalikes", type=int, default=None, help="sentences per look-alike kind (default: --n)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.n < 1 or (args.lookalikes is not None and args.lookalikes < 0):
        parser.error("--n must be at least 1 and --lookalikes not negative")
    rng = random.Random(args.seed)
    positives = [sample(kind, rng) for kind in PII_KINDS for _ in range(args.n)]
    negatives = [lookalike(kind, rng) for kind in LOOKALIKE_KINDS for _ in range(args.lookalikes or args.n)]
    types, unsupported = supported_types()
    start = time.perf_counter()
    recall = score_recall(positives, types)
    lookalikes = score_lookalikes(negatives, types)
    result = {"benchmark": "pii", "seed": args.seed, "n": args.n, "types_asked": types, "unsupported": unsupported,
              **{k: v for k, v in recall.items() if k != "misses"},
              "lookalikes": {k: v for k, v in lookalikes.items() if k != "false_positives"},
              "targets": {"recall": RECALL_TARGET, "lookalikes_masked": LOOKALIKE_TARGET},
              "meets_targets": recall["min_recall"] >= RECALL_TARGET
              and (lookalikes["masked_rate"] or 0.0) <= LOOKALIKE_TARGET,
              "misses": recall["misses"], "false_positives": lookalikes["false_positives"],
              "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
