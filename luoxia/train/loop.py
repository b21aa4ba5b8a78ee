"""The training loop every model family shares.

A family supplies a `Task`: its model, its optimizers, what one optimisation step does, and how to
evaluate. The loop owns everything around that: learning-rate schedule, periodic evaluation, early
stopping, TensorBoard/JSONL/progress logging, atomic checkpoints (also on SIGINT/SIGTERM) and exact
resume — the same seed and config give the same loss curve whether or not the run was killed.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn
from pydantic import Field
from torch.optim import Optimizer

from luoxia.checkpoint import (LATEST_FILE, atomic_write_text, capture_rng, latest_checkpoint, load_checkpoint,
                               restore_rng, save_checkpoint, save_weights)
from luoxia.config import Config
from luoxia.errors import LuoxiaError
from luoxia.runs import CHECKPOINT_DIR, SUMMARY_FILE, WEIGHTS_FILE
from luoxia.runtime import DistributedContext, Precision
from luoxia.train.logging import RunLogger, truncate_metrics
from luoxia.train.optim import OptimizerName
from luoxia.train.schedule import Schedule, lr_multiplier



class TrainConfig(Config):
    """Optimisation, evaluation, logging and checkpointing: the knobs of the shared loop."""

    max_steps: int = Field(1000, gt=0, description="optimizer steps to run")
    batch_size: int = Field(32, gt=0, description="sequences (or images) per process per micro-step")
    grad_accum: int = Field(1, gt=0, description="micro-steps accumulated into one optimizer step")
    optimizer: OptimizerName = Field("adamw", description="adamw, or muon for hidden matrices + adamw for the rest")
    lr: float = Field(1e-3, gt=0, description="peak AdamW learning rate")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final learning rate as a share of the peak")
    warmup_steps: int = Field(100, ge=0, description="linear warm-up steps")
    schedule: Schedule = Field("cosine", description="decay after warm-up: cosine, linear or constant")
    decay_start: float = Field(0.0, ge=0, lt=1, description="share of the run held at peak before decaying")
    weight_decay: float = Field(0.1, ge=0, description="decoupled weight decay on matrices")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW beta2")
    grad_clip: float | None = Field(1.0, description="clip the global gradient norm to this (null: off)")
    muon_lr: float = Field(0.02, gt=0, description="Muon learning rate (optimizer=muon)")
    muon_momentum: float = Field(0.95, ge=0, lt=1, description="Muon momentum")
    eval_interval: int = Field(100, gt=0, description="evaluate every N steps (and at the end)")
    eval_batches: int = Field(20, gt=0, description="fixed validation batches per evaluation")
    eval_batch_size: int | None = Field(None, description="rows per validation batch (default: batch_size)")
    log_interval: int = Field(10, gt=0, description="write training metrics every N steps")
    checkpoint_interval: int = Field(500, gt=0, description="checkpoint every N steps (and at the end)")
    keep_checkpoints: int = Field(2, gt=0, description="most recent checkpoints kept on disk")
    early_stop_patience: int | None = Field(None, description="stop after N evaluations without improvement")
    early_stop_min_delta: float = Field(0.0, ge=0, description="smallest val-loss drop that counts")
    target_val_loss: float | None = Field(None, description="stop once validation loss reaches this")
    sample_interval: int | None = Field(None, description="log samples to TensorBoard every N steps")
    compile: bool = Field(False, description="torch.compile the model")
    precision: Precision = Field("auto", description="auto (bf16/fp16 on CUDA, fp32 elsewhere), fp32, bf16, fp16")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    num_threads: int | None = Field(None, description="torch CPU threads (default: all cores)")
    progress: bool = Field(True, description="show a progress bar")


class Task(Protocol):
    """What a model family gives the loop."""

    model: nn.Module  # the unwrapped module whose weights are saved
    optimizers: dict[str, Optimizer]

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step; returns at least ``loss`` (and ``tokens``/``samples`` processed)."""

    def evaluate(self) -> dict[str, float]:
        """Metrics on the fixed validation batches; at least ``val_loss``."""

    def log_samples(self, logger: RunLogger, step: int) -> None:
        """Write generated samples (text or image grids) to TensorBoard."""

    def extra_state(self) -> dict[str, Any]:
        """Anything else a checkpoint must hold to resume exactly (e.g. a grad-scaler state)."""

    def load_extra_state(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainState:
    step: int = 0
    best_val: float = math.inf
    evals_since_best: int = 0
    last_val: float | None = None
    stop_reason: str | None = None
    elapsed_s: float = 0.0


def set_learning_rates(optimizers: dict[str, Optimizer], multiplier: float) -> None:
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
            group["lr"] = group["base_lr"] * multiplier


@contextmanager
def stop_on_signals() -> Iterator[dict[str, bool]]:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current step; a second SIGINT
    interrupts at once."""
    flag = {"stop": False}
    previous = {}

    def handler(signum, frame):
        if flag["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["stop"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (e.g. a server's worker): no handlers
            pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _agree(flag: bool, ctx: DistributedContext) -> bool:
    """True on every rank if it is true on any (so all ranks stop at the same step)."""
    if not ctx.enabled:
        return flag
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _gather_rng(ctx: DistributedContext) -> list[dict[str, Any]]:
    if not ctx.enabled:
        return [capture_rng()]
    import torch.distributed as dist

    states: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(states, capture_rng())
    return states


def save_training_checkpoint(task: Task, state: TrainState, run_dir: Path, cfg: TrainConfig,
                             ctx: DistributedContext) -> None:
    rng = _gather_rng(ctx)  # collective: every rank takes part
    if ctx.is_main:
        optimizer_state = {name: opt.state_dict() for name, opt in task.optimizers.items()}
        payload = {**asdict(state), "rng": rng, "extra": task.extra_state(),
                   "data_position": {"next_step": state.step, "micro_steps_per_step": cfg.grad_accum}}
        save_checkpoint(run_dir / CHECKPOINT_DIR, state.step, task.model, optimizer_state, payload,
                        keep=cfg.keep_checkpoints)
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def restore_training_checkpoint(task: Task, run_dir: Path, ctx: DistributedContext) -> TrainState | None:
    path = latest_checkpoint(run_dir / CHECKPOINT_DIR)
    if path is None:
        return None
    payload, optimizer_state = load_checkpoint(path, task.model)
    for name, optimizer in task.optimizers.items():
        if name not in optimizer_state:
            raise LuoxiaError(f"{path}: has no state for optimizer '{name}' (was the optimizer changed?)")
        optimizer.load_state_dict(optimizer_state[name])
    rng = payload["rng"]
    restore_rng(rng[ctx.rank] if ctx.rank < len(rng) else rng[0])
    task.load_extra_state(payload.get("extra", {}))
    fields = {k: payload[k] for k in TrainState.__dataclass_fields__ if k in payload}
    return TrainState(**fields)


def _evaluate(task: Task, state: TrainState, cfg: TrainConfig, logger: RunLogger, run_dir: Path,
              ctx: DistributedContext) -> None:
    metrics = task.evaluate()
    val = metrics["val_loss"]
    state.last_val = val
    logger.log(state.step, metrics, kind="eval")
    if val < state.best_val - cfg.early_stop_min_delta:
        state.best_val, state.evals_since_best = val, 0
        if ctx.is_main:
            save_weights(task.model, run_dir / WEIGHTS_FILE)
    else:
        state.evals_since_best += 1
    if cfg.target_val_loss is not None and val <= cfg.target_val_loss:
        state.stop_reason = "target_val_loss"
    elif cfg.early_stop_patience is not None and state.evals_since_best >= cfg.early_stop_patience:
        state.stop_reason = "early_stop"


def _prepare_run(task: Task, run_dir: Path, resume: bool, ctx: DistributedContext) -> TrainState:
    has_checkpoint = (run_dir / CHECKPOINT_DIR / LATEST_FILE).exists()
    if has_checkpoint and not resume:
        raise LuoxiaError(f"{run_dir} already holds a run with checkpoints; pass --resume to continue it "
                          "or choose another out_dir")
    state = restore_training_checkpoint(task, run_dir, ctx) if resume else None
    if resume and state is None:
        if ctx.is_main:
            print(f"no checkpoint in {run_dir / CHECKPOINT_DIR}: starting from step 0", file=sys.stderr)
    state = state or TrainState()
    if ctx.is_main:
        truncate_metrics(run_dir, state.step)
    return state


def fit(task: Task, cfg: TrainConfig, run_dir: str | Path, ctx: DistributedContext = DistributedContext(),
        resume: bool = False) -> TrainState:
    """Train ``task`` for ``cfg.max_steps`` steps, writing everything into ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _prepare_run(task, run_dir, resume, ctx)
    state.stop_reason = None
    logger = RunLogger(run_dir, cfg.max_steps, state.step, ctx.is_main, cfg.progress)
    started, evaluated = time.perf_counter() - state.elapsed_s, False
    window_start, window_count = time.perf_counter(), 0.0
    try:
        with stop_on_signals() as signals:
            while state.step < cfg.max_steps:
                multiplier = lr_multiplier(state.step, cfg.max_steps, cfg.warmup_steps, cfg.min_lr_ratio,
                                           cfg.schedule, cfg.decay_start)
                set_learning_rates(task.optimizers, multiplier)
                metrics = task.train_step(state.step)
                state.step += 1
                window_count += metrics.get("tokens", metrics.get("samples", 0))
                rate = window_count / max(1e-9, time.perf_counter() - window_start)
                unit = "tok/s" if "tokens" in metrics else "samples/s"
                logger.advance(state.step, metrics["loss"], f"{rate:,.0f} {unit}")
                last = state.step == cfg.max_steps
                logged = state.step % cfg.log_interval == 0 or last
                if logged:
                    lr = next(iter(task.optimizers.values())).param_groups[0]["lr"]
                    logger.log(state.step, {**metrics, "lr": lr, f"{unit.replace('/', '_per_')}": round(rate, 1)})
                if state.step % cfg.eval_interval == 0 or last:
                    _evaluate(task, state, cfg, logger, run_dir, ctx)
                    evaluated = True
                if cfg.sample_interval and (state.step % cfg.sample_interval == 0 or last) and ctx.is_main:
                    task.log_samples(logger, state.step)
                if _agree(signals["stop"], ctx):
                    state.stop_reason = "signal"
                state.elapsed_s = time.perf_counter() - started
                if state.step % cfg.checkpoint_interval == 0 or last or state.stop_reason:
                    save_training_checkpoint(task, state, run_dir, cfg, ctx)
                if state.stop_reason:
                    break
                if logged:  # the next window starts after this step's evaluation and checkpoint
                    window_start, window_count = time.perf_counter(), 0.0
    finally:
        logger.close()
    if not evaluated and ctx.is_main:  # no evaluation ever ran: the final weights are the product
        save_weights(task.model, run_dir / WEIGHTS_FILE)
    if ctx.is_main:
        summary = {**asdict(state), "stop_reason": state.stop_reason or "max_steps"}
        atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
        if state.stop_reason == "signal":
            logger.print(f"[yellow]stopped by signal at step {state.step}; checkpoint saved — "
                         "continue with --resume")
    return state
