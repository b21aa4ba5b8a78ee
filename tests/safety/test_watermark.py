"""The green-list text watermark: the keyed green lists, the logits processor on Luoxia's and
Hugging Face models, the detector, and key handling."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from luoxia.config import build_config
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
    SCHEME,
    WatermarkConfig,
    WatermarkDetector,
    WatermarkLogitsProcessor,
    detect_ids,
    green_mask,
    parse_key,
    resolve_key,
    token_entropies,
)
from luoxia.safety.watermark_calibration import (
    CALIBRATION_FILE,
    calibrate,
    calibrated_min_tokens,
    load_calibration,
    save_calibration,
    shortest_reliable,
    substitute,
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


# Issue 14 item 5: entropy-aware detection, the calibrated minimum length, backward compatibility.

def test_green_lists_and_scores_of_the_original_scheme_are_unchanged():
    """Texts watermarked before entropy-aware detection and calibration still score the same: the green
    list function (scheme kgw-prev1) and the plain z-score are pinned to values computed on the old code."""
    mask = green_mask(KEY, np.arange(8)[:, None], np.arange(64)[None, :], 0.25)
    assert hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()[:16] == "3c7664b56f6545ca"
    ids = [int(x) for x in np.random.default_rng(0).integers(0, 500, 300)]
    found = detect_ids(ids, KEY)
    assert (found.z, found.tokens_scored, found.scheme) == (pytest.approx(-0.7679476477883045), 299, SCHEME)
    assert detect_ids(ids, KEY, WatermarkConfig(gamma=0.5)).z == pytest.approx(0.5204834387696162)
    assert found.to_json()["verdict"] == "not watermarked" and found.min_tokens is None


def test_entropy_aware_detection_scores_only_high_entropy_tokens():
    ids = list(range(40))
    entropies = np.array([np.nan] + [0.1, 2.0] * 19 + [0.1])  # token i follows entropy entropies[i]
    config = WatermarkConfig(entropy_threshold=1.0)
    found = detect_ids(ids, KEY, config, entropies)
    assert found.tokens_scored == 19 and found.entropy_threshold == 1.0
    kept = [(i - 1, i) for i in range(2, 40, 2)]
    assert found.green_fraction == pytest.approx(green_mask(KEY, *np.array(kept).T, 0.25).mean())
    assert detect_ids(ids, KEY, WatermarkConfig(), entropies).tokens_scored == 39  # 0 = every token
    with pytest.raises(LuoxiaError, match="needs the model's entropies"):
        detect_ids(ids, KEY, config)


def test_entropy_threshold_is_validated_and_needs_a_model(char_generator):
    with pytest.raises(ConfigError, match="entropy_threshold"):
        build_config(WatermarkConfig, {"entropy_threshold": -0.5}, source="test")
    config = WatermarkConfig(entropy_threshold=0.5)
    with pytest.raises(ConfigError, match="needs the model"):
        WatermarkDetector(char_generator.tokenizer, KEY, config)
    detector = WatermarkDetector(char_generator.tokenizer, KEY, config, model=char_generator)
    found = detector.detect("To be or not to be, that is the question")
    assert 0 < found.tokens_scored <= len(char_generator.tokenizer.encode("To be or not to be, that is the question"))


def test_token_entropies_slide_over_texts_longer_than_the_context(char_generator):
    ids = char_generator.tokenizer.encode(TEXT * 3)[:600]  # the context is 256: windows start at 0, 128, 256, 384
    entropies = token_entropies(char_generator, ids)
    assert entropies.shape == (600,) and np.isnan(entropies[0]) and np.isfinite(entropies[1:]).all()
    direct = token_entropies(char_generator, ids[:256])
    assert np.allclose(entropies[1:256], direct[1:], atol=1e-5)
    log_probs = char_generator.sequence_logits(torch.tensor([ids[384:556]]))[0].float().log_softmax(-1)
    assert float(-(log_probs[-1].exp() * log_probs[-1]).sum()) == pytest.approx(entropies[556], abs=1e-4)


def test_repeated_low_entropy_text_is_not_a_false_positive():
    """A text that repeats one phrase (low entropy, the same pairs over and over) counts each pair once."""
    phrase = [int(x) for x in np.random.default_rng(1).integers(0, 60, 12)]
    once, many = detect_ids(phrase, KEY), detect_ids(phrase * 50, KEY)
    assert many.tokens_scored <= once.tokens_scored + 1 and abs(many.z) < 4


def test_texts_shorter_than_the_minimum_are_too_short_to_decide():
    ids = [int(x) for x in np.random.default_rng(2).integers(0, 60, 80)]
    short = detect_ids(ids, KEY, min_tokens=81)
    assert short.watermarked is None and short.to_json()["verdict"] == "too short to decide"
    assert short.to_json()["min_tokens"] == 81 and short.tokens == 80
    assert detect_ids(ids, KEY, min_tokens=80).watermarked is False


def test_substitution_edits_exactly_the_share_of_each_block():
    ids = [i % 65 for i in range(100)]
    edited = substitute(ids, 0.2, 65, random.Random(0))
    changed = [a != b for a, b in zip(ids, edited, strict=True)]
    assert all(sum(changed[i:i + 10]) == 2 for i in range(0, 100, 10))
    assert all(0 <= v < 65 for v in edited)


def test_shortest_reliable_length_needs_every_longer_length_to_pass():
    row = lambda n, clean, edited, fpr: {"tokens": n, "tpr_clean": clean, "tpr_edited": edited, "fpr": fpr}  # noqa: E731
    table = [row(50, 0.99, 0.95, 0.0), row(100, 0.97, 0.95, 0.0), row(200, 1.0, 0.9, 0.01), row(400, 1.0, 1.0, 0.0)]
    assert shortest_reliable(table) == 200
    assert shortest_reliable(table[:2] + [row(200, 1.0, 0.89, 0.0)]) is None
    assert shortest_reliable([row(50, 1.0, 1.0, 0.02)]) is None


def test_calibration_is_written_atomically_read_back_and_matched_to_the_settings(char_generator, tmp_path: Path):
    config = WatermarkConfig(delta=4.0)
    calibration = calibrate(char_generator, KEY, config, samples=10, max_tokens=50)
    assert [row["tokens"] for row in calibration["table"]] == [25, 50]
    assert calibration["min_tokens"] in (25, 50, None) and calibration["scheme"] == SCHEME
    path = save_calibration(tmp_path, calibration)
    assert path == tmp_path / CALIBRATION_FILE and [p.name for p in tmp_path.iterdir()] == [CALIBRATION_FILE]
    loaded = load_calibration(tmp_path)
    assert loaded == json.loads(json.dumps(calibration))
    expected = calibration["min_tokens"] or 51  # never reached: longer than anything measured
    assert calibrated_min_tokens(loaded, WatermarkConfig()) == expected  # δ is the generator's, not the detector's
    assert calibrated_min_tokens(loaded, WatermarkConfig(gamma=0.5)) is None
    assert calibrated_min_tokens(loaded, WatermarkConfig(entropy_threshold=0.5)) is None
    assert load_calibration(tmp_path / "nowhere") is None
    with pytest.raises(LuoxiaError, match="at least 10 samples"):
        calibrate(char_generator, KEY, config, samples=5, max_tokens=50)


@pytest.mark.parametrize("content", ["{not json", '{"min_tokens": 3}', "[1, 2]"])
def test_a_corrupt_calibration_file_is_a_clear_error(tmp_path: Path, content: str):
    (tmp_path / CALIBRATION_FILE).write_text(content)
    with pytest.raises(LuoxiaError, match="calibrat"):
        load_calibration(tmp_path)
