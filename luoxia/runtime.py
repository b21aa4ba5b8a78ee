"""Device, precision, seeding and process-group set-up, resolved once at the edge of a run."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from luoxia.errors import ConfigError

DeviceName = Literal["auto", "cpu", "cuda", "mps"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an explicit choice must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was asked for but CUDA is not available on this machine")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for but Apple's MPS backend is not available")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ConfigError(f"unknown device '{name}'; valid: auto, cpu, cuda, cuda:N, mps")
    return torch.device(name)


def resolve_precision(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The autocast dtype for training. Mixed precision runs on CUDA only: on CPUs without
    AVX-512 bf16/fp16 matmuls are about 100x slower than fp32, so ``auto`` means fp32 there."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if precision not in _DTYPES:
        raise ConfigError(f"unknown precision '{precision}'; valid: auto, {', '.join(_DTYPES)}")
    if precision != "fp32" and device.type != "cuda":
        raise ConfigError(f"precision '{precision}' needs a CUDA device; this run is on {device.type}")
    return _DTYPES[precision]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast for reduced precision, a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(num_threads: int | None) -> None:
    """Limit torch's intra-op threads, e.g. when several processes share a small machine."""
    if num_threads:
        torch.set_num_threads(num_threads)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a (possibly one-process) job launched by ``torchrun``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment (NCCL on CUDA,
    gloo otherwise); a plain ``python``/``luoxia`` launch is a world of one."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
