"""What every gradient-trained task shares under the loop, as functions a task composes: the
gradient step (micro-batches → loss / accumulation steps → backward → clip → step → zero_grad,
with DDP's all-reduce only on the last micro-step and the CUDA float16 loss scaler), mixed
precision, wrapping the model for DDP/compile, evaluation losses and a seeded example order.

A task is a small object (`luoxia.train.loop.Task`) that holds a `Learner` and says how to fetch a
micro-batch and turn it into a loss; there is no base class to inherit from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from pydantic import Field
from torch.optim import Optimizer

from luoxia.config import Config
from luoxia.runtime import DistributedContext, Precision, autocast, resolve_precision

Batch = tuple[torch.Tensor, ...]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]  # (model, batch) → mean loss (a 0-d tensor)


class CompileConfig(Config):
    """``torch.compile``, for tasks whose forward pass runs through one wrapped module."""

    compile: bool = Field(False, description="torch.compile the model")


@dataclass
class Amp:
    """Mixed precision of a run: the autocast dtype and, for float16, the loss scaler."""

    device: torch.device
    dtype: torch.dtype
    scaler: torch.amp.GradScaler | None

    @classmethod
    def resolve(cls, device: torch.device, precision: Precision) -> Amp:
        dtype = resolve_precision(device, precision)
        # float16 gradients underflow without scaling; bfloat16 and float32 need none.
        scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        return cls(device, dtype, scaler)

    def state(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume the scaler exactly."""
        return {"grad_scaler": self.scaler.state_dict()} if self.scaler else {}

    def load_state(self, state: dict[str, Any]) -> None:
        if self.scaler and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])


@dataclass
class Learner:
    """A model under training: the bare module (saved), the module the forward pass runs through
    (compiled and/or DDP-wrapped), its optimizers, mixed precision and the process group."""

    model: nn.Module
    forward_model: nn.Module
    optimizers: dict[str, Optimizer]
    amp: Amp
    ctx: DistributedContext

    @property
    def device(self) -> torch.device:
        return self.amp.device


def wrap_model(model: nn.Module, ctx: DistributedContext, device: torch.device, compile_model: bool = False
               ) -> nn.Module:
    """The module to run forward passes through: compiled if asked, DDP-wrapped under torchrun."""
    wrapped = torch.compile(model) if compile_model else model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(wrapped, device_ids=device_ids)
    return wrapped


def to_device(batch: Batch, device: torch.device) -> Batch:
    return tuple(t.to(device, non_blocking=True) for t in batch)


def mean_across_ranks(value: torch.Tensor, ctx: DistributedContext) -> float:
    """``value`` averaged over every rank (itself when not distributed), as a Python float."""
    if ctx.enabled:
        import torch.distributed as dist

        dist.all_reduce(value, op=dist.ReduceOp.AVG)
    return value.item()


def trainable(model: nn.Module, optimizers: Iterable[Optimizer]) -> list[nn.Parameter]:
    """The parameters ``optimizers`` own, in the model's order (the clipping norm sums in that order)."""
    owned = {id(p) for optimizer in optimizers for group in optimizer.param_groups for p in group["params"]}
    return [p for p in model.parameters() if id(p) in owned]


def gradient_step(learner: Learner, micro_batch: Callable[[int], Batch], loss_fn: LossFn, accum: int,
                  grad_clip: float | None, optimizers: Sequence[Optimizer] | None = None,
                  after_backward: Callable[[], None] | None = None, before_zero_grad: Callable[[], None] | None = None,
                  update_scaler: bool = True) -> torch.Tensor:
    """One optimizer step over ``accum`` micro-batches; returns the mean loss (detached, this rank's).

    ``optimizers`` defaults to all of the learner's; ``after_backward`` runs once the gradients are
    complete (a GAN averages them across ranks by hand there); ``before_zero_grad`` sees the
    stepped weights and their gradients (AdaLoRA's budget, diffusion's EMA). Every gradient of the
    model is cleared after, since a loss may reach parameters these optimizers do not own.
    ``update_scaler=False`` leaves the float16 scaler's update to the caller (once per step when
    several calls share it, as torch.amp asks).
    """
    optimizers = list(learner.optimizers.values()) if optimizers is None else list(optimizers)
    amp, wrapped = learner.amp, learner.forward_model
    total = torch.zeros((), device=amp.device)
    for micro in range(accum):
        batch = to_device(micro_batch(micro), amp.device)
        # DDP all-reduces gradients on every backward; skip it until the last micro-step.
        last = micro == accum - 1
        sync = contextlib.nullcontext() if last or not learner.ctx.enabled else wrapped.no_sync()
        with sync, autocast(amp.device, amp.dtype):
            loss = loss_fn(wrapped, batch)
        # Each loss is a mean; dividing by the micro-steps makes the accumulated gradient that of
        # the mean over the whole batch.
        scaled = loss / accum
        (amp.scaler.scale(scaled) if amp.scaler else scaled).backward()
        total += loss.detach()
    if after_backward:
        after_backward()
    if amp.scaler:
        for optimizer in optimizers:
            amp.scaler.unscale_(optimizer)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(trainable(learner.model, optimizers), grad_clip)
    for optimizer in optimizers:
        if amp.scaler:
            amp.scaler.step(optimizer)
        else:
            optimizer.step()
    if amp.scaler and update_scaler:
        amp.scaler.update()
    if before_zero_grad:
        before_zero_grad()
    learner.model.zero_grad(set_to_none=True)
    return total / accum


@torch.no_grad()
def mean_eval_loss(learner: Learner, batches: list[Batch], loss_fn: LossFn) -> float:
    """Mean loss of the bare model over fixed validation batches, averaged across ranks."""
    model, amp = learner.model, learner.amp
    model.eval()
    losses = torch.zeros(len(batches), device=amp.device)
    for i, batch in enumerate(batches):
        with autocast(amp.device, amp.dtype):
            losses[i] = loss_fn(model, to_device(batch, amp.device))
    model.train()
    return mean_across_ranks(losses.mean(), learner.ctx)


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
