"""What every retriever offers: documents in, ranked hits for a query out.

The applications (`luoxia.apps`) depend on this protocol only, so the embedded index, an adapter to a
vector database, or a test double can stand behind them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

SearchMode = Literal["hybrid", "dense", "bm25"]
SEARCH_MODES: tuple[str, ...] = ("hybrid", "dense", "bm25")


@dataclass(frozen=True)
class Document:
    """One retrievable unit: a passage, an FAQ entry (question as ``text``, answer in ``meta``), a triple."""

    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit:
    """A document matched by a query: ``score`` is the mode's own (cosine, BM25, or fused reciprocal rank)."""

    id: str
    score: float
    text: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 6), "text": self.text, "meta": self.meta}


@runtime_checkable
class Retriever(Protocol):
    def search(self, query: str, k: int = 5, mode: SearchMode = "hybrid") -> list[Hit]:
        """The ``k`` best documents for ``query``, best first (fewer when the index is smaller)."""
        ...

    def add(self, documents: Sequence[Document]) -> None:
        """Index more documents; an id already present is an error."""
        ...

    def __len__(self) -> int: ...
