"""Token ids on disk: a flat memory-mapped binary file per split plus ``meta.json``.

Training reads windows straight from the memory map, so the corpus never has to fit in RAM. Which
windows a step reads is a pure function of (seed, step, micro-step), so a resumed run reads exactly
what an uninterrupted one would, and each DDP rank takes its own rows of the same global batch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from luoxia.errors import DataError

META_FILE = "meta.json"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, fsync, then rename: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_tokens(path: Path, ids: np.ndarray, vocab_size: int) -> None:
    atomic_write_bytes(path, np.ascontiguousarray(ids, dtype=token_dtype(vocab_size)).tobytes())


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    atomic_write_bytes(directory / META_FILE, json.dumps(meta, indent=2, ensure_ascii=False).encode("utf-8"))


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; run `luoxia prepare` first or point at a prepared data directory")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: corrupt metadata ({error.msg})") from None


def open_tokens(directory: str | Path, split: str) -> np.memmap:
    """Memory-map ``{split}.bin`` of a prepared data directory."""
    directory = Path(directory)
    meta = read_meta(directory)
    path = directory / f"{split}.bin"
    if not path.is_file():
        raise DataError(f"{path}: token file missing from prepared data")
    dtype = np.dtype(meta["dtype"])
    expected = meta["counts"][f"{split}_tokens"] * dtype.itemsize
    if path.stat().st_size != expected:
        raise DataError(f"{path}: has {path.stat().st_size} bytes, meta.json says {expected}: re-run `luoxia prepare`")
    return np.memmap(path, dtype=dtype, mode="r")


class WindowSampler:
    """Random (input, target) windows of ``block_size`` tokens from one token file.

    ``batch(step, micro)`` draws the global batch of that step (``batch_size × world_size`` rows)
    from a generator seeded by ``(seed, step, micro)``; this rank returns its own rows.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if len(tokens) <= block_size + 1:
            raise DataError(f"only {len(tokens)} tokens: too few for windows of block_size={block_size}; "
                            "use more data or a smaller block_size")
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self._offsets = np.arange(block_size + 1)

    def windows(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.from_numpy(self.tokens[starts[:, None] + self._offsets].astype(np.int64))
        return rows[:, :-1], rows[:, 1:]  # (B, T) inputs and the same shifted by one

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step, micro])
        starts = rng.integers(0, len(self.tokens) - self.block_size - 1, self.batch_size * self.world_size)
        mine = starts[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return self.windows(mine)

    def sequential(self, batch_size: int,
                   max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping windows that cover the file in order (full-data evaluation)."""
        starts = np.arange(0, len(self.tokens) - self.block_size - 1, self.block_size)
        for count, first in enumerate(range(0, len(starts), batch_size)):
            if max_batches is not None and count >= max_batches:
                return
            yield self.windows(starts[first : first + batch_size])


class StreamSampler:
    """Consecutive windows of ``batch_size × world_size`` contiguous streams through one token file,
    for truncated back-propagation through time that carries a recurrent state across windows.

    The file is cut into one stream per global row; window ``index`` (``step × grad_accum + micro``)
    of every stream follows window ``index − 1`` directly. When the streams run out an epoch ends and
    they restart from a start shifted by a seeded offset below ``block_size`` (so window boundaries
    move between epochs); `fresh` says which windows begin an epoch (the state must start from zero).
    A pure function of (seed, index, rank), like `WindowSampler`.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        streams = batch_size * world_size
        self.stream_len = len(tokens) // streams
        self.per_epoch = (self.stream_len - block_size) // block_size  # windows per stream and epoch
        if self.per_epoch < 1:
            raise DataError(f"only {len(tokens)} tokens: too few for {streams} streams of at least "
                            f"{2 * block_size} tokens (block_size={block_size}); use more data, a smaller "
                            "batch_size or block_size, or train.stateful=false")
        self.windows = WindowSampler(tokens, block_size, batch_size, seed, rank, world_size)
        self.block_size, self.seed = block_size, seed
        self.rows = np.arange(rank * batch_size, (rank + 1) * batch_size) * self.stream_len  # this rank's streams

    def fresh(self, index: int) -> bool:
        """Whether window ``index`` starts an epoch (every stream from its start, a zero state)."""
        return index % self.per_epoch == 0

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, position = divmod(index, self.per_epoch)
        shift = int(np.random.default_rng([self.seed, epoch]).integers(0, self.block_size))
        return self.windows.windows(self.rows + shift + position * self.block_size)  # (B, T) each
