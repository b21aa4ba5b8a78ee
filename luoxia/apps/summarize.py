"""Extractive summaries in English and Chinese: the first sentences (lead-k) or the most central ones
(TextRank: PageRank over a graph of sentence similarities, Mihalcea & Tarau 2004).

Similarities come from character n-grams (TF-IDF over 2–3-grams within words: no segmenter, so the
same code reads Chinese and English) or from a sentence encoder's unit vectors. The graph is a few
dozen sentences, so PageRank is a dense power iteration in numpy rather than a graph library.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from luoxia.apps.abstractive import AbstractiveConfig, LengthHead, generate_summary, target_length, text_length
from luoxia.encoders import Encoder
from luoxia.errors import ConfigError
from luoxia.generate.interface import TextGenerator

METHODS = ("lead", "textrank")
ALL_METHODS = (*METHODS, "model")  # `summarize`: the extractive ones, and a text model's own words
DAMPING = 0.85  # PageRank's usual damping: the chance of following an edge rather than jumping
# A sentence ends after 。！？!?；; (and their run, with closing quotes), after "." before a space and
# a capital/quote/CJK character, after a Chinese character's "." before another (Chinese text with
# ASCII full stops, as CSL's abstracts), or at a line break. Fixed-width look-arounds only: linear time on any
# text. A "." candidate is then dropped when the word it ends is an abbreviation or an initial
# ("J.P. Morgan", "e.g. The", "Dr. Smith"); decimals ("3.5") never match, as no space follows the ".".
_BOUNDARY = re.compile(r"(?<=[。！？!?；;])(?![。！？!?”’」』])|(?<=[.!?][\"'”’)])(?=\s)"
                       r"|(?<=\.)(?=\s+[A-Z\"'“‘(\u4e00-\u9fff])|(?<=[\u4e00-\u9fff]\.)(?=[\u4e00-\u9fff])|\n+")
_LAST_WORD = re.compile(r"(\S{1,12})$")  # the token a "." ends, read from a bounded window before it
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "cf", "al", "fig", "figs", "eq",
    "eqs", "no", "nos", "vol", "pp", "inc", "ltd", "co", "corp", "dept", "approx", "u.s", "u.k", "gen", "gov",
    "sec", "ref", "refs", "resp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
    "dec",
})


def _is_abbreviation(text: str, end: int) -> bool:
    """Whether the "." just before ``end`` closes an abbreviation or an initial (not a sentence)."""
    if text[end - 1] != ".":
        return False
    found = _LAST_WORD.search(text[max(0, end - 13):end - 1])  # bounded: linear time over the text
    if found is None:
        return False
    word = found.group(1).lstrip("(\"'“‘").lower()
    # "J.P." / "U.S." and single initials ("J. Smith"); words from the list ("e.g.", "Dr.")
    return word in ABBREVIATIONS or (len(word.replace(".", "")) <= 2 and "." in word) or (
        len(word) == 1 and word.isascii() and word.isalpha())


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, empty ones dropped (English and Chinese punctuation)."""
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        if match.start() == start and not match.group():
            continue  # an empty match where the last sentence ended
        if not match.group() and _is_abbreviation(text, match.start()):
            continue
        sentences.append(text[start:match.start()])
        start = match.end()
    sentences.append(text[start:])
    return [s.strip() for s in sentences if s.strip()]


def ngram_similarity(sentences: Sequence[str]) -> np.ndarray:
    """(N, N) cosine similarities of character 2–3-gram TF-IDF vectors."""
    # imported here: sklearn (and scipy) cost every `luoxia` command about a second
    from sklearn.feature_extraction.text import TfidfVectorizer

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
    return sorted(rank(sentences, method, encoder)[:k])


def rank(sentences: Sequence[str], method: str = "textrank", encoder: Encoder | None = None) -> list[int]:
    """Every sentence's index, the one to keep first first: document order (lead) or by TextRank
    score (ties: the earlier sentence)."""
    if method == "lead" or len(sentences) < 2:
        return list(range(len(sentences)))
    if encoder is not None:
        vectors = encoder.encode(list(sentences))  # (N, D) unit vectors
        similarity = vectors @ vectors.T
    else:
        similarity = ngram_similarity(sentences)
    scores = textrank_scores(similarity)
    return sorted(range(len(sentences)), key=lambda i: (-scores[i], i))


def summarize_extractive(text: str, k: int = 1, method: str = "textrank", encoder: Encoder | None = None) -> str:
    """The ``k`` kept sentences of ``text`` joined in document order (a space between English ones)."""
    sentences = split_sentences(text)
    return join([sentences[i] for i in extract(sentences, k, method, encoder)])


def join(sentences: Sequence[str]) -> str:
    """Sentences as one text: nothing between Chinese ones, a space between others."""
    return ("" if any("\u4e00" <= ch <= "\u9fff" for ch in "".join(sentences)) else " ").join(sentences)


@dataclass
class Summary:
    """A summary and how it was made: the kept sentences' indices (extractive), its length (words,
    or characters for Chinese) and the length asked for (None: k sentences) and from where."""

    text: str
    method: str
    sentences: list[str] = field(default_factory=list)  # the input's sentences (extractive)
    indices: list[int] = field(default_factory=list)  # the kept ones, in document order
    length: int = 0
    target_length: int | None = None
    target_source: str = "none"  # length, ratio, head (predicted from the input) or none
    safety: dict[str, Any] = field(default_factory=dict)  # what the guard did (server)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def extract_to_length(sentences: Sequence[str], target: int, method: str, encoder: Encoder | None = None
                      ) -> list[int]:
    """Sentences in rank order until the kept length is nearest ``target`` (at least one)."""
    kept: list[int] = []
    total = 0
    for i in rank(sentences, method, encoder):
        size = text_length(sentences[i])
        if kept and abs(total + size - target) >= abs(total - target):
            break
        kept.append(i)
        total += size
    return sorted(kept)


def summarize(text: str, method: str = "textrank", k: int = 1, length: int | None = None,
              ratio: float | None = None, encoder: Encoder | None = None, writer: TextGenerator | None = None,
              head: LengthHead | None = None, config: AbstractiveConfig | None = None) -> Summary:
    """Summarise ``text``: ``lead``/``textrank`` keep k sentences (or as many as come nearest a target
    length); ``model`` asks ``writer`` with a length token: ``length``, ``ratio`` × the input's
    length, or the length ``head``'s prediction."""
    if method not in ALL_METHODS:
        raise ConfigError(f"unknown summarisation method '{method}'; valid: {', '.join(ALL_METHODS)}")
    if k < 1:
        raise ConfigError(f"k is {k}; keep at least one sentence")
    target, source = target_length(text, length, ratio, head if method == "model" else None, encoder)
    if method == "model":
        if writer is None:
            raise ConfigError("method 'model' needs a text model: a fine-tuned run or openai:BASE_URL#MODEL")
        if target is None:
            target, source = max(1, round(0.1 * text_length(text))), "ratio"  # no head: a tenth of the input
        out = generate_summary(writer, text, target, config) if text.strip() else ""
        return Summary(out, method, length=text_length(out), target_length=target, target_source=source)
    sentences = split_sentences(text)
    indices = (extract(sentences, k, method, encoder) if target is None
               else extract_to_length(sentences, target, method, encoder))
    out = join([sentences[i] for i in indices])
    return Summary(out, method, sentences, indices, text_length(out), target, source)
