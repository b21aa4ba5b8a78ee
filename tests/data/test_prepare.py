import json
from pathlib import Path

import numpy as np
import pytest

from luoxia.data.packed import WindowSampler, open_tokens, read_meta
from luoxia.data.prepare import DataConfig, is_prepared, prepare, prepare_cached, split_documents
from luoxia.data.tokenizer import TextTokenizer
from luoxia.errors import ConfigError, DataError
from luoxia.safety.pii import mask_pii


def test_prepare_writes_tokens_tokenizer_and_meta(corpus_dir: Path, tmp_path: Path):
    out = tmp_path / "prepared"
    meta = prepare(DataConfig(corpus=str(corpus_dir), tokenizer="char", val_fraction=0.3), out)
    assert {p.name for p in out.iterdir()} >= {"train.bin", "val.bin", "tokenizer.json", "meta.json"}
    assert meta["counts"]["documents"] == 3 and meta["counts"]["documents_read"] == 3
    assert len(meta["sources"]) == 3 and all(len(s["sha256"]) == 64 for s in meta["sources"])
    train = open_tokens(out, "train")
    assert isinstance(train, np.memmap) and train.dtype == np.uint16
    assert len(train) == meta["counts"]["train_tokens"]
    tokenizer = TextTokenizer.load(out)
    decoded = tokenizer.decode(np.asarray(train).tolist())
    assert decoded.count("<|endoftext|>") == 1  # two training documents, one separator between them


def test_split_is_deterministic_and_seeded():
    docs = [f"doc {i}" for i in range(50)]
    assert split_documents(docs, 0.2, seed=1) == split_documents(docs, 0.2, seed=1)
    assert split_documents(docs, 0.2, seed=1) != split_documents(docs, 0.2, seed=2)
    train, val = split_documents(docs, 0.2, seed=1)
    assert len(val) == 10 and sorted(train + val) == sorted(docs)


def test_same_config_gives_identical_bytes(corpus_dir: Path, tmp_path: Path):
    config = DataConfig(corpus=str(corpus_dir), tokenizer="bpe", vocab_size=300)
    prepare(config, tmp_path / "a")
    prepare(config, tmp_path / "b")
    for name in ("train.bin", "val.bin", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_tail_split_is_the_last_share_of_the_stream(tmp_path: Path):
    text = "abcdefghij" * 100
    (tmp_path / "one.txt").write_text(text)
    meta = prepare(DataConfig(corpus=str(tmp_path / "one.txt"), tokenizer="char", eos=False), tmp_path / "p")
    assert meta["counts"]["train_tokens"] == 900 and meta["counts"]["val_tokens"] == 100
    tokenizer = TextTokenizer.load(tmp_path / "p")
    assert tokenizer.decode(np.asarray(open_tokens(tmp_path / "p", "val")).tolist()) == text[900:]


def test_empty_corpus_after_cleaning_is_an_error(tmp_path: Path):
    (tmp_path / "blank.txt").write_text("  \n\x00\x01\n")
    with pytest.raises(DataError, match=r"blank\.txt: empty corpus after cleaning \(1 documents read"):
        prepare(DataConfig(corpus=str(tmp_path / "blank.txt")), tmp_path / "out")


def test_prepare_cached_reuses_and_notices_changes(corpus_dir: Path, tmp_path: Path):
    config = DataConfig(corpus=str(corpus_dir), tokenizer="char")
    out = tmp_path / "p"
    prepare_cached(config, out)
    assert is_prepared(config, out)
    assert not is_prepared(config.model_copy(update={"val_fraction": 0.3}), out)
    (corpus_dir / "part0.txt").write_text("changed content entirely")
    assert not is_prepared(config, out)


def test_truncated_token_file_is_detected(corpus_dir: Path, tmp_path: Path):
    prepare(DataConfig(corpus=str(corpus_dir), tokenizer="char"), tmp_path)
    with open(tmp_path / "train.bin", "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(DataError, match="re-run `luoxia prepare`"):
        open_tokens(tmp_path, "train")
    (tmp_path / "meta.json").write_text("{")
    with pytest.raises(DataError, match="corrupt metadata"):
        read_meta(tmp_path)


def test_window_sampler_is_a_pure_function_of_step_and_shards_by_rank():
    tokens = np.arange(1000, dtype=np.uint16)
    full = WindowSampler(tokens, block_size=8, batch_size=6, seed=3)
    x, y = full.batch(step=5, micro=1)
    assert x.shape == (6, 8) and bool((y[:, :-1] == x[:, 1:]).all()) and bool((y[:, -1] == x[:, -1] + 1).all())
    again, _ = WindowSampler(tokens, 8, 6, seed=3).batch(5, 1)
    assert bool((again == x).all())
    assert not bool((full.batch(6, 1)[0] == x).all())
    ranks = [WindowSampler(tokens, 8, 3, seed=3, rank=r, world_size=2).batch(5, 1)[0] for r in (0, 1)]
    assert bool((np.concatenate(ranks) == x.numpy()).all())


def test_window_sampler_needs_enough_tokens():
    with pytest.raises(DataError, match="too few"):
        WindowSampler(np.arange(5), block_size=8, batch_size=2, seed=0)


def test_meta_is_valid_json_with_config(corpus_dir: Path, tmp_path: Path):
    prepare(DataConfig(corpus=str(corpus_dir), tokenizer="char"), tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["config"]["tokenizer"] == "char" and meta["vocab_size"] > 10


def test_redact_pii_masks_personal_data_before_training(tmp_path: Path):
    corpus = tmp_path / "notes.txt"
    corpus.write_text("Write to amy@example.org or call 13812345678 about order 2024.\n" * 20, encoding="utf-8")
    config = DataConfig(corpus=str(corpus), tokenizer="char", redact_pii=True, split="tail")
    with pytest.raises(ConfigError, match="masker"):  # data/ cannot find the masker itself: it is passed in
        prepare(config, tmp_path / "out")
    meta = prepare(config, tmp_path / "out", mask=mask_pii)
    text = TextTokenizer.load(tmp_path / "out").decode(np.asarray(open_tokens(tmp_path / "out", "train")).tolist())
    assert "amy@" not in text and "138" not in text and "[EMAIL]" in text and "[PHONE]" in text
    assert "order 2024" in text and meta["pii_redacted"] == 40
