"""Signed provenance records in PNG metadata: who made an image, how, and whether it changed since.

`save_with_provenance` writes a PNG whose ``luoxia:provenance`` iTXt chunk holds

    {"format": "luoxia-provenance/1", "record": {...}, "signature": "<hex>", "fields": {...}}

``record`` names the model, run, seed, parameters, time, generator and key (``key_id``, the first 8 hex
digits of SHA-256 of the key, never the key), plus ``pixel_sha256``: SHA-256 of the pixel bytes, mode
and size, so any pixel edit is caught. ``signature`` is HMAC-SHA256(key, canonical JSON of the
record) with sorted keys and no spaces; it alone decides validity. ``fields`` holds one HMAC per record
field, used only to say *which* field changed when the signature fails.

`verify_provenance` answers "valid", "absent" (no record) or "tampered", with a one-line reason.
An HMAC is symmetric: whoever can verify can also sign, so this proves an image came from a holder of
the key, not from a particular party, and it does not survive re-encoding (a JPEG copy is "absent").
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from PIL import Image, PngImagePlugin, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, ValidationError

from luoxia import __version__
from luoxia.errors import LuoxiaError

CHUNK_KEY = "luoxia:provenance"
FORMAT = "luoxia-provenance/1"
# Modes whose pixel bytes a PNG stores and gives back unchanged (a palette image's bytes are indices
# and would not cover its palette, so "P" is refused).
SIGNABLE_MODES = ("1", "L", "LA", "RGB", "RGBA")


class ProvenanceRecord(BaseModel):
    """The signed facts about one generated image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    run: str
    seed: int | None
    parameters: dict[str, Any]
    created: str
    generator: str
    key_id: str
    pixel_sha256: str

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class ProvenanceCheck:
    """The verdict on one image: ``valid``, ``tampered`` or ``absent``, why, and the record (as
    found in the file, so it may be untrustworthy unless ``status == "valid"``)."""

    status: Literal["valid", "tampered", "absent"]
    reason: str
    record: dict | None

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "record": self.record}


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, ASCII, no NaN: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode(
        "ascii"
    )


def key_id(key: bytes) -> str:
    return hashlib.sha256(_check_key(key)).hexdigest()[:8]


def pixel_sha256(image: Image.Image) -> str:
    """SHA-256 of the image's mode, size and raw pixel bytes."""
    header = f"{image.mode}:{image.width}x{image.height}:".encode("ascii")
    return hashlib.sha256(header + image.tobytes()).hexdigest()


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise LuoxiaError("the provenance signing key must be non-empty bytes")
    return bytes(key)


def _generator() -> str:
    return f"luoxia {__version__}"


