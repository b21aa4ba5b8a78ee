"""The training loop every model family shares.

A family supplies a `Task`: its model, its optimizers, what one optimisation step does, and how to
evaluate. The loop owns everything around that: learning-rate schedule, periodic evaluation, callbacks
(early stopping, a target loss, or an outside caller's rule such as a search's pruner),
TensorBoard/JSONL/progress logging, atomic checkpoints (also on SIGINT/SIGTERM) and exact resume —
the same seed and config give the same loss curve whether or not the run was killed.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn
from pydantic import Field
from torch.optim import Optimizer

from luoxia.checkpoint import (
    LATEST_FILE,
    atomic_write_text,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    save_weights,
)
from luoxia.config import Config
from luoxia.errors import LuoxiaError
from luoxia.runs import CHECKPOINT_DIR, SUMMARY_FILE, WEIGHTS_FILE
from luoxia.runtime import DistributedContext, Precision
from luoxia.train.logging import RunLogger, truncate_metrics
from luoxia.train.schedule import Schedule, lr_multiplier


class LoopConfig(Config):
    """The knobs of the shared loop — steps, batches, schedule, evaluation, stopping, logging,
    checkpoints, device. Each task's train config composes these with the other groups it uses
    (`luoxia.train.optim.OptimizerConfig`, `MuonConfig`, `luoxia.train.task.CompileConfig`,
    `SampleLogConfig`), so a field the task would ignore is an unknown key."""

    max_steps: int = Field(1000, gt=0, description="optimizer steps to run")
    batch_size: int = Field(32, gt=0, description="sequences (or images) per process per micro-step")
    grad_accum: int = Field(1, gt=0, description="micro-steps accumulated into one optimizer step")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final learning rate as a share of the peak")
    warmup_steps: int = Field(100, ge=0, description="linear warm-up steps")
    schedule: Schedule = Field("cosine", description="decay after warm-up: cosine, linear or constant")
    decay_start: float = Field(0.0, ge=0, lt=1, description="share of the run held at peak before decaying")
    eval_interval: int = Field(100, gt=0, description="evaluate every N steps (and at the end)")
    eval_batches: int = Field(20, gt=0, description="fixed validation batches per evaluation")
    eval_batch_size: int | None = Field(None, description="rows per validation batch (default: batch_size)")
    log_interval: int = Field(10, gt=0, description="write training metrics every N steps")
    checkpoint_interval: int = Field(500, gt=0, description="checkpoint every N steps (and at the end)")
    keep_checkpoints: int = Field(2, gt=0, description="most recent checkpoints kept on disk")
    early_stop_patience: int | None = Field(None, description="stop after N evaluations without improvement")
    early_stop_min_delta: float = Field(0.0, ge=0, description="smallest val-loss drop that counts")
    target_val_loss: float | None = Field(None, description="stop once validation loss reaches this")
    precision: Precision = Field("auto", description="auto (bf16/fp16 on CUDA, fp32 elsewhere), fp32, bf16, fp16")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    num_threads: int | None = Field(None, description="torch CPU threads (default: all cores)")
    progress: bool = Field(True, description="show a progress bar")


class SampleLogConfig(Config):
    """Training-time samples, for tasks that draw something (`Task.log_samples`)."""

    sample_interval: int | None = Field(None, description="log samples to TensorBoard every N steps")


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


# Callbacks ------------------------------------------------------------------------------------
# A callback is any object with some of ``on_step(step, metrics)``, ``on_eval(step, metrics)`` and
# ``on_end(state)``, or a bare function, which is taken as ``on_eval``. ``on_step`` and ``on_eval``
# return a reason to stop (a short string, which becomes ``stop_reason``) or None to go on; the run
# then checkpoints and ends cleanly. Metrics are averaged across ranks, so a callback that decides
# from them decides the same on every rank. A callback whose decisions depend on what it has seen
# may also have ``state_dict()``/``load_state_dict(d)``: its state travels in the checkpoints, so a
# resumed run stops where the uninterrupted one would have.
Callback = Any
StopReason = str | None


class EarlyStopping:
    """Stop after ``patience`` evaluations whose validation loss did not beat the best by ``min_delta``."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.evals_since_best = math.inf, 0

    def on_eval(self, step: int, metrics: dict[str, float]) -> StopReason:
        if metrics["val_loss"] < self.best - self.min_delta:
            self.best, self.evals_since_best = metrics["val_loss"], 0
        else:
            self.evals_since_best += 1
        return "early_stop" if self.evals_since_best >= self.patience else None

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best, "evals_since_best": self.evals_since_best}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best, self.evals_since_best = state["best"], int(state["evals_since_best"])


class TargetLoss:
    """Stop once the validation loss reaches ``target``."""

    def __init__(self, target: float):
        self.target = target

    def on_eval(self, step: int, metrics: dict[str, float]) -> StopReason:
        return "target_val_loss" if metrics["val_loss"] <= self.target else None


class TimeBudget:
    """Stop ``seconds`` of wall time after the first step ended (that step carries one-off costs —
    lazy initialisation, kernel selection — that a longer run would not repeat): equal-time
    comparisons. ``elapsed`` and ``steps`` say what was timed. Not resumable: time is not state."""

    def __init__(self, seconds: float):
        self.seconds, self.started, self.elapsed, self.steps = seconds, 0.0, 0.0, 0

    def on_step(self, step: int, metrics: dict[str, float]) -> StopReason:
        if step == 1:
            self.started = time.perf_counter()
            return None
        self.elapsed, self.steps = time.perf_counter() - self.started, step - 1  # timed steps
        return "time_budget" if self.elapsed >= self.seconds else None


