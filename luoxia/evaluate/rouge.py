"""ROUGE-1/2/L F1 (`rouge-score`, Google's reimplementation of Lin 2004) against all references:
each summary scores the best of its references (as SciTLDR reports), then the mean over summaries.

rouge-score's own tokenizer keeps only ``[a-z0-9]`` and so scores Chinese as 0; `MixedTokenizer`
makes every CJK character a token and hands the rest to rouge-score's tokenizer (lower case, Porter
stemming), so English is scored exactly as rouge-score scores it and Chinese on characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rouge_score import rouge_scorer, tokenizers

from luoxia.errors import DataError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_CJK_OR_REST = re.compile(r"([\u3400-\u9fff\uf900-\ufaff])")  # one capture: split keeps each CJK character


class MixedTokenizer(tokenizers.Tokenizer):
    """CJK characters one token each; other text through rouge-score's default tokenizer."""

    def __init__(self, use_stemmer: bool = True) -> None:
        self.words = tokenizers.DefaultTokenizer(use_stemmer)

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        for i, piece in enumerate(_CJK_OR_REST.split(text)):
            if i % 2:  # a captured CJK character
                tokens.append(piece)
            elif piece.strip():
                tokens.extend(self.words.tokenize(piece))
        return tokens


def rouge(predictions: Sequence[str], references: Sequence[Sequence[str]], use_stemmer: bool = True
          ) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 of ``predictions``, each against the best of its ``references``."""
    if len(predictions) != len(references):
        raise DataError(f"{len(predictions)} summaries but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise DataError("every summary needs at least one reference")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=MixedTokenizer(use_stemmer))
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, refs in zip(predictions, references, strict=True):
        best = scorer.score_multi(list(refs), prediction)
        for name in ROUGE_TYPES:
            totals[name] += best[name].fmeasure
    return {name: total / max(1, len(predictions)) for name, total in totals.items()}