def _json_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` as plain JSON values (what will be signed and read back); numpy scalars and
    paths are converted, anything else that JSON cannot hold is an error."""

    def convert(value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
            return value.item()
        raise TypeError(f"{type(value).__name__} is not JSON")

    try:
        return json.loads(json.dumps(dict(parameters), default=convert, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise LuoxiaError(f"provenance parameters must be JSON values: {error}") from None


def _sign(record: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical_json(record), hashlib.sha256).hexdigest()


def _field_mac(name: str, value: Any, key: bytes) -> str:
    return hmac.new(key, b"field\0" + name.encode("utf-8") + b"\0" + canonical_json(value), hashlib.sha256).hexdigest()


def save_with_provenance(
    image: Image.Image,
    path: str | os.PathLike,
    *,
    model: str,
    run: str,
    seed: int | None,
    parameters: dict[str, Any],
    key: bytes,
    created: datetime | None = None,
) -> ProvenanceRecord:
    """Write ``image`` to ``path`` as a PNG carrying a signed provenance record, atomically (a temp
    file in the same directory, then ``os.replace``), and return the record."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise LuoxiaError(f"provenance is stored in PNG metadata; {path} must end in .png")
    record, info = sign_image(image, model=model, run=run, seed=seed, parameters=parameters, key=key,
                              created=created)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        image.save(tmp, format="PNG", pnginfo=info)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return record


def png_with_provenance(image: Image.Image, **fields: Any) -> bytes:
    """The PNG bytes of ``image`` carrying a signed provenance record (``fields`` as for
    `save_with_provenance`): what the server returns as ``b64_json``."""
    _, info = sign_image(image, **fields)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def sign_image(image: Image.Image, *, model: str, run: str, seed: int | None, parameters: dict[str, Any],
               key: bytes, created: datetime | None = None) -> tuple[ProvenanceRecord, PngImagePlugin.PngInfo]:
    """The provenance record of ``image`` and the PNG metadata chunk that carries it, signed."""
    key = _check_key(key)
    if image.mode not in SIGNABLE_MODES:
        raise LuoxiaError(
            f"cannot sign a mode {image.mode!r} image; convert it to one of {', '.join(SIGNABLE_MODES)} first"
        )
    moment = (created or datetime.now(UTC)).astimezone(UTC)
    record = ProvenanceRecord(
        model=str(model),
        run=str(run),
        seed=None if seed is None else int(seed),
        parameters=_json_parameters(parameters),
        created=moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
        generator=_generator(),
        key_id=key_id(key),
        pixel_sha256=pixel_sha256(image),
    )
    fields = record.to_json()
    payload = {
        "format": FORMAT,
        "record": fields,
        "signature": _sign(fields, key),
        "fields": {name: _field_mac(name, value, key) for name, value in fields.items()},
    }
    info = PngImagePlugin.PngInfo()
    info.add_itxt(CHUNK_KEY, canonical_json(payload).decode("ascii"))
    return record, info


def _open(path: str | os.PathLike) -> Image.Image:
    path = Path(path)
    if not path.exists():
        raise LuoxiaError(f"no such image file: {path}")
    if not path.is_file():
        raise LuoxiaError(f"not a file: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # text chunks after the pixel data appear only once the image is read
            copy = image.copy()
            copy.info.update(getattr(image, "text", {}))
            return copy
    except UnidentifiedImageError:
        raise LuoxiaError(f"not an image file: {path}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise LuoxiaError(f"cannot read image {path}: {error}") from None


def _diagnose(payload: dict, record: dict, key: bytes) -> str:
    """Why a signature fails, as specifically as the per-field MACs allow."""
    found_id = record.get("key_id")
    if isinstance(found_id, str) and found_id != key_id(key):
        return f"signature does not match this key: signed with key {found_id}, this key is {key_id(key)}"
    macs = payload.get("fields")
    if isinstance(macs, dict):
        added = sorted(set(record) - set(macs))
        removed = sorted(set(macs) - set(record))
        if added:
            return f"metadata field {added[0]!r} added since signing"
        if removed:
            return f"metadata field {removed[0]!r} removed since signing"
        changed = [
            name
            for name, value in sorted(record.items())
            if not (isinstance(macs[name], str) and hmac.compare_digest(macs[name], _field_mac(name, value, key)))
        ]
        if changed:
            return f"metadata field {changed[0]!r} changed since signing"
    return "signature does not match the record"


def verify_provenance(source: str | os.PathLike | Image.Image, key: bytes) -> ProvenanceCheck:
    """Check the provenance record of a PNG file (or an image opened from one) against ``key``."""
    key = _check_key(key)
    image = source if isinstance(source, Image.Image) else _open(source)
    text = image.info.get(CHUNK_KEY)
    if text is None:
        return ProvenanceCheck("absent", f"no {CHUNK_KEY} record in the image metadata", None)

    try:
        payload = json.loads(text)
    except (TypeError, ValueError):
        return ProvenanceCheck("tampered", "provenance record is not valid JSON", None)
    if not isinstance(payload, dict) or not isinstance(payload.get("record"), dict):
        return ProvenanceCheck("tampered", "provenance record is malformed: no 'record' object", None)
    record = payload["record"]
    if payload.get("format") != FORMAT:
        return ProvenanceCheck("tampered", f"unknown provenance format {payload.get('format')!r}", record)
    try:
        ProvenanceRecord.model_validate(record)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        return ProvenanceCheck("tampered", f"provenance record is malformed: {where}: {first['msg']}", record)

    signature = payload.get("signature")
    try:
        expected = _sign(record, key)
    except ValueError:  # NaN or the like cannot have been signed
        return ProvenanceCheck("tampered", "provenance record holds values that were never signed", record)
    if not (isinstance(signature, str) and hmac.compare_digest(signature, expected)):
        return ProvenanceCheck("tampered", _diagnose(payload, record, key), record)
    if record["pixel_sha256"] != pixel_sha256(image):
        return ProvenanceCheck("tampered", "pixels changed since signing", record)
    return ProvenanceCheck("valid", f"signed by key {record['key_id']}; pixels and metadata unchanged", record)
