"""Diversity and repetition of generated samples.

* distinct-n (Li et al. 2016): unique n-grams / all n-grams over the whole sample set.
* self-BLEU (Zhu et al. 2018, Texygen): mean BLEU of each sample against all the others, via
  ``sacrebleu``; lower means more diverse.
* repetition rate (seq-rep-n, Welleck et al. 2020): share of n-grams inside one sample that
  repeat an earlier n-gram of the same sample, averaged over samples.

Counting is done in `text_units`: words for English, characters for Chinese.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sacrebleu.metrics import BLEU

from luoxia.generate.postprocess import text_units

_CJK = re.compile(r"[\u3400-\u9fff]")


def ngrams(units: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    grams = [g for text in texts for g in ngrams(text_units(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(texts: Sequence[str], n: int = 4) -> float:
    rates = []
    for text in texts:
        grams = ngrams(text_units(text), n)
        if grams:
            rates.append(1.0 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else 0.0


def self_bleu(texts: Sequence[str]) -> float:
    """Mean sentence BLEU (0–100) of each sample with every other sample as a reference."""
    if len(texts) < 2:
        return 0.0
    tokenize = "zh" if any(_CJK.search(t) for t in texts) else "13a"
    bleu = BLEU(tokenize=tokenize, effective_order=True)
    scores = [bleu.sentence_score(text, [*texts[:i], *texts[i + 1 :]]).score for i, text in enumerate(texts)]
    return sum(scores) / len(scores)


def diversity_report(texts: Sequence[str]) -> dict[str, float]:
    return {
        "samples": len(texts),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_3": distinct_n(texts, 3),
        "self_bleu": self_bleu(texts),
        "repetition_rate_4": repetition_rate(texts, 4),
    }
