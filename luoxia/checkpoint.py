"""Atomic checkpoints: safetensors weights, optimizer state, RNG state, step and data position.

A checkpoint is a directory ``checkpoints/step-0000100/`` holding ``model.safetensors``,
``optimizer.pt`` (tensors and plain values only, read back with ``weights_only=True``),
``state.json`` and ``manifest.json`` (size and sha256 of every file). It is written into a hidden
temporary directory, fsynced, then renamed into place, and ``latest.json`` is replaced the same way:
a run killed at any instant leaves the previous checkpoint intact. Loading verifies the manifest
first, so a truncated or edited file gives a `CheckpointError` instead of a crash inside torch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from luoxia.errors import CheckpointError

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest.json"


def fsync_path(path: Path) -> None:
    """Flush a file's or directory's data to disk (directories: their entries, i.e. renames)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; on success it replaces ``target`` in one
    rename (a previous ``target`` is removed only after the new one is complete)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                fsync_path(file)
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        fsync_path(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def encode_rng(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def decode_rng(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def encode_tensor(tensor: torch.Tensor) -> dict[str, Any]:
    """A tensor as JSON (dtype, shape, base64 bytes): checkpoint state that must come back bit for bit."""
    data = tensor.detach().cpu().contiguous()
    return {"dtype": str(data.dtype).removeprefix("torch."), "shape": list(data.shape),
            "data": base64.b64encode(data.view(torch.uint8).numpy().tobytes()).decode("ascii")}


def decode_tensor(encoded: dict[str, Any], device: torch.device | str = "cpu") -> torch.Tensor:
    raw = torch.frombuffer(bytearray(base64.b64decode(encoded["data"])), dtype=torch.uint8)
    return raw.view(getattr(torch, encoded["dtype"])).reshape(encoded["shape"]).to(device)


def capture_rng() -> dict[str, Any]:
    """This process's torch RNG states (CPU and every CUDA device), JSON-ready."""
    states = {"cpu": encode_rng(torch.get_rng_state())}
    if torch.cuda.is_available():
        states["cuda"] = [encode_rng(s) for s in torch.cuda.get_rng_state_all()]
    return states


def restore_rng(states: dict[str, Any]) -> None:
    torch.set_rng_state(decode_rng(states["cpu"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([decode_rng(s) for s in states["cuda"]])


def save_weights(model: nn.Module, path: Path) -> None:
    """Write a model's weights as safetensors atomically (tied weights are stored once)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_model(model, str(tmp))
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into ``model``; any mismatch or corruption is a `CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: corrupt or truncated weights ({str(error).splitlines()[0]})") from None
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit this model (missing: {sorted(missing)[:5]}, "
                              f"unexpected: {sorted(unexpected)[:5]})")


def save_checkpoint(root: Path, step: int, model: nn.Module, optimizer_state: dict[str, Any],
                    state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically, point ``latest.json`` at it, prune old ones."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / MODEL_FILE))
    torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2), encoding="utf-8")
    files = [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE]
    manifest = {f: {"bytes": (tmp / f).stat().st_size, "sha256": _sha256(tmp / f)} for f in files}
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    for file in [*files, MANIFEST_FILE]:
        fsync_path(tmp / file)
    final = root / name
    if final.exists():  # re-saving the same step (e.g. a signal right after a periodic save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_path(root)
    atomic_write_text(root / LATEST_FILE, json.dumps({"step": step, "dir": name}))
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    checkpoints = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in checkpoints[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # left behind by a run killed mid-save
        shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint ``latest.json`` names, or None if the run has none yet."""
    pointer = root / LATEST_FILE
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text(encoding="utf-8"))["dir"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CheckpointError(f"{pointer}: corrupt checkpoint pointer") from None
    path = root / name
    if not path.is_dir():
        raise CheckpointError(f"{pointer} names {name}, which does not exist")
    return path


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """Check every file against the manifest; return the parsed ``state.json``."""
    manifest_path = path / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: missing or corrupt {MANIFEST_FILE}; the checkpoint is incomplete") from None
    for file, expected in manifest.items():
        target = path / file
        if not target.is_file():
            raise CheckpointError(f"{target}: missing from checkpoint")
        if target.stat().st_size != expected["bytes"]:
            raise CheckpointError(f"{target}: truncated ({target.stat().st_size} of {expected['bytes']} bytes)")
        if _sha256(target) != expected["sha256"]:
            raise CheckpointError(f"{target}: corrupt (sha256 does not match the manifest)")
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def load_checkpoint(path: Path, model: nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify and load a checkpoint into ``model``; return (trainer state, optimizer state)."""
    state = verify_checkpoint(path)
    load_weights(model, path / MODEL_FILE)
    try:
        optimizer_state = torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types; the manifest passed, so say so
        raise CheckpointError(f"{path / OPTIMIZER_FILE}: cannot be read safely ({error})") from None
    return state, optimizer_state
