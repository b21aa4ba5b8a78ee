"""The Qdrant adapter in embedded local mode: the same hits as the in-memory flat store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from luoxia.errors import ConfigError
from luoxia.retrieval.index import FlatStore, HybridIndex
from luoxia.retrieval.interface import Document
from luoxia.retrieval.qdrant import QdrantStore
from tests.retrieval.conftest import DOCS

# Qdrant computes the dot products itself (its own SIMD code), in float32: summation order differs from numpy's.
ATOL = 1e-5
# an unreachable server also fails qdrant-client's version check, which warns before the connection error
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")


def test_qdrant_store_searches_like_the_flat_store(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 24)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    flat, store = FlatStore(24), QdrantStore(24, path=tmp_path / "qdrant")
    for part in (vectors[:30], vectors[30:]):
        flat.add(part)
        store.add(part)
    assert len(store) == 50
    np.testing.assert_array_equal(store.vectors(), vectors)  # float32 in, float32 back
    for query in vectors[:5] + 0.1 * rng.standard_normal((5, 24)).astype(np.float32):
        rows_flat, scores_flat = flat.search(query, 5)
        rows_q, scores_q = store.search(query, 5)
        np.testing.assert_array_equal(rows_q, rows_flat)
        torch.testing.assert_close(torch.from_numpy(scores_q), torch.from_numpy(scores_flat), atol=ATOL, rtol=0)
    store.close()
    reopened = QdrantStore(24, path=tmp_path / "qdrant")  # persisted by embedded Qdrant: rows continue from 50
    assert len(reopened) == 50
    reopened.close()
    with pytest.raises(ConfigError, match="holds vectors of size 24, not 8"):
        QdrantStore(8, path=tmp_path / "qdrant")
    holder = QdrantStore(24, path=tmp_path / "qdrant")  # the refused store let go of the directory
    with pytest.raises(ConfigError, match="already accessed by another instance"):
        QdrantStore(24, path=tmp_path / "qdrant")
    holder.close()
    with pytest.raises(ConfigError, match="Connection refused"):
        QdrantStore(24, url="http://127.0.0.1:1")


def test_hybrid_index_backed_by_qdrant(usem3, tmp_path):
    flat = HybridIndex.build(DOCS, usem3)
    backed = HybridIndex.build(DOCS, usem3, store=QdrantStore(usem3.dim))  # in memory
    for mode in ("dense", "hybrid"):
        for query in ("reset password", "我要退款", "Python GPT"):
            a, b = backed.search(query, k=3, mode=mode), flat.search(query, k=3, mode=mode)
            assert [h.id for h in a] == [h.id for h in b]
    backed.add([Document("late", "Gift cards never expire.")])
    backed.save(tmp_path / "ix")  # vectors scrolled back out of Qdrant into the portable format
    loaded = HybridIndex.load(tmp_path / "ix", usem3, store=QdrantStore(usem3.dim, path=tmp_path / "q2"))
    assert loaded.search("do gift cards expire", k=1)[0].id == "late"
    loaded.store.close()  # type: ignore[attr-defined]
    # a collection that already holds this index's vectors (a second replica, a restart) is used as it is
    again = HybridIndex.load(tmp_path / "ix", usem3, store=QdrantStore(usem3.dim, path=tmp_path / "q2"))
    assert len(again.store) == 7 and again.search("do gift cards expire", k=1)[0].id == "late"
    other = HybridIndex.build(DOCS[:2], usem3, store=QdrantStore(usem3.dim))
    with pytest.raises(ConfigError, match="holds 2 other vectors than this index's 7"):
        HybridIndex.load(tmp_path / "ix", usem3, store=other.store)
    with pytest.raises(ConfigError, match="not both"):
        QdrantStore(4, url="http://localhost:6333", path=tmp_path)
