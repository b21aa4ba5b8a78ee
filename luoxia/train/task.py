"""`GradientTask`: what every gradient-trained model family shares under the loop — gradient
accumulation, DDP without redundant all-reduces, mixed precision, clipping and the optimizer step.

A family subclasses it and says how to fetch a micro-batch and turn it into a loss.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.optim import Optimizer

from luoxia.runtime import DistributedContext, autocast, resolve_precision
from luoxia.train.loop import TrainConfig

Batch = tuple[torch.Tensor, ...]


class GradientTask:
    """Base of the `Task`s in `luoxia.train`; subclasses set ``model`` and ``optimizers`` and call
    `setup_training` once both exist."""

    model: nn.Module
    optimizers: dict[str, Optimizer]

    def __init__(self, cfg: TrainConfig, ctx: DistributedContext, device: torch.device):
        self.cfg, self.ctx, self.device = cfg, ctx, device
        self.dtype = resolve_precision(device, cfg.precision)
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None

    # What a family provides -------------------------------------------------------------------
    def micro_batch(self, step: int, micro: int) -> Batch:
        """The training micro-batch ``micro`` of optimizer step ``step`` (a pure function of both)."""
        raise NotImplementedError

    def compute_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean loss of ``batch`` under ``model`` (the wrapped one in training, the bare one in eval)."""
        raise NotImplementedError

    def step_counts(self) -> dict[str, float]:
        """What one optimizer step processed, e.g. ``{"tokens": …}`` or ``{"samples": …}``."""
        raise NotImplementedError

    def before_zero_grad(self, step: int) -> None:
        """Hook between the optimizer step and clearing the gradients (AdaLoRA's budget update)."""

    # Shared machinery -------------------------------------------------------------------------
    def setup_training(self, compile_model: bool = False) -> None:
        wrapped = torch.compile(self.model) if compile_model else self.model
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DistributedDataParallel(wrapped, device_ids=device_ids)
        self.forward_model = wrapped

    def to_device(self, batch: Batch) -> Batch:
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def mean_across_ranks(self, value: torch.Tensor) -> float:
        if self.ctx.enabled:
            import torch.distributed as dist

            dist.all_reduce(value, op=dist.ReduceOp.AVG)
        return value.item()

    def train_step(self, step: int) -> dict[str, float]:
        accum = self.cfg.grad_accum
        total = torch.zeros((), device=self.device)
        for micro in range(accum):
            batch = self.to_device(self.micro_batch(step, micro))
            # DDP all-reduces gradients on every backward; skip it until the last micro-step.
            last = micro == accum - 1
            sync = contextlib.nullcontext() if last or not self.ctx.enabled else self.forward_model.no_sync()
            with sync, autocast(self.device, self.dtype):
                loss = self.compute_loss(self.forward_model, batch)
            # Each loss is a mean; dividing by the micro-steps makes the accumulated gradient that
            # of the mean over the whole batch.
            scaled = loss / accum
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            total += loss.detach()
        self._optimizer_step(step)
        return {"loss": self.mean_across_ranks(total / accum), **self.step_counts()}

    def _optimizer_step(self, step: int) -> None:
        if self.scaler:
            for optimizer in self.optimizers.values():
                self.scaler.unscale_(optimizer)
        if self.cfg.grad_clip:
            params = [p for p in self.model.parameters() if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        for optimizer in self.optimizers.values():
            if self.scaler:
                self.scaler.step(optimizer)
            else:
                optimizer.step()
        if self.scaler:
            self.scaler.update()
        self.before_zero_grad(step)
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def mean_eval_loss(self, batches: list[Batch]) -> float:
        """Mean loss over fixed validation batches, averaged across ranks."""
        self.model.eval()
        losses = torch.zeros(len(batches), device=self.device)
        for i, batch in enumerate(batches):
            with autocast(self.device, self.dtype):
                losses[i] = self.compute_loss(self.model, self.to_device(batch))
        self.model.train()
        return self.mean_across_ranks(losses.mean())

    def extra_state(self) -> dict[str, Any]:
        return {"grad_scaler": self.scaler.state_dict()} if self.scaler else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self.scaler and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])


class ExampleSampler:
    """Batches of examples in a seeded order that is reshuffled every epoch; a pure function of
    (seed, step, micro-step, rank), so a resumed run reads exactly what it would have read."""

    def __init__(self, size: int, batch_size: int, grad_accum: int, seed: int, rank: int = 0, world_size: int = 1):
        self.size, self.batch_size, self.grad_accum = size, batch_size, grad_accum
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.size)}
        return self._orders[epoch]

    def indices(self, step: int, micro: int) -> list[int]:
        start = ((step * self.grad_accum + micro) * self.world_size + self.rank) * self.batch_size
        return [int(self._order(k // self.size)[k % self.size]) for k in range(start, start + self.batch_size)]
