"""The learned layer of `luoxia.safety.moderation`: one logistic regression per moderation
category on sentence embeddings, with a threshold per category and script (Latin or Chinese text),
saved as ``head.safetensors`` plus ``head.json``, and the sentence windows it reads a long text in.

It lives with the models so that training it (`luoxia.train.moderation`) and using it
(`luoxia.safety.moderation`) both import it from below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import re2
from safetensors.numpy import load_file, save_file

from luoxia.errors import CheckpointError

CATEGORIES = ("sexual", "sexual/minors", "hate", "hate/threatening", "harassment", "self-harm", "violence",
              "violence/graphic", "illicit")
HEAD_FILE, HEAD_INFO = "head.safetensors", "head.json"
WINDOW_CHARS = 200
SHORTEST_WINDOW = 24
# A sentence ends after a run of terminators and closing quotes or brackets: Latin ones before a
# space (so "3.14" and "e.g." stay whole), Chinese ones anywhere; a line break ends one too.
_SENTENCE_END = re2.compile(r"[.!?;…]+[\"'”’)\]]*(\s+|$)|[。！？；]+[”’」』）]*|\n+")
Span = tuple[int, int]
SCRIPTS = ("latin", "chinese")  # the rows of a head's thresholds: scores of the two are not on one scale


def is_chinese(text: str) -> bool:
    """Whether Han characters make up at least a third of the text's letters (one linear pass)."""
    han = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    letters = sum(1 for ch in text if ch.isalpha())
    return han > 0 and 3 * han >= letters


@dataclass
class ModerationHead:
    """Per-category logistic regressions on sentence embeddings: probability = σ(w·x + b)."""

    categories: list[str]
    weights: np.ndarray  # (C, dim)
    bias: np.ndarray  # (C,)
    thresholds: np.ndarray  # (len(SCRIPTS), C), or (C,) for both scripts
    encoder: str = "minilm"
    info: dict[str, Any] = field(default_factory=dict)
    window_chars: int = WINDOW_CHARS  # a long text is read as windows of whole sentences up to this size

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, dim) → (N, C)."""
        logits: np.ndarray = embeddings @ self.weights.T + self.bias
        probabilities: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
        return probabilities

    def thresholds_for(self, chinese: np.ndarray) -> np.ndarray:
        """(N,) bools → (N, C): each row's thresholds for its script."""
        table = np.atleast_2d(self.thresholds.astype(np.float64))
        rows: np.ndarray = table[np.minimum(chinese.astype(np.int64), len(table) - 1)]
        return rows

    def scores(self, embeddings: np.ndarray, chinese: np.ndarray | None = None) -> np.ndarray:
        """(N, dim) → (N, C) probabilities moved, monotonically and piecewise linearly, so that each
        category's tuned threshold for the row's script (``chinese``: per row, default Latin) lands
        on 0.5: every layer's scores then flag at one threshold."""
        chinese = np.zeros(len(embeddings), dtype=bool) if chinese is None else chinese
        p, t = self.probabilities(embeddings), np.clip(self.thresholds_for(chinese), 1e-6, 1.0)
        below = 0.5 * p / t
        above = 0.5 + 0.5 * (p - t) / np.maximum(1.0 - t, 1e-6)
        scores: np.ndarray = np.where(p < t, below, np.minimum(above, 1.0))
        return scores

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"weights": self.weights.astype(np.float32), "bias": self.bias.astype(np.float32),
                   "thresholds": self.thresholds.astype(np.float32)}, str(directory / HEAD_FILE))
        info = {"categories": self.categories, "encoder": self.encoder, "window_chars": self.window_chars,
                **self.info}
        (directory / HEAD_INFO).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> ModerationHead:
        directory = Path(directory)
        if not (directory / HEAD_FILE).is_file() or not (directory / HEAD_INFO).is_file():
            raise CheckpointError(f"{directory}: no moderation classifier ({HEAD_FILE} and {HEAD_INFO}); "
                                  "train one with `luoxia train configs/safety/moderation.yaml`")
        try:
            tensors = load_file(str(directory / HEAD_FILE))
            info = json.loads((directory / HEAD_INFO).read_text(encoding="utf-8"))
            categories = info.pop("categories")
            window_chars = int(info.pop("window_chars", WINDOW_CHARS))
        except Exception as error:  # safetensors raises its own error type for a bad header
            raise CheckpointError(f"{directory}: corrupt moderation classifier ({error})") from None
        return cls(categories, tensors["weights"], tensors["bias"], tensors["thresholds"], info.pop("encoder"), info,
                   window_chars)


def sentence_spans(text: str) -> list[Span]:
    """(start, end) of each sentence, whitespace trimmed; one RE2 pass, so linear in the text."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    return [trimmed for span in spans if (trimmed := _trim(text, span))[1] > trimmed[0]]


def text_windows(text: str, limit: int = WINDOW_CHARS, shortest: int = SHORTEST_WINDOW) -> list[Span]:
    """Sentence windows: each sentence on its own, joined to the one before while that window is
    shorter than ``shortest`` characters ("Yes." says little alone), never over ``limit`` (a longer
    sentence is cut at a space where it can be). A text is read piece by piece so that one harmful
    sentence is not averaged away by the text around it."""
    windows: list[Span] = []
    for start, end in sentence_spans(text):
        if windows and windows[-1][1] - windows[-1][0] < shortest and end - windows[-1][0] <= limit:
            windows[-1] = (windows[-1][0], end)
            continue
        while end - start > limit:
            cut = text.rfind(" ", start + limit // 2, start + limit)
            cut = cut if cut > start else start + limit
            windows.append(_trim(text, (start, cut)))
            start = cut
        windows.append(_trim(text, (start, end)))
    return [window for window in windows if window[1] > window[0]]


def _trim(text: str, span: Span) -> Span:
    start, end = span
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
