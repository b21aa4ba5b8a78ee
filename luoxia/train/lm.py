"""Pre-training a GPT from scratch: the language-model `Task` for the shared loop.

``luoxia train configs/lm/tiny.yaml key=value …`` prepares the corpus into ``{out_dir}/data``
(reused when nothing changed), builds the model, and hands the task to `luoxia.train.loop.fit`.
Under ``torchrun`` the same command trains with DDP: each rank reads its own rows of every global
batch, so N processes × batch b update exactly like 1 process × batch N·b.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn
from pydantic import Field

from luoxia.config import Config, dump_config
from luoxia.data.packed import WindowSampler, open_tokens, read_meta
from luoxia.data.prepare import DataConfig, Mask, prepare_cached
from luoxia.data.tokenizer import TextTokenizer
from luoxia.generate.interface import GenerationConfig, TextGenerator
from luoxia.generate.text import GPTGenerator
from luoxia.models.gpt import GPT, GPTConfig
from luoxia.runs import CONFIG_FILE, TOKENIZER_FILE
from luoxia.runs import data_dir as run_data_dir
from luoxia.runtime import DistributedContext, init_distributed, resolve_device, seed_everything, set_threads
from luoxia.train.logging import RunLogger
from luoxia.train.loop import Callback, LoopConfig, SampleLogConfig, Task, TrainState, fit
from luoxia.train.optim import MuonConfig, OptimizerConfig, build_optimizers
from luoxia.train.task import (
    Amp,
    Batch,
    CompileConfig,
    Learner,
    gradient_step,
    mean_across_ranks,
    mean_eval_loss,
    wrap_model,
)


class SampleConfig(Config):
    """Text samples written to TensorBoard during training."""

    prompt: str = Field("", description="prompt for training-time samples ('' starts from end-of-text)")
    max_new_tokens: int = Field(100, gt=0, description="length of each sample")
    temperature: float = Field(0.8, ge=0, description="sampling temperature")


class LMTrainConfig(LoopConfig, OptimizerConfig, MuonConfig, CompileConfig, SampleLogConfig):
    """Pre-training's loop, optimizer (AdamW or Muon), compile and sample settings."""

    muon_refusal: ClassVar[str | None] = None


class LMRecipe(Config):
    """A language-model pre-training run: data, model and training loop."""

    task: Literal["lm"] = Field("lm", description="recipe kind")
    out_dir: str = Field("runs/lm", description="run directory (config, tokenizer, checkpoints, logs)")
    seed: int = Field(1337, description="seed for initialisation, batches and dropout")
    prepared_data: str | None = Field(None, description="use this `luoxia prepare` output instead of `data`")
    data: DataConfig = Field(default_factory=DataConfig)
    model: GPTConfig = Field(default_factory=GPTConfig)
    train: LMTrainConfig = Field(default_factory=LMTrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)


# (model, tokenizer) → the generator that draws training-time samples
SampleGenerator = Callable[[nn.Module, TextTokenizer], TextGenerator]


