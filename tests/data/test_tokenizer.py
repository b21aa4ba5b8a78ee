from pathlib import Path

import pytest

from luoxia.data.tokenizer import EOS_TOKEN, TextTokenizer, train_bpe_tokenizer, train_char_tokenizer, train_tokenizer
from luoxia.errors import DataError

SAMPLES = ["Hello, world!", "床前明月光，疑是地上霜。", "emoji 🙂👍🏽 and\ttabs\nnewlines", "  leading spaces",
           "é vs e\u0301"]


@pytest.fixture(scope="module")
def bpe() -> TextTokenizer:
    corpus = ["Hello world, hello tokenizer. " * 20, "床前明月光，疑是地上霜。" * 10, "emoji 🙂 everywhere"]
    return train_bpe_tokenizer(corpus, vocab_size=300)


@pytest.mark.parametrize("text", SAMPLES)
def test_bpe_round_trips_any_text(bpe: TextTokenizer, text: str):
    assert bpe.decode(bpe.encode(text)) == text


@pytest.mark.parametrize("text", SAMPLES)
def test_char_round_trips_seen_characters(text: str):
    tokenizer = train_char_tokenizer(SAMPLES)
    ids = tokenizer.encode(text)
    assert len(ids) == len(text)  # one token per character, CJK and emoji included
    assert tokenizer.decode(ids) == text


def test_char_vocabulary_is_sorted_characters_without_specials():
    tokenizer = train_tokenizer("char", ["hello\nworld"], eos=False)
    assert tokenizer.vocab_size == len(set("hello\nworld"))
    assert tokenizer.encode("\ndehlorw") == list(range(8))
    assert tokenizer.eos_id is None


def test_char_with_eos_puts_it_first():
    tokenizer = train_tokenizer("char", ["ab"], eos=True)
    assert tokenizer.eos_id == 0
    assert tokenizer.decode([0, 1, 2]) == f"{EOS_TOKEN}ab"


def test_char_unknown_character_is_a_clear_error():
    tokenizer = train_char_tokenizer(["abc"])
    with pytest.raises(DataError, match="never seen: 'xz'"):
        tokenizer.encode("axbz")


def test_rare_characters_map_to_unk():
    tokenizer = train_char_tokenizer(["aaab"], min_frequency=2)
    assert tokenizer.decode(tokenizer.encode("ab")) == "a<unk>"


def test_batch_encoding_equals_single(bpe: TextTokenizer):
    char = train_char_tokenizer(SAMPLES)
    for tokenizer in (bpe, char):
        assert tokenizer.encode_batch(SAMPLES) == [tokenizer.encode(t) for t in SAMPLES]


def test_save_load_standard_tokenizer_json(bpe: TextTokenizer, tmp_path: Path):
    path = bpe.save(tmp_path)
    assert path.name == "tokenizer.json"
    loaded = TextTokenizer.load(tmp_path)
    assert loaded.encode(SAMPLES[1]) == bpe.encode(SAMPLES[1])
    assert loaded.eos_id == bpe.eos_id == bpe.backend.token_to_id(EOS_TOKEN)


def test_load_errors(tmp_path: Path):
    with pytest.raises(DataError, match="tokenizer file not found"):
        TextTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match="not a valid tokenizer.json"):
        TextTokenizer.load(tmp_path)


def test_empty_corpus_and_bad_vocab():
    with pytest.raises(DataError, match="empty corpus"):
        train_char_tokenizer([""])
    with pytest.raises(DataError, match="vocab_size ≥ 257"):
        train_tokenizer("bpe", ["abc"], vocab_size=100)
