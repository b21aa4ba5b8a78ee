"""What every sentence encoder offers: texts in, one unit vector per text out.

Moderation, the embeddings endpoint and (later) retrieval depend on this protocol only, so a
multilingual encoder or a trained masked LM can replace MiniLM without touching them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """``encode(texts)`` → (N, ``dim``) float32 rows of L2 norm 1: similar meanings, large dot products."""

    @property
    def name(self) -> str:
        """What the encoder is called in responses and reports (``minilm``, a directory's name)."""
        ...

    @property
    def dim(self) -> int:
        """Length of each vector."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32, each row L2-normalised; (0, dim) for no texts."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the encoder reads of ``text`` (after truncation): the usage an API reports."""
        ...