class LMTask:
    """Next-token prediction on random windows of a packed token file, for any language model
    whose ``forward(idx, targets)`` returns ``(logits, loss, ...)``: ``build`` makes it from the
    recipe's model config (the GPT by default; the LSTM/GRU task composes this one)."""

    def __init__(self, recipe: LMRecipe, data_dir: Path, ctx: DistributedContext, device: torch.device,
                 build: Callable[[Any], nn.Module] = GPT, sampler: SampleGenerator = GPTGenerator):
        cfg = self.cfg = recipe.train
        self.tokenizer = TextTokenizer.load(data_dir)
        meta = read_meta(data_dir)
        model_config = recipe.model.model_copy(update={"vocab_size": meta["vocab_size"]})
        seed_everything(recipe.seed)  # identical initial weights on every rank
        self.model = build(model_config).to(device)
        self.sampler = sampler
        self.optimizers = build_optimizers(self.model, cfg, device)
        torch.manual_seed(recipe.seed + ctx.rank)  # dropout masks differ between ranks
        self.learner = Learner(self.model, wrap_model(self.model, ctx, device, cfg.compile), self.optimizers,
                               Amp.resolve(device, cfg.precision), ctx)
        block = model_config.block_size
        self.train_batches = WindowSampler(open_tokens(data_dir, "train"), block, cfg.batch_size, recipe.seed,
                                           ctx.rank, ctx.world_size)
        # A fixed set of validation windows, the same at every evaluation and for every world size.
        self.val_batches = WindowSampler(open_tokens(data_dir, "val"), block, cfg.eval_batch_size or cfg.batch_size,
                                         recipe.seed + 1, ctx.rank, ctx.world_size)
        self.sample = recipe.sample

    def train_step(self, step: int) -> dict[str, float]:
        loss = gradient_step(self.learner, lambda micro: self.train_batches.batch(step, micro), lm_loss,
                             self.cfg.grad_accum, self.cfg.grad_clip)
        tokens = self.cfg.grad_accum * self.cfg.batch_size * self.train_batches.block_size * self.learner.ctx.world_size
        return {"loss": mean_across_ranks(loss, self.learner.ctx), "tokens": tokens}

    def evaluate(self) -> dict[str, float]:
        batches = [self.val_batches.batch(0, i) for i in range(self.cfg.eval_batches)]
        val = mean_eval_loss(self.learner, batches, lm_loss)
        return {"val_loss": val, "val_ppl": math.exp(val)}

    def extra_state(self) -> dict[str, Any]:
        return self.learner.amp.state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.learner.amp.load_state(state)

    def log_samples(self, logger: RunLogger, step: int) -> None:
        generator = self.sampler(self.model, self.tokenizer)
        config = GenerationConfig(max_new_tokens=self.sample.max_new_tokens, temperature=self.sample.temperature,
                                  seed=step)
        text = generator.generate([self.sample.prompt], config)[0].text
        logger.text("samples", f"{self.sample.prompt}{text}", step)
        self.model.train()


def lm_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    x, y = batch  # (B, T) inputs and next-token targets
    return model(x, y)[1]


def prepare_run_dir(recipe: Any, ctx: DistributedContext, mask: Mask | None = None,
                    specials: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write the recipe and tokenizer into the run directory and prepare the data (rank 0 only);
    ``mask`` masks personal data when the recipe's data asks for it (``data.redact_pii``). Any recipe
    with ``out_dir``, ``prepared_data``, ``data`` and a ``model`` with ``vocab_size`` (the masked LM's
    too, whose tokenizer gets ``specials``)."""
    run_dir = Path(recipe.out_dir)
    data_dir = run_data_dir(run_dir, recipe.prepared_data)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if recipe.prepared_data is None:
            prepare_cached(recipe.data, data_dir, mask, specials)
        else:
            read_meta(data_dir)  # fails clearly if the directory is not prepared data
        shutil.copyfile(data_dir / TOKENIZER_FILE, run_dir / TOKENIZER_FILE)
        meta = read_meta(data_dir)
        model = recipe.model.model_copy(update={"vocab_size": meta["vocab_size"]})
        dump_config(recipe.model_copy(update={"model": model}), run_dir / CONFIG_FILE)
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()
    return run_dir, data_dir


# (recipe, prepared data directory, process group, device) → the task `fit` trains
TaskFactory = Callable[[Any, Path, DistributedContext, torch.device], Task]


def train_lm(recipe: LMRecipe, resume: bool = False, mask: Mask | None = None,
             callbacks: Sequence[Callback] = (), make_task: TaskFactory = LMTask) -> TrainState:
    """Run an LM recipe end to end (also as one rank of a ``torchrun`` job); ``mask``: see
    `prepare_run_dir`; ``callbacks`` go to `fit`; ``make_task`` builds the task (the GPT's by default,
    the LSTM/GRU's from `luoxia.train.rnn`)."""
    set_threads(recipe.train.num_threads)
    device = resolve_device(recipe.train.device)
    ctx = init_distributed(device)
    run_dir, data_dir = prepare_run_dir(recipe, ctx, mask)
    task = make_task(recipe, data_dir, ctx, device)
    return fit(task, recipe.train, run_dir, ctx, resume=resume, callbacks=callbacks)
