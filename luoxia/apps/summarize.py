"""Extractive summaries in English and Chinese: the first sentences (lead-k) or the most central ones
(TextRank: PageRank over a graph of sentence similarities, Mihalcea & Tarau 2004).

Similarities come from character n-grams (TF-IDF over 2–3-grams within words: no segmenter, so the
same code reads Chinese and English) or from a sentence encoder's unit vectors. The graph is a few
dozen sentences, so PageRank is a dense power iteration in numpy rather than a graph library.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from luoxia.encoders import Encoder
from luoxia.errors import ConfigError

METHODS = ("lead", "textrank")
DAMPING = 0.85  # PageRank's usual damping: the chance of following an edge rather than jumping
# A sentence ends after 。！？!? (and their run), after "." before a space and a capital/quote/CJK,
# or at a line break. Fixed-width look-arounds only: linear time on any text.
_BOUNDARY = re.compile(r"(?<=[。！？!?；;])(?![。！？!?”’」』])|(?<=\.)(?=\s+[A-Z\"'“‘(\u4e00-\u9fff])|\n+")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, empty ones dropped."""
    return [s.strip() for s in _BOUNDARY.split(text) if s and s.strip()]


def ngram_similarity(sentences: Sequence[str]) -> np.ndarray:
    """(N, N) cosine similarities of character 2–3-gram TF-IDF vectors."""
    try:
        vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3), lowercase=True).fit_transform(sentences)
    except ValueError:  # no n-gram at all (one-character sentences)
        return np.zeros((len(sentences), len(sentences)))
    return (vectors @ vectors.T).toarray()  # rows are L2-normalised by TfidfVectorizer


def textrank_scores(similarity: np.ndarray, iterations: int = 100, tolerance: float = 1e-8) -> np.ndarray:
    """(N,) PageRank of the weighted graph ``similarity`` (self-loops and negatives ignored)."""
    n = similarity.shape[0]
    weights = np.clip(similarity, 0.0, None) * (1.0 - np.eye(n))
    out = weights.sum(axis=1, keepdims=True)
    # a sentence like no other links to every sentence equally (a dangling node)
    transition = np.where(out > 0, weights / np.where(out > 0, out, 1.0), 1.0 / n)  # (N, N), rows sum to 1
    scores = np.full(n, 1.0 / n)
    for _ in range(iterations):
        updated = (1 - DAMPING) / n + DAMPING * transition.T @ scores
        if np.abs(updated - scores).sum() < tolerance:
            return updated
        scores = updated
    return scores


def extract(sentences: Sequence[str], k: int = 1, method: str = "textrank",
            encoder: Encoder | None = None) -> list[int]:
    """The indices of the ``k`` sentences to keep, in document order. ``method``: ``lead`` (the
    first k) or ``textrank`` (ties keep the earlier sentence); ``encoder``: TextRank's similarities
    from sentence vectors instead of character n-grams."""
    if method not in METHODS:
        raise ConfigError(f"unknown extractive method '{method}'; valid: {', '.join(METHODS)}")
    if k < 1:
        raise ConfigError(f"k is {k}; keep at least one sentence")
    if method == "lead" or len(sentences) <= k:
        return list(range(min(k, len(sentences))))
    if encoder is not None:
        vectors = encoder.encode(list(sentences))  # (N, D) unit vectors
        similarity = vectors @ vectors.T
    else:
        similarity = ngram_similarity(sentences)
    scores = textrank_scores(similarity)
    ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    return sorted(ranked[:k])


def summarize_extractive(text: str, k: int = 1, method: str = "textrank", encoder: Encoder | None = None) -> str:
    """The ``k`` kept sentences of ``text`` joined in document order (a space between English ones)."""
    sentences = split_sentences(text)
    kept = [sentences[i] for i in extract(sentences, k, method, encoder)]
    joiner = "" if any("\u4e00" <= ch <= "\u9fff" for ch in "".join(kept)) else " "
    return joiner.join(kept)
