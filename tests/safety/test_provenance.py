"""Signed provenance in PNG metadata: valid after saving, tampered after any edit, absent without."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import luoxia
from luoxia.errors import LuoxiaError
from luoxia.safety.image_mark import detect_image_watermark, embed_image_watermark
from luoxia.safety.provenance import (
    CHUNK_KEY,
    ProvenanceRecord,
    canonical_json,
    pixel_sha256,
    save_with_provenance,
    verify_provenance,
)

KEY = b"provenance test key"
FIELDS = dict(model="dcgan", run="runs/digits-dcgan", seed=7, parameters={"steps": 50, "temperature": 0.8})


def digit(size: int = 28) -> Image.Image:
    rng = np.random.default_rng(size)
    return Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L")


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, ProvenanceRecord]:
    path = tmp_path / "out" / "sample.png"
    record = save_with_provenance(digit(), path, key=KEY, **FIELDS)
    return path, record


def payload(path: Path) -> dict:
    with Image.open(path) as image:
        return json.loads(image.text[CHUNK_KEY])


def rewrite(path: Path, image: Image.Image, text: str | None) -> None:
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_itxt(CHUNK_KEY, text)
    image.save(path, format="PNG", pnginfo=info)


def test_save_then_verify_is_valid(signed):
    path, record = signed
    assert [p.name for p in path.parent.iterdir()] == ["sample.png"]  # no temp file left behind
    assert record.generator == f"luoxia {luoxia.__version__}"
    assert len(record.key_id) == 8 and record.seed == 7
    assert record.created.endswith("Z") and datetime.fromisoformat(record.created.replace("Z", "+00:00"))
    check = verify_provenance(path, KEY)
    assert check.status == "valid" and check.valid
    assert check.record == record.to_json()
    with Image.open(path) as image:
        assert verify_provenance(image, KEY).status == "valid"
    stored = payload(path)
    assert stored["record"]["parameters"] == {"steps": 50, "temperature": 0.8}


def test_signature_is_hmac_of_canonical_record(signed):
    import hashlib
    import hmac

    path, record = signed
    stored = payload(path)
    body = canonical_json(stored["record"])
    assert body.startswith(b'{"created":"') and b", " not in body and b'": ' not in body
    assert stored["signature"] == hmac.new(KEY, body, hashlib.sha256).hexdigest()


def test_one_edited_pixel_is_tampered(signed):
    path, _ = signed
    text = payload(path)
    with Image.open(path) as image:
        pixels = np.array(image)
    pixels[3, 4] ^= 1
    rewrite(path, Image.fromarray(pixels, "L"), json.dumps(text))
    check = verify_provenance(path, KEY)
    assert check.status == "tampered" and "pixel" in check.reason


def test_edited_metadata_field_is_tampered(signed):
    path, _ = signed
    stored = payload(path)
    stored["record"]["seed"] = 8  # same pixels, old signature
    with Image.open(path) as image:
        rewrite(path, image.copy(), json.dumps(stored))
    check = verify_provenance(path, KEY)
    assert check.status == "tampered"
    assert check.reason == "metadata field 'seed' changed since signing"


def test_edited_pixel_hash_with_edited_pixels_is_tampered(signed):
    path, _ = signed
    stored = payload(path)
    edited = Image.new("L", (28, 28), 0)
    stored["record"]["pixel_sha256"] = pixel_sha256(edited)
    rewrite(path, edited, json.dumps(stored))
    check = verify_provenance(path, KEY)
    assert check.status == "tampered" and "'pixel_sha256'" in check.reason


@pytest.mark.parametrize(
    "text, reason",
    [("{not json", "not valid JSON"), ("[1, 2]", "malformed"), ('{"record": {"model": "x"}}', "format")],
)
def test_unparsable_record_is_tampered(signed, text, reason):
    path, _ = signed
    with Image.open(path) as image:
        rewrite(path, image.copy(), text)
    check = verify_provenance(path, KEY)
    assert check.status == "tampered" and reason in check.reason


def test_missing_field_is_tampered(signed):
    path, _ = signed
    stored = payload(path)
    del stored["record"]["seed"]
    with Image.open(path) as image:
        rewrite(path, image.copy(), json.dumps(stored))
    check = verify_provenance(path, KEY)
    assert check.status == "tampered" and "seed" in check.reason


def test_no_metadata_is_absent(tmp_path):
    path = tmp_path / "plain.png"
    digit().save(path)
    check = verify_provenance(path, KEY)
    assert check.status == "absent" and check.record is None
    assert verify_provenance(digit(), KEY).status == "absent"


def test_wrong_key_is_tampered_and_says_the_key_differs(signed):
    path, record = signed
    check = verify_provenance(path, b"not the signing key")
    assert check.status == "tampered"
    assert "key" in check.reason and record.key_id in check.reason


def test_missing_and_non_image_files_error(tmp_path):
    with pytest.raises(LuoxiaError, match="nope.png"):
        verify_provenance(tmp_path / "nope.png", KEY)
    text = tmp_path / "notes.png"
    text.write_text("not an image", encoding="utf-8")
    with pytest.raises(LuoxiaError, match="not an image"):
        verify_provenance(text, KEY)


def test_bad_inputs_to_save_error(tmp_path):
    with pytest.raises(LuoxiaError, match="non-empty bytes"):
        save_with_provenance(digit(), tmp_path / "a.png", key=b"", **FIELDS)
    with pytest.raises(LuoxiaError, match=r"\.png"):
        save_with_provenance(digit(), tmp_path / "a.jpg", key=KEY, **FIELDS)
    with pytest.raises(LuoxiaError, match="JSON"):
        save_with_provenance(digit(), tmp_path / "a.png", key=KEY, **{**FIELDS, "parameters": {"x": object()}})
    assert not list(tmp_path.iterdir())


def test_numpy_parameters_and_fixed_time_are_recorded(tmp_path):
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    record = save_with_provenance(
        digit(), tmp_path / "a.png", key=KEY, created=when, **{**FIELDS, "parameters": {"eta": np.float32(0.5)}}
    )
    assert record.created == "2024-05-01T12:00:00Z" and record.parameters == {"eta": 0.5}
    assert verify_provenance(tmp_path / "a.png", KEY).valid


def test_watermark_then_sign_verifies_and_detects(tmp_path):
    """The guard's order: watermark the generated digit, then sign provenance for the marked image."""
    marked = embed_image_watermark(digit(), KEY)
    path = tmp_path / "guarded.png"
    save_with_provenance(marked, path, key=KEY, **FIELDS)
    assert verify_provenance(path, KEY).status == "valid"
    with Image.open(path) as image:
        assert detect_image_watermark(image, KEY).watermarked
