"""A Qdrant collection as the dense half of `HybridIndex` (a `DenseStore`): past one machine's memory.

``QdrantStore(dim, url="http://host:6333")`` talks to a Qdrant server; ``path=DIR`` runs Qdrant's embedded
local mode in this process (no server; what the tests use); neither keeps an in-memory collection. Rows are
point ids 0..N-1 in the order added (the documents' rows), so BM25, the documents and
fusion stay in `HybridIndex` and only the vectors move. Distance is the dot product: the encoders' vectors
are unit-norm, so it equals the cosine `FlatStore` computes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from qdrant_client.models import Distance, PointStruct, SearchParams, VectorParams

from luoxia.errors import ConfigError

UPSERT_BATCH = 256


class QdrantStore:
    """Exact (``exact=True``) inner-product search in one Qdrant collection; see the module docstring."""

    def __init__(self, dim: int, collection: str = "luoxia", url: str | None = None, path: str | os.PathLike[str] |
                 None = None, api_key: str | None = None):
        if url is not None and path is not None:
            raise ConfigError("give a Qdrant server url or an embedded path, not both")
        self.dim, self.collection = dim, collection
        # the embedded local mode always searches exhaustively and warns about search parameters
        self._search_params = SearchParams(exact=True) if url is not None else None
        try:
            if url is not None:
                self.client = QdrantClient(url=url, api_key=api_key or os.environ.get("QDRANT_API_KEY"))
            else:
                self.client = QdrantClient(path=str(path)) if path is not None else QdrantClient(location=":memory:")
        except (OSError, RuntimeError, ValueError) as error:  # e.g. an embedded path another client holds
            raise ConfigError(f"Qdrant at {url or path}: {str(error).splitlines()[0]}") from None
        try:
            self._open_collection()
        except (UnexpectedResponse, ResponseHandlingException, OSError, RuntimeError, ValueError, ConfigError) as error:
            self.client.close()  # an embedded store keeps its directory locked while a client is open
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(f"Qdrant collection '{collection}': {str(error).splitlines()[0]}") from None

    def _open_collection(self) -> None:
        if not self.client.collection_exists(self.collection):
            self.client.create_collection(self.collection, vectors_config=VectorParams(size=self.dim,
                                                                                      distance=Distance.DOT))
        params = self.client.get_collection(self.collection).config.params.vectors
        size = getattr(params, "size", None)
        if size != self.dim:
            raise ConfigError(f"Qdrant collection '{self.collection}' holds vectors of size {size}, not {self.dim}")
        self._count = self.client.count(self.collection, exact=True).count

    def __len__(self) -> int:
        return self._count

    def add(self, vectors: np.ndarray) -> None:
        """Upsert (M, dim) vectors as points N..N+M-1, in batches."""
        for start in range(0, len(vectors), UPSERT_BATCH):
            batch = vectors[start:start + UPSERT_BATCH]
            points = [PointStruct(id=self._count + start + i, vector=row.astype(np.float32).tolist())
                      for i, row in enumerate(batch)]
            self.client.upsert(self.collection, points=points, wait=True)
        self._count += len(vectors)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores), best first; exact search (no HNSW approximation) so it ranks like `FlatStore`."""
        points = self.client.query_points(self.collection, query=query.astype(np.float32).tolist(),
                                          limit=min(k, self._count), search_params=self._search_params).points
        rows = np.array([int(point.id) for point in points], dtype=np.int64)
        return rows, np.array([point.score for point in points], dtype=np.float32)

    def vectors(self) -> np.ndarray:
        """Every vector in row order (scrolled from the collection)."""
        out = np.zeros((self._count, self.dim), dtype=np.float32)
        offset = None
        while True:
            points, offset = self.client.scroll(self.collection, limit=1024, offset=offset, with_vectors=True)
            for point in points:
                out[int(point.id)] = np.asarray(point.vector, dtype=np.float32)
            if offset is None:
                return out

    def get(self, rows: Sequence[int]) -> np.ndarray:
        """(len(rows), dim): the vectors of these rows, fetched by point id."""
        points = {int(p.id): p.vector for p in self.client.retrieve(self.collection, ids=list(rows), with_vectors=True)}
        if len(points) != len(set(rows)):
            raise ConfigError(f"Qdrant collection '{self.collection}' lacks rows {sorted(set(rows) - set(points))}")
        return np.array([points[row] for row in rows], dtype=np.float32)

    def close(self) -> None:
        self.client.close()
