"""The writing assistant's keyword constraints: with keywords 春、月 and 五言绝句, the share of
candidates containing both keywords and having 4 lines × 5 characters — unconstrained sampling
against the keyword boost and the coverage-first beam search, before and after reranking; the same
(keyword coverage, length in range) for a few keyword sets in English prose.

    python bench/apps_write.py [--poem-model RUN] [--prose-model RUN] [--poem-steps N] [--prose-steps N]
                               [--requests R] [-n N] [--max-poems M]

Models: without --poem-model, configs/lm/tang_poems_titled.yaml trained here for --poem-steps
steps (titles are prompts: each request is 《title》 with one of eight titles); without
--prose-model, configs/lm/shakespeare_char.yaml for --prose-steps. Data: ../shared/data
(chinese_poetry_tang, tinyshakespeare) or $LUOXIA_DATA_DIR.

Per method (none, boost, beam), over R requests of n candidates each (request r samples with seed
``seed + 100 r``; beam search is deterministic, so its requests differ by title only):
- ``keywords``: share of candidates containing every keyword; ``form``: share with the genre's form
  (4 clauses × 5 Han characters; prose: 25–90 words); ``both``: both at once;
- ``reranked``: the same ``both`` for the top-ranked candidate of each request (coverage, mean
  token log-probability and form, `luoxia.apps.write`).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from report import print_report

from luoxia.apps.write import Candidate, WriteRequest, load_writer, write
from luoxia.config import load_config, resolve_recipe
from luoxia.train.lm import LMRecipe, train_lm

TITLES = ["春夜", "月夜", "山居", "送别", "江上", "秋思", "夜泊", "登楼"]
POEM_KEYWORDS = ["春", "月"]
PROSE_KEYWORDS = [["love", "death"], ["king", "crown"], ["night", "sea", "heart"]]
PROSE_TITLES = ["ROMEO:", "KING RICHARD II:", "JULIET:"]
METHODS = ("none", "boost", "beam")
# The poem model trained here: the recipe made smaller so that preparing the corpus, both models and
# all three methods fit in about 8 minutes on two CPU cores (the full recipe trains 3 × 192 for 800 steps).
POEM_SMALLER = ["model.n_layer=2", "model.n_embd=128", "model.n_head=4", "batch_size=16", "model.block_size=64"]


def train(recipe: str, out: Path, steps: int, *extra: str) -> Path:
    """A small model of ``recipe`` trained for ``steps`` (quiet, one checkpoint at the end)."""
    overrides = [f"out_dir={out}", f"max_steps={steps}", f"eval_interval={max(steps, 1)}",
                 f"checkpoint_interval={max(steps, 1)}", f"sample_interval={10 * steps + 1}",
                 f"warmup_steps={min(30, max(steps // 10, 1))}", "progress=false", *extra]
    train_lm(load_config(LMRecipe, resolve_recipe(recipe), overrides))
    return out


def share(flags: list[bool]) -> float:
    return round(sum(flags) / max(len(flags), 1), 4)


def measure(model: str, requests: list[WriteRequest]) -> dict[str, Any]:
    """Per method: the shares of candidates (and of top-ranked ones) passing the checks."""
    writer = load_writer(model, "cpu")
    report: dict[str, Any] = {}
    for method in METHODS:
        started = time.perf_counter()
        results = [write(writer, r.model_copy(update={"constraint": method})) for r in requests]
        every: list[Candidate] = [c for result in results for c in result.candidates]
        top = [result.candidates[0] for result in results]
        report[method] = {
            "keywords": share([all(c.keywords.values()) for c in every]),
            "form": share([c.form["ok"] for c in every]),
            "both": share([all(c.keywords.values()) and c.form["ok"] for c in every]),
            "reranked": share([all(c.keywords.values()) and c.form["ok"] for c in top]),
            "candidates": len(every),
            "seconds": round(time.perf_counter() - started, 1),
        }
    return report


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poem-model", help="a trained titled Tang-poem run (default: train one here)")
    parser.add_argument("--prose-model", help="a trained English run (default: train Shakespeare here)")
    parser.add_argument("--poem-steps", type=int, default=300, help="steps of the poem model trained here")
    parser.add_argument("--prose-steps", type=int, default=150, help="steps of the prose model trained here")
    parser.add_argument("--max-poems", type=int, help="train on the first M poems only (a quick check)")
    parser.add_argument("--requests", type=int, default=8, help="poem requests per method (one per title)")
    parser.add_argument("--prose-requests", type=int, default=2, help="prose requests per keyword set and method")
    parser.add_argument("-n", type=int, default=4, help="candidates per request")
    parser.add_argument("--boost", type=float, default=WriteRequest.model_fields["boost"].default,
                        help="the keyword logit bias")
    parser.add_argument("--prose-tokens", type=int, default=240, help="characters of prose per candidate")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        poem_model = args.poem_model or str(train(
            "lm/tang_poems_titled.yaml", Path(scratch) / "poems", args.poem_steps, *POEM_SMALLER,
            *([f"data.max_documents={args.max_poems}"] if args.max_poems else [])))
        prose_model = args.prose_model or str(train("lm/shakespeare_char.yaml", Path(scratch) / "prose",
                                                    args.prose_steps))
        trained = round(time.perf_counter() - started, 1)
        poems = [WriteRequest(genre="五言绝句", keywords=POEM_KEYWORDS, title=TITLES[r % len(TITLES)], n=args.n,
                              seed=args.seed + 100 * r, boost=args.boost) for r in range(args.requests)]
        prose = [WriteRequest(genre="prose", keywords=words, title=PROSE_TITLES[i % len(PROSE_TITLES)],
                              n=args.n, seed=args.seed + 100 * r, boost=args.boost,
                              max_new_tokens=args.prose_tokens)
                 for i, words in enumerate(PROSE_KEYWORDS) for r in range(args.prose_requests)]
        poem_report = measure(poem_model, poems)
        prose_report = measure(prose_model, prose)
    return {"bench": "apps_write", "poem": {"genre": "五言绝句", "keywords": POEM_KEYWORDS, "requests": len(poems),
                                            "n": args.n, "model": args.poem_model or f"tang_poems_titled "
                                            f"{args.poem_steps} steps, {' '.join(POEM_SMALLER)}", **poem_report},
            "prose": {"keyword_sets": PROSE_KEYWORDS, "requests": len(prose), "n": args.n,
                      "model": args.prose_model or f"shakespeare_char {args.prose_steps} steps", **prose_report},
            "boost": args.boost, "seed": args.seed, "train_seconds": trained,
            "seconds": round(time.perf_counter() - started, 1)}


if __name__ == "__main__":
    print_report(main)
