"""Invisible image watermark: keyed payload, embed → detect, and the detector's failure modes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from luoxia.errors import LuoxiaError
from luoxia.safety.image_mark import (
    detect_image_watermark,
    embed_image_watermark,
    prepare_for_watermark,
    watermark_bits,
)

KEY = b"test image key"


@pytest.fixture(scope="module")
def digit() -> Image.Image:
    """A 28×28 greyscale digit, like the ones Luoxia's image generators produce."""
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[3] / 16 * 255).astype(np.uint8)
    return Image.fromarray(pixels, "L").resize((28, 28), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def marked(digit) -> Image.Image:
    return embed_image_watermark(digit, KEY)


def test_watermark_bits_are_keyed_and_deterministic():
    bits = watermark_bits(KEY)
    assert len(bits) == 48 and set(bits) <= {0, 1}
    assert bits == watermark_bits(KEY)
    assert bits != watermark_bits(b"another key")
    assert watermark_bits(KEY, 16) == bits[:16]


def test_prepare_upscales_small_greyscale_to_rgb(digit):
    prepared = prepare_for_watermark(digit)
    assert prepared.mode == "RGB" and prepared.size == (256, 256)
    wide = prepare_for_watermark(Image.new("L", (32, 16)))
    assert wide.size == (512, 256)
    big = Image.new("RGB", (300, 260))
    assert prepare_for_watermark(big).size == (300, 260)


def test_embed_then_detect_with_the_right_key(digit, marked):
    assert marked.mode == "RGB" and min(marked.size) >= 256
    result = detect_image_watermark(marked, KEY)
    assert result.watermarked
    assert result.bits_total == 48 and result.bits_matched >= 46
    assert result.p_value < 1e-6
    assert result.to_json() == {
        "bits_matched": result.bits_matched,
        "bits_total": 48,
        "p_value": result.p_value,
        "watermarked": True,
    }
    # the mark is invisible: a small change of the upscaled digit
    diff = np.abs(np.asarray(marked, dtype=int) - np.asarray(prepare_for_watermark(digit), dtype=int))
    assert diff.mean() < 5


def test_unmarked_image_and_wrong_key_are_negative(digit, marked):
    plain = detect_image_watermark(prepare_for_watermark(digit), KEY)
    assert not plain.watermarked and plain.p_value > 1e-3
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    assert not detect_image_watermark(noise, KEY).watermarked
    wrong = detect_image_watermark(marked, b"some other key")
    assert not wrong.watermarked and wrong.p_value > 1e-3


def test_threshold_is_a_parameter(marked):
    result = detect_image_watermark(marked, KEY, threshold=0.0)
    assert not result.watermarked  # nothing is below zero


def test_survives_png_save_and_reload(marked, tmp_path):
    path = tmp_path / "marked.png"
    marked.save(path)
    with Image.open(path) as reloaded:
        assert detect_image_watermark(reloaded, KEY).watermarked


def test_greyscale_conversion_destroys_the_mark(marked):
    grey = marked.convert("L")
    assert not detect_image_watermark(grey, KEY).watermarked


def test_black_and_white_16px_images_keep_the_mark():
    rng = np.random.default_rng(1)
    for _ in range(3):
        pixels = ((rng.random((16, 16)) > 0.5) * 255).astype(np.uint8)
        marked = embed_image_watermark(Image.fromarray(pixels, "L"), KEY)
        assert detect_image_watermark(marked, KEY).watermarked


def test_small_image_given_to_detector_errors(digit):
    with pytest.raises(LuoxiaError, match="256×256"):
        detect_image_watermark(digit, KEY)
    with pytest.raises(LuoxiaError, match="256×256"):
        detect_image_watermark(Image.new("RGB", (512, 200)), KEY)


@pytest.mark.parametrize("key", [b"", "a str key"])
def test_bad_key_errors(digit, marked, key):
    with pytest.raises(LuoxiaError, match="non-empty bytes"):
        embed_image_watermark(digit, key)
    with pytest.raises(LuoxiaError, match="non-empty bytes"):
        detect_image_watermark(marked, key)
