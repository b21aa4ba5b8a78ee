"""Pre-training a BERT-style masked language model: the `Task` for the shared loop.

``luoxia train configs/mlm/pydoc.yaml`` prepares the corpus as the GPT's pre-training does (one
packed token stream per split, documents joined by ``<|endoftext|>``), with ``[PAD] [CLS] [SEP]
[MASK]`` first in the tokenizer. Each row is a random ``block_size`` window of that stream framed as
``[CLS] … [SEP]`` (with ``model.nsp``: cut into a pair, the second half replaced by a random span
half the time) and masked by BERT's 80/10/10 rule (`luoxia.data.mlm`). Validation: loss and
masked-token accuracy on fixed seeded masked windows of the validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn
from pydantic import Field

from luoxia.config import Config
from luoxia.data.mlm import MLM_SPECIALS, MaskingConfig, MLMBatches
from luoxia.data.packed import open_tokens, read_meta
from luoxia.data.prepare import DataConfig, Mask
from luoxia.data.tokenizer import TextTokenizer
from luoxia.generate.mlm import masked_counts, masked_metrics
from luoxia.models.mlm import MaskedLM, MLMConfig
from luoxia.runtime import DistributedContext, autocast, init_distributed, resolve_device, seed_everything, set_threads
from luoxia.train.lm import prepare_run_dir
from luoxia.train.logging import RunLogger
from luoxia.train.loop import Callback, LoopConfig, TrainState, fit
from luoxia.train.optim import MuonConfig, OptimizerConfig, build_optimizers
from luoxia.train.task import (
    Amp,
    Batch,
    CompileConfig,
    Learner,
    gradient_step,
    mean_across_ranks,
    to_device,
    wrap_model,
)

# The encoder's 2-D weights outside the blocks that stay with AdamW when optimizer=muon (with the
# embeddings): the masked-LM head's dense layer, the pooler and the next-sentence head.
HEAD_NAMES = ("head_dense", "pooler", "nsp_head")


class MLMTrainConfig(LoopConfig, OptimizerConfig, MuonConfig, CompileConfig):
    """Masked-LM pre-training's loop, optimizer (AdamW, or Muon on the blocks' matrices) and compile settings."""

    muon_refusal: ClassVar[str | None] = None


class MLMRecipe(Config):
    """A masked-language-model pre-training run: data, masking, model and training loop."""

    task: Literal["mlm"] = Field("mlm", description="recipe kind")
    out_dir: str = Field("runs/mlm", description="run directory (config, tokenizer, checkpoints, logs)")
    seed: int = Field(1337, description="seed for initialisation, windows, masking and dropout")
    prepared_data: str | None = Field(None, description="use this prepared directory (made by a task: mlm run, "
                                      "whose tokenizer has [PAD] [CLS] [SEP] [MASK]) instead of `data`")
    data: DataConfig = Field(default_factory=DataConfig)
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    model: MLMConfig = Field(default_factory=MLMConfig)
    train: MLMTrainConfig = Field(default_factory=MLMTrainConfig)


def mlm_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    x, y, segments, *nsp = batch  # (B, T) inputs, targets (-100: not predicted), segment ids; (B,) NSP labels
    return model(x, y, segments=segments, nsp_labels=nsp[0] if nsp else None)[1]


class MLMTask:
    """Masked-token (and next-sentence) prediction on random masked windows of a packed token file."""

    def __init__(self, recipe: MLMRecipe, data_dir: Path, ctx: DistributedContext, device: torch.device):
        cfg = self.cfg = recipe.train
        self.tokenizer = TextTokenizer.load(data_dir)
        model_config = recipe.model.model_copy(update={"vocab_size": read_meta(data_dir)["vocab_size"]})
        seed_everything(recipe.seed)  # identical initial weights on every rank
        self.model = MaskedLM(model_config).to(device)
        self.optimizers = build_optimizers(self.model, cfg, device, head_names=HEAD_NAMES)
        torch.manual_seed(recipe.seed + ctx.rank)  # dropout masks differ between ranks
        self.learner = Learner(self.model, wrap_model(self.model, ctx, device, cfg.compile), self.optimizers,
                               Amp.resolve(device, cfg.precision), ctx)

        def batches(split: str, batch_size: int, seed: int) -> MLMBatches:
            return MLMBatches(open_tokens(data_dir, split), self.tokenizer, model_config.block_size, batch_size,
                              seed, recipe.masking, model_config.nsp, ctx.rank, ctx.world_size)

        self.train_batches = batches("train", cfg.batch_size, recipe.seed)
        # Fixed masked validation windows: the same at every evaluation and for every world size.
        self.val_batches = batches("val", cfg.eval_batch_size or cfg.batch_size, recipe.seed + 1)
        self.val_cache: list[Batch] | None = None

    def train_step(self, step: int) -> dict[str, float]:
        loss = gradient_step(self.learner, lambda micro: self.train_batches.batch(step, micro), mlm_loss,
                             self.cfg.grad_accum, self.cfg.grad_clip)
        ctx = self.learner.ctx
        tokens = self.cfg.grad_accum * self.cfg.batch_size * self.train_batches.block_size * ctx.world_size
        return {"loss": mean_across_ranks(loss, ctx), "tokens": tokens}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.val_cache is None:  # masking whole words calls jieba: make the fixed batches once
            self.val_cache = [self.val_batches.batch(0, i) for i in range(self.cfg.eval_batches)]
        model, amp = self.model, self.learner.amp
        model.eval()
        losses, counts = [], torch.zeros(5, device=amp.device)
        for batch in self.val_cache:
            batch = to_device(batch, amp.device)
            with autocast(amp.device, amp.dtype):
                losses.append(mlm_loss(model, batch).float())
                counts += masked_counts(model, batch)
        model.train()
        val = mean_across_ranks(torch.stack(losses).mean(), self.learner.ctx)
        if self.learner.ctx.enabled:
            import torch.distributed as dist

            dist.all_reduce(counts)
        metrics = masked_metrics(counts)
        return {"val_loss": val, "val_mlm_accuracy": metrics["mlm_accuracy"],
                **({"val_nsp_accuracy": metrics["nsp_accuracy"]} if "nsp_accuracy" in metrics else {})}

    def extra_state(self) -> dict[str, Any]:
        return self.learner.amp.state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.learner.amp.load_state(state)

    def log_samples(self, logger: RunLogger, step: int) -> None:
        """Nothing to draw: `luoxia fill-mask` shows what the model has learned."""


def train_mlm(recipe: MLMRecipe, resume: bool = False, mask: Mask | None = None,
              callbacks: Sequence[Callback] = ()) -> TrainState:
    """Run a masked-LM recipe end to end (also as one rank of a ``torchrun`` job); ``mask`` masks
    personal data when ``data.redact_pii`` asks; ``callbacks`` go to `fit`."""
    set_threads(recipe.train.num_threads)
    device = resolve_device(recipe.train.device)
    ctx = init_distributed(device)
    run_dir, data_dir = prepare_run_dir(recipe, ctx, mask, specials=MLM_SPECIALS)
    task = MLMTask(recipe, data_dir, ctx, device)
    return fit(task, recipe.train, run_dir, ctx, resume=resume, callbacks=callbacks)
