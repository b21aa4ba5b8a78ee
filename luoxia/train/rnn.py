"""Pre-training an LSTM/GRU language model (``task: lm``, ``model.family: rnn``) with truncated
back-propagation through time over ``block_size`` windows.

The GPT's task (`luoxia.train.lm.LMTask`) does the rest — data, optimizers, evaluation on the same
fixed validation windows, samples — with an `RNNLM` in place of the GPT. ``train.stateful: true``
(the default) reads each batch row as one contiguous stream (`StreamSampler`) and carries the
detached state from one window to the next of the same stream; the carried state travels in the
checkpoints, so a killed run resumes exactly. ``stateful: false`` reads random windows from a zero
state, exactly like the GPT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
from pydantic import Field

from luoxia.checkpoint import decode_tensor, encode_tensor
from luoxia.data.packed import StreamSampler, open_tokens
from luoxia.data.prepare import Mask
from luoxia.errors import ConfigError
from luoxia.generate.rnn import RNNGenerator
from luoxia.models.rnn import RNNLM, RNNConfig, RNNState, detach_state
from luoxia.runtime import DistributedContext
from luoxia.train.lm import LMRecipe, LMTask, LMTrainConfig, train_lm
from luoxia.train.logging import RunLogger
from luoxia.train.loop import Callback, TrainState
from luoxia.train.task import Batch, gradient_step, mean_across_ranks

RNN_MUON = ("torch's LSTM/GRU store each layer's gates stacked in one (4H or 3H) × H matrix, and Muon's "
            "whole-matrix orthogonalisation would mix the gates")


class RNNTrainConfig(LMTrainConfig):
    """The GPT's training settings (AdamW only) plus how windows follow each other."""

    muon_refusal: ClassVar[str | None] = RNN_MUON

    stateful: bool = Field(True, description="carry each stream's (detached) state into its next window, so the "
                           "model learns to use context beyond block_size, as generation does; false: random "
                           "windows from a zero state, like the GPT")


class RNNRecipe(LMRecipe):
    """An LSTM/GRU language-model pre-training run: the GPT recipe's data, seed and samples, with an
    `RNNConfig` model and `RNNTrainConfig` training."""

    out_dir: str = Field("runs/rnn", description="run directory (config, tokenizer, checkpoints, logs)")
    model: RNNConfig = Field(default_factory=RNNConfig)
    train: RNNTrainConfig = Field(default_factory=RNNTrainConfig)


def encode_state(state: RNNState | None) -> list[dict[str, Any]]:
    """A carried state as JSON for a checkpoint ([] before the first window)."""
    parts = [] if state is None else list(state) if isinstance(state, tuple) else [state]
    return [encode_tensor(part) for part in parts]


def decode_state(encoded: list[dict[str, Any]], device: torch.device) -> RNNState | None:
    parts = [decode_tensor(part, device) for part in encoded]
    return None if not parts else parts[0] if len(parts) == 1 else (parts[0], parts[1])


class RNNTask:
    """`LMTask` with an `RNNLM`; stateful training replaces its random windows by streams whose
    state is carried (detached: gradients stop at each window's start)."""

    def __init__(self, recipe: RNNRecipe, data_dir: Path, ctx: DistributedContext, device: torch.device):
        if recipe.train.stateful and ctx.enabled:
            raise ConfigError("train.stateful=true under torchrun is not supported (each rank's carried state "
                              "would have to travel in the checkpoint); use train.stateful=false")
        self.lm = LMTask(recipe, data_dir, ctx, device, build=RNNLM, sampler=RNNGenerator)
        self.model, self.optimizers, self.cfg = self.lm.model, self.lm.optimizers, recipe.train
        self.state: RNNState | None = None  # the carried state after the last window read (None: zeros)
        self.streams = None
        if recipe.train.stateful:
            self.streams = StreamSampler(open_tokens(data_dir, "train"), recipe.model.block_size,
                                         recipe.train.batch_size, recipe.seed, ctx.rank, ctx.world_size)

    def train_step(self, step: int) -> dict[str, float]:
        if self.streams is None:
            return self.lm.train_step(step)
        learner, cfg = self.lm.learner, self.cfg
        loss = gradient_step(learner, lambda micro: self._stream_batch(step * cfg.grad_accum + micro),
                             self._carried_loss, cfg.grad_accum, cfg.grad_clip)
        tokens = cfg.grad_accum * cfg.batch_size * self.streams.block_size * learner.ctx.world_size
        return {"loss": mean_across_ranks(loss, learner.ctx), "tokens": tokens}

    def _stream_batch(self, index: int) -> Batch:
        assert self.streams is not None
        if self.streams.fresh(index):
            self.state = None  # an epoch starts: every stream from its beginning
        return self.streams.batch(index)

    def _carried_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch  # (B, T) inputs and next-token targets of each stream's next window
        _, loss, state = model(x, y, state=self.state)
        self.state = detach_state(state)
        return loss

    def evaluate(self) -> dict[str, float]:
        return self.lm.evaluate()  # the GPT's fixed validation windows, each from a zero state

    def extra_state(self) -> dict[str, Any]:
        return {**self.lm.extra_state(), "rnn_state": encode_state(self.state)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.lm.load_extra_state(state)
        self.state = decode_state(state.get("rnn_state", []), self.lm.learner.device)

    def log_samples(self, logger: RunLogger, step: int) -> None:
        self.lm.log_samples(logger, step)


def train_rnn(recipe: RNNRecipe, resume: bool = False, mask: Mask | None = None,
              callbacks: Sequence[Callback] = ()) -> TrainState:
    """Run an LSTM/GRU recipe end to end; the arguments are `train_lm`'s."""
    return train_lm(recipe, resume, mask, callbacks, make_task=RNNTask)

