"""The green-list text watermark: the keyed green lists, the logits processor on Luoxia's and
Hugging Face models, the detector, and key handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from luoxia.data.tokenizer import train_char_tokenizer
from luoxia.errors import ConfigError, LuoxiaError
from luoxia.generate.interface import GenerationConfig
from luoxia.generate.load import load_tokenizer
from luoxia.generate.text import GPTGenerator
from luoxia.registry import load
from luoxia.safety.watermark import (
    DEMO_KEY,
    KEY_ENV,
    KEY_FILE_ENV,
    WatermarkConfig,
    WatermarkDetector,
    WatermarkLogitsProcessor,
    detect_ids,
    green_mask,
    parse_key,
    resolve_key,
)
from tests.helpers import TEXT, tiny_gpt, tiny_hf_model

KEY = parse_key("00112233445566778899aabbccddeeff", "test")
OTHER = parse_key("ffeeddccbbaa99887766554433221100", "test")
SAMPLING = GenerationConfig(max_new_tokens=200, temperature=1.0, seed=0)


def test_green_lists_have_gamma_share_depend_on_key_and_previous_token():
    vocab = np.arange(20_000)
    green = green_mask(KEY, np.array(5), vocab, 0.25)
    assert abs(green.mean() - 0.25) < 0.02
    assert np.array_equal(green, green_mask(KEY, np.array(5), vocab, 0.25))
    assert (green != green_mask(KEY, np.array(6), vocab, 0.25)).mean() > 0.3
    assert (green != green_mask(OTHER, np.array(5), vocab, 0.25)).mean() > 0.3


def test_processor_adds_delta_to_green_logits_of_each_rows_previous_token():
    processor = WatermarkLogitsProcessor(KEY, WatermarkConfig(delta=3.0))
    logits = torch.zeros(2, 50)
    ids = torch.tensor([[9, 1], [9, 2]])
    out = processor(ids, logits)
    for row, previous in enumerate((1, 2)):
        green = torch.from_numpy(green_mask(KEY, np.array(previous), np.arange(50), 0.25))
        assert torch.equal(out[row], 3.0 * green.float())


@pytest.fixture(scope="module")
def char_generator():
    tokenizer = train_char_tokenizer([TEXT], special_tokens=["<|endoftext|>"])
    model = tiny_gpt(seed=1, vocab_size=tokenizer.vocab_size, block_size=256)
    return GPTGenerator(model, tokenizer)


def test_watermarked_text_is_detected_and_plain_text_of_the_same_model_is_not(char_generator):
    detector = WatermarkDetector(char_generator.tokenizer, KEY)
    marked = char_generator.generate("To be", SAMPLING, [WatermarkLogitsProcessor(KEY)])[0].text
    plain = char_generator.generate("To be", SAMPLING)[0].text
    found, clean = detector.detect(marked), detector.detect(plain)
    assert found.watermarked and found.z > 4 and found.green_fraction > 0.4
    assert not clean.watermarked and clean.z < 4
    assert not WatermarkDetector(char_generator.tokenizer, OTHER).detect(marked).watermarked


def test_watermark_works_through_a_hugging_face_model(tmp_path: Path):
    generator = load(tiny_hf_model(tmp_path / "hf"), device="cpu")
    config = GenerationConfig(max_new_tokens=120, temperature=1.0, seed=0)  # the model's context is 32
    # no end-of-text, so that every seed gives 120 tokens to score (this random model often ends early)
    no_eos = lambda ids, logits: logits.index_fill(1, torch.tensor([generator.tokenizer.eos_id]), float("-inf"))  # noqa: E731
    marked = generator.generate("To be", config, [no_eos, WatermarkLogitsProcessor(KEY)])[0].text
    detector = WatermarkDetector(load_tokenizer(tmp_path / "hf"), KEY)
    assert detector.detect(marked).watermarked
    assert not detector.detect(generator.generate("To be", config, [no_eos])[0].text).watermarked


def test_repeated_pairs_are_scored_once():
    result = detect_ids([1, 2] * 100, KEY)
    assert result.tokens_scored == 2  # (1, 2) and (2, 1)


def test_detector_refuses_empty_text_and_single_tokens(char_tokenizer):
    detector = WatermarkDetector(char_tokenizer, KEY)
    with pytest.raises(LuoxiaError, match="empty"):
        detector.detect("  \n")
    with pytest.raises(LuoxiaError, match="at least 2"):
        detector.detect("T")


@pytest.mark.parametrize("bad", ["", "xyz", "abcd", "0011223344556677889", "g" * 32, "0" * 33])
def test_malformed_keys_are_refused_with_the_expected_format(bad: str):
    with pytest.raises(ConfigError, match="hex digits"):
        parse_key(bad, "--key")


def test_key_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    assert resolve_key().is_demo and resolve_key().secret == bytes.fromhex(DEMO_KEY)
    monkeypatch.setenv(KEY_ENV, "ab" * 16)
    assert resolve_key().secret == bytes.fromhex("ab" * 16)
    key_file = tmp_path / "key.hex"
    key_file.write_text("cd" * 16 + "\n")
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    assert resolve_key().secret == bytes.fromhex("cd" * 16)
    assert resolve_key("ef" * 16).secret == bytes.fromhex("ef" * 16)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_key(key_file=tmp_path / "missing")


def test_load_tokenizer_reads_only_the_tokenizer_of_a_run(trained_run: Path):
    tokenizer = load_tokenizer(trained_run)
    assert tokenizer.decode(tokenizer.encode("To be")) == "To be"
