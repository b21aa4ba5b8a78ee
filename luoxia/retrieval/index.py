"""The embedded retrieval index: dense vectors from an `Encoder` plus BM25 over words, fused by rank.

Dense: the encoder's unit vectors, so an inner product is a cosine; exact search (`FlatStore`, or a
vector database behind `DenseStore`, e.g. `luoxia.retrieval.qdrant.QdrantStore`). Sparse: BM25
(`bm25s`, Lucene variant) over `tokenize`'s words: jieba's words (search mode) inside Chinese,
lowercased words elsewhere. Hybrid: reciprocal rank fusion of the two rankings (`RRF_K`).

On disk (`save`, one atomic directory): ``vectors.npy`` (N, dim) float32, ``docs.jsonl`` (id, text,
meta per line, in row order) and ``manifest.json`` (format version, encoder name and dim, count, BM25
settings, size and sha256 of both files). `load` verifies the checksums and the encoder, reads the
vectors back without encoding anything, and rebuilds BM25 from the texts (tokenizing is cheap next
to encoding, and the words then always match the query tokenizer of this version).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import bm25s
import faiss
import jieba
import numpy as np

from luoxia.checkpoint import atomic_directory
from luoxia.encoders.interface import Encoder
from luoxia.encoders.registry import ENCODERS, load_encoder
from luoxia.errors import CheckpointError, ConfigError, DataError
from luoxia.retrieval.interface import SEARCH_MODES, Document, Hit, SearchMode

FORMAT = "luoxia-index"
FORMAT_VERSION = 1
VECTORS_FILE = "vectors.npy"
DOCS_FILE = "docs.jsonl"
MANIFEST_FILE = "manifest.json"
# Reciprocal rank fusion: score(d) = sum over rankings of 1 / (RRF_K + rank(d)), rank from 1. k = 60 is the
# value of Cormack, Clarke and Büttcher (SIGIR 2009): it damps the weight of the very first ranks so that one
# ranking cannot outvote the other on its top hit alone, and it needs no score calibration between cosine and BM25.
RRF_K = 60
# How deep each ranking is read before fusing (at least k): documents below it in one ranking add nothing from it.
RRF_DEPTH = 100
# Below this many vectors the dense search is one numpy matrix-vector product plus argpartition: microseconds,
# no second copy of the vectors, no index to keep in step. From it on, faiss's IndexFlatIP (still exact) does the
# inner products with blocked SIMD kernels and keeps the top k in a heap instead of sorting N scores per query.
FAISS_THRESHOLD = 20_000
BM25_SETTINGS: dict[str, Any] = {"method": "lucene", "k1": 1.5, "b": 0.75}
TOKENIZER = "jieba-search+lowercase-words"  # recorded in the manifest: what `tokenize` does in this version
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORDS = re.compile(rf"(?P<cjk>[{_CJK}]+)|[^\W{_CJK}]+")
jieba.setLogLevel(logging.WARNING)  # its dictionary-loading notice is not the user's business
logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets DEBUG and logs every index build


def tokenize(text: str) -> list[str]:
    """BM25's words: in runs of Chinese characters jieba's words in its search-engine mode (a long word also
    gives its dictionary sub-words, so 明月 finds 明月光 and 望明月), elsewhere lowercased runs of letters,
    digits and underscores (punctuation dropped): "用Python写GPT" → ["用", "python", "写", "gpt"]."""
    tokens: list[str] = []
    for match in _WORDS.finditer(text):
        if match["cjk"] is None:
            tokens.append(match[0].lower())
        else:
            tokens.extend(jieba.lcut_for_search(match["cjk"]))
    return tokens


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class DenseStore(Protocol):
    """Where the vectors live and are searched: rows 0..N-1 in the order they were added."""

    def add(self, vectors: np.ndarray) -> None:
        """Append (M, dim) unit vectors as rows N..N+M-1."""
        ...

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the ``k`` largest inner products with ``query`` (dim,), best first."""
        ...

    def vectors(self) -> np.ndarray:
        """All (N, dim) float32 vectors in row order (what `HybridIndex.save` writes)."""
        ...

    def get(self, rows: Sequence[int]) -> np.ndarray:
        """(len(rows), dim) float32: the vectors of these rows."""
        ...

    def __len__(self) -> int: ...