def config_callbacks(cfg: LoopConfig) -> list[Callback]:
    """The stopping rules a config asks for (target loss first: it names the reason when both fire)."""
    rules: list[Callback] = []
    if cfg.target_val_loss is not None:
        rules.append(TargetLoss(cfg.target_val_loss))
    if cfg.early_stop_patience is not None:
        rules.append(EarlyStopping(cfg.early_stop_patience, cfg.early_stop_min_delta))
    return rules


def _call(callbacks: list[Callback], event: str, *args: Any) -> StopReason:
    """Run ``event`` on every callback (all of them see it); the first reason to stop wins."""
    reason = None
    for callback in callbacks:
        method = getattr(callback, event, None)
        if method is None and event == "on_eval" and callable(callback) and not hasattr(callback, "on_step"):
            method = callback
        result = method(*args) if method is not None else None
        if result and not reason:  # a bare ``True`` stops too, under a generic reason
            reason = result if isinstance(result, str) else "callback"
    return reason


def _callback_states(callbacks: list[Callback]) -> dict[str, Any]:
    return {str(i): cb.state_dict() for i, cb in enumerate(callbacks) if hasattr(cb, "state_dict")}


def _load_callback_states(callbacks: list[Callback], states: dict[str, Any]) -> None:
    for i, callback in enumerate(callbacks):
        if str(i) in states and hasattr(callback, "load_state_dict"):
            callback.load_state_dict(states[str(i)])


@dataclass
class TrainState:
    step: int = 0
    best_val: float = math.inf
    last_val: float | None = None
    stop_reason: str | None = None
    elapsed_s: float = 0.0
    callbacks: dict[str, Any] = field(default_factory=dict)  # callbacks' own state, by position


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


def save_training_checkpoint(task: Task, state: TrainState, run_dir: Path, cfg: LoopConfig,
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
        try:
            optimizer.load_state_dict(optimizer_state[name])
        except ValueError:  # e.g. a checkpoint from before weight decay was split into two param groups
            raise LuoxiaError(f"{path}: the state of optimizer '{name}' does not fit this run's parameter groups "
                              "(was the optimizer changed?)") from None
    rng = payload["rng"]
    restore_rng(rng[ctx.rank] if ctx.rank < len(rng) else rng[0])
    task.load_extra_state(payload.get("extra", {}))
    fields = {k: payload[k] for k in TrainState.__dataclass_fields__ if k in payload}
    return TrainState(**fields)


def _evaluate(task: Task, state: TrainState, cfg: LoopConfig, logger: RunLogger, run_dir: Path,
              ctx: DistributedContext) -> dict[str, float]:
    """Evaluate, log, and keep the best weights (a drop of at least ``early_stop_min_delta`` counts)."""
    metrics = task.evaluate()
    val = metrics["val_loss"]
    state.last_val = val
    logger.log(state.step, metrics, kind="eval")
    if val < state.best_val - cfg.early_stop_min_delta:
        state.best_val = val
        if ctx.is_main:
            save_weights(task.model, run_dir / WEIGHTS_FILE)
    return metrics


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


ONE_PROCESS = DistributedContext()  # frozen, so one shared default is safe


def fit(task: Task, cfg: LoopConfig, run_dir: str | Path, ctx: DistributedContext = ONE_PROCESS,
        resume: bool = False, callbacks: Sequence[Callback] = ()) -> TrainState:
    """Train ``task`` for ``cfg.max_steps`` steps, writing everything into ``run_dir``.

    ``callbacks`` observe every step and evaluation and may stop the run (see `Callback`); the
    config's own stopping rules (`config_callbacks`) run first."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [*config_callbacks(cfg), *callbacks]
    state = _prepare_run(task, run_dir, resume, ctx)
    _load_callback_states(callbacks, state.callbacks)
    state.stop_reason = None
    sample_interval = getattr(cfg, "sample_interval", None)  # only tasks that draw have one
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
                state.stop_reason = _call(callbacks, "on_step", state.step, metrics)
                if state.step % cfg.eval_interval == 0 or last or state.stop_reason:
                    eval_metrics = _evaluate(task, state, cfg, logger, run_dir, ctx)
                    evaluated = True
                    reason = _call(callbacks, "on_eval", state.step, eval_metrics)  # every callback sees it
                    state.stop_reason = state.stop_reason or reason
                if sample_interval and (state.step % sample_interval == 0 or last) and ctx.is_main:
                    task.log_samples(logger, state.step)
                if _agree(signals["stop"], ctx):
                    state.stop_reason = state.stop_reason or "signal"
                state.elapsed_s = time.perf_counter() - started
                if state.step % cfg.checkpoint_interval == 0 or last or state.stop_reason:
                    state.callbacks = _callback_states(callbacks)
                    save_training_checkpoint(task, state, run_dir, cfg, ctx)
                if state.stop_reason:
                    break
                if logged:  # the next window starts after this step's evaluation and checkpoint
                    window_start, window_count = time.perf_counter(), 0.0
    finally:
        logger.close()
    if not evaluated and ctx.is_main:  # no evaluation ever ran: the final weights are the product
        save_weights(task.model, run_dir / WEIGHTS_FILE)
    _call(callbacks, "on_end", state)
    if ctx.is_main:
        summary = {**asdict(state), "stop_reason": state.stop_reason or "max_steps"}
        summary.pop("callbacks")
        atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
        if state.stop_reason == "signal":
            logger.print(f"[yellow]stopped by signal at step {state.step}; checkpoint saved — "
                         "continue with --resume")
    return state