class FlatStore:
    """Exact inner-product search in memory: numpy below ``faiss_threshold`` vectors, faiss IndexFlatIP from it
    (which holds its own copy of the vectors: twice the memory, the price of faiss's kernels)."""

    def __init__(self, dim: int, faiss_threshold: int = FAISS_THRESHOLD):
        self.dim = dim
        self.faiss_threshold = faiss_threshold
        self._vectors = np.zeros((0, dim), dtype=np.float32)  # (N, dim)
        self._faiss: faiss.IndexFlatIP | None = None  # built on the first search at or above the threshold

    def __len__(self) -> int:
        return len(self._vectors)

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._vectors = np.concatenate([self._vectors, vectors]) if len(self._vectors) else vectors
        if self._faiss is not None:
            self._faiss.add(vectors)

    def vectors(self) -> np.ndarray:
        return self._vectors

    def get(self, rows: Sequence[int]) -> np.ndarray:
        return self._vectors[list(rows)]

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self._vectors))
        if len(self._vectors) >= self.faiss_threshold:
            return self._search_faiss(query, k)
        scores = self._vectors @ query.astype(np.float32)  # (N,)
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return top.astype(np.int64), scores[top]

    def _search_faiss(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._faiss is None:
            self._faiss = faiss.IndexFlatIP(self.dim)
            self._faiss.add(self._vectors)
        scores, rows = self._faiss.search(query.reshape(1, -1).astype(np.float32), k)  # (1, k) each
        return rows[0].astype(np.int64), scores[0]


class Bm25:
    """BM25 over `tokenize`'s words; ``add`` rebuilds it from every document's words (IDF and the average
    length change with every document, and bm25s has no incremental update), which costs milliseconds per
    thousand documents next to the seconds their encoding takes."""

    def __init__(self) -> None:
        self.tokens: list[list[str]] = []
        self.model: bm25s.BM25 | None = None

    def add(self, texts: Sequence[str]) -> None:
        self.tokens.extend(tokenize(text) for text in texts)
        if not any(self.tokens):  # no document has a word (all punctuation or emoji): nothing to match
            self.model = None
            return
        self.model = bm25s.BM25(**BM25_SETTINGS)
        self.model.index(self.tokens, show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """(N,) BM25 score of every document; 0 where it shares no word with the query."""
        ids = self.model.get_tokens_ids(tokenize(query)) if self.model is not None else []
        if self.model is None or not ids:
            return np.zeros(len(self.tokens), dtype=np.float32)
        return np.asarray(self.model.get_scores_from_ids(ids), dtype=np.float32)


def _check_documents(documents: Sequence[Document], known: set[str]) -> None:
    seen = set(known)
    for document in documents:
        if not isinstance(document, Document):
            raise DataError(f"expected a Document, got {type(document).__name__}")
        if not document.id:
            raise DataError(f"a document has an empty id (text: {document.text[:40]!r})")
        if document.id in seen:
            raise DataError(f"duplicate document id '{document.id}'")
        if not document.text.strip():
            raise DataError(f"document '{document.id}' has no text")
        try:
            json.dumps(document.meta, ensure_ascii=False)
        except (TypeError, ValueError) as error:
            raise DataError(f"document '{document.id}': meta is not JSON-serialisable ({error})") from None
        seen.add(document.id)


class HybridIndex:
    """A `Retriever` over documents: dense, BM25 or both fused; saved to and loaded from a directory.
    Searches may run from several threads at once; `add` must not run beside them."""

    def __init__(self, encoder: Encoder, store: DenseStore | None = None):
        """An empty index; use `build` or `load`."""
        self.encoder = encoder
        self.store: DenseStore = store if store is not None else FlatStore(encoder.dim)
        self.documents: list[Document] = []
        self.bm25 = Bm25()
        self._ids: set[str] = set()

    @property
    def encoder_name(self) -> str:
        return self.encoder.name

    def __len__(self) -> int:
        return len(self.documents)

    @classmethod
    def build(cls, documents: Sequence[Document], encoder: Encoder, store: DenseStore | None = None) -> HybridIndex:
        """Encode and index ``documents`` (at least one)."""
        if not documents:
            raise DataError("no documents to index")
        index = cls(encoder, store)
        index.add(documents)
        return index

    def add(self, documents: Sequence[Document]) -> None:
        """Encode and append ``documents``; an id already in the index (or twice in them) is an error."""
        documents = list(documents)
        _check_documents(documents, self._ids)
        if not documents:
            return
        vectors = self.encoder.encode([d.text for d in documents])  # (M, dim)
        if vectors.shape != (len(documents), self.encoder.dim):
            raise ConfigError(f"encoder '{self.encoder.name}' gave vectors of shape {vectors.shape} for "
                              f"{len(documents)} texts, not ({len(documents)}, {self.encoder.dim})")
        self._append(documents, vectors)

    def _append(self, documents: list[Document], vectors: np.ndarray, to_store: bool = True) -> None:
        if to_store:
            self.store.add(vectors)
        self.documents.extend(documents)
        self._ids.update(d.id for d in documents)
        self.bm25.add([d.text for d in documents])

    def search(self, query: str, k: int = 5, mode: SearchMode = "hybrid", vector: np.ndarray | None = None
               ) -> list[Hit]:
        """The ``k`` best documents, best first. Scores: cosine (dense), BM25 (bm25; only documents sharing a
        word with the query), or the fused reciprocal-rank sum (hybrid). ``vector``: the query already
        encoded by this index's encoder (a caller searching one query several ways encodes it once)."""
        if mode not in SEARCH_MODES:
            raise ConfigError(f"unknown search mode '{mode}'; choose one of {', '.join(SEARCH_MODES)}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"k must be a whole number of at least 1, got {k!r}")
        if not isinstance(query, str):
            raise DataError(f"the query must be text, not {type(query).__name__}")
        if not query.strip():
            raise DataError("empty query")
        if not self.documents:
            raise DataError("the index holds no documents")
        if mode != "bm25" and vector is None:
            vector = self.encoder.encode([query])[0]  # (dim,)
        if mode == "dense":
            rows, scores = self._dense(vector, k)
        elif mode == "bm25":
            rows, scores = self._sparse(query, k)
        else:
            rows, scores = self._fused(query, vector, k)
        return [self._hit(int(row), float(score)) for row, score in zip(rows, scores, strict=True)]

    def _hit(self, row: int, score: float) -> Hit:
        document = self.documents[row]
        return Hit(document.id, score, document.text, dict(document.meta))

    def _dense(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.store.search(vector, min(k, len(self.documents)))

    def _sparse(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.bm25.scores(query)  # (N,)
        matched = np.flatnonzero(scores > 0)
        top = matched[np.argsort(-scores[matched], kind="stable")][:k]
        return top, scores[top]

    def _fused(self, query: str, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        depth = max(k, RRF_DEPTH)
        fused: dict[int, float] = {}
        for rows in (self._dense(vector, depth)[0], self._sparse(query, depth)[0]):
            for rank, row in enumerate(rows.tolist(), start=1):
                fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
        return (np.array([row for row, _ in best], dtype=np.int64),
                np.array([score for _, score in best], dtype=np.float64))

    def save(self, path: str | Path) -> Path:
        """Write the index to directory ``path`` atomically (a previous index there is replaced whole)."""
        if not self.documents:
            raise DataError("the index holds no documents; nothing to save")
        target = Path(path)
        with atomic_directory(target) as tmp:
            np.save(tmp / VECTORS_FILE, np.ascontiguousarray(self.store.vectors(), dtype=np.float32))
            with open(tmp / DOCS_FILE, "w", encoding="utf-8") as handle:
                for d in self.documents:
                    handle.write(json.dumps({"id": d.id, "text": d.text, "meta": d.meta}, ensure_ascii=False) + "\n")
            manifest = {"format": FORMAT, "version": FORMAT_VERSION, "encoder": self.encoder.name,
                        "dim": self.encoder.dim, "count": len(self.documents), "bm25": BM25_SETTINGS,
                        "tokenizer": TOKENIZER,
                        "rrf_k": RRF_K, "files": {name: {"bytes": (tmp / name).stat().st_size,
                                                        "sha256": _sha256(tmp / name)}
                                                  for name in (VECTORS_FILE, DOCS_FILE)}}
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | Path, encoder: Encoder | None = None, store: DenseStore | None = None) -> HybridIndex:
        """An index saved by `save`, checked against its manifest; ``encoder`` None loads the saved one by name.
        ``store`` replaces the `FlatStore`: empty, it receives the saved vectors; already holding them (a Qdrant
        collection filled by an earlier load, shared by replicas), it is used as it is."""
        path = Path(path)
        manifest = read_manifest(path)
        if encoder is None:
            encoder = _saved_encoder(manifest, path)
        if encoder.name != manifest["encoder"] or encoder.dim != manifest["dim"]:
            raise ConfigError(f"{path}: the index was built with encoder '{manifest['encoder']}' (dim "
                              f"{manifest['dim']}), not '{encoder.name}' (dim {encoder.dim}); load it with that "
                              "encoder or rebuild it")
        vectors, documents = _read_payload(path, manifest)
        index = cls(encoder, store)
        if len(index.store) and not _holds(index.store, vectors):
            raise ConfigError(f"{path}: the dense store given to load holds {len(index.store)} other vectors than "
                              f"this index's {len(vectors)}; give it an empty collection")
        index._append(documents, vectors, to_store=not len(index.store))
        return index


def _holds(store: DenseStore, vectors: np.ndarray) -> bool:
    """Whether ``store`` already holds exactly ``vectors`` (N, dim): same count, and the first, middle and
    last rows equal to float32 rounding (a sample: reading a remote collection whole would defeat sharing it)."""
    if len(store) != len(vectors):
        return False
    rows = sorted({0, len(vectors) // 2, len(vectors) - 1})
    return bool(np.allclose(store.get(rows), vectors[rows], rtol=0, atol=1e-6))


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of an index directory, with every file checked against its size and sha256."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: no index directory here")
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: missing or corrupt {MANIFEST_FILE}; not a luoxia index") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path / MANIFEST_FILE}: not a luoxia index manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: index format version {manifest.get('version')}; this luoxia reads "
                              f"version {FORMAT_VERSION}; rebuild the index")
    try:
        files = {name: (int(manifest["files"][name]["bytes"]), str(manifest["files"][name]["sha256"]))
                 for name in (VECTORS_FILE, DOCS_FILE)}
        int(manifest["dim"]), int(manifest["count"]), str(manifest["encoder"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path / MANIFEST_FILE}: incomplete manifest (no valid {error})") from None
    for name, (size, digest) in files.items():
        target = path / name
        if not target.is_file():
            raise CheckpointError(f"{target}: missing from the index")
        if target.stat().st_size != size or _sha256(target) != digest:
            raise CheckpointError(f"{target}: corrupt (size or sha256 does not match {MANIFEST_FILE})")
    return manifest


def _saved_encoder(manifest: dict[str, Any], path: Path) -> Encoder:
    name = manifest["encoder"]
    if name not in ENCODERS:
        raise ConfigError(f"{path}: the index was built with encoder '{name}', which is not a registered name "
                          f"({', '.join(ENCODERS)}); pass that encoder (a directory: --encoder DIR)")
    return load_encoder(name)


def _read_payload(path: Path, manifest: dict[str, Any]) -> tuple[np.ndarray, list[Document]]:
    """The vectors (count, dim) and documents of a verified index directory."""
    try:
        vectors = np.load(path / VECTORS_FILE, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path / VECTORS_FILE}: unreadable ({error})") from None
    documents = []
    for line in (path / DOCS_FILE).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        documents.append(Document(record["id"], record["text"], record["meta"]))
    if vectors.shape != (manifest["count"], manifest["dim"]) or len(documents) != manifest["count"]:
        raise CheckpointError(f"{path}: {len(documents)} documents and vectors of shape {vectors.shape} do not match "
                              f"the manifest's count {manifest['count']} and dim {manifest['dim']}")
    return vectors.astype(np.float32, copy=False), documents
