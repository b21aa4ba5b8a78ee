"""Fine-tuning a pretrained model (a Luoxia run or a local Hugging Face model): full or through a
`peft` method, on plain text, instructions, chats or labelled texts — with the same loop as pre-training.

``luoxia finetune configs/finetune/lora_chat.yaml key=value …``. A Luoxia base is first exported to
Hugging Face format inside the run (``{out_dir}/base``), so every method peft offers applies to it
unchanged. The run ends with the adapter alone (``adapter/``) or the full model (``hf/``), and
``luoxia export RUN --merge`` folds an adapter into its base.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from luoxia.checkpoint import atomic_directory, load_weights
from luoxia.config import Config, dump_config
from luoxia.data.corpora import resolve_data_path
from luoxia.data.finetune import load_rows, read_labelled
from luoxia.data.instruct import IGNORE, chat_template, preview
from luoxia.data.tokenizer import TextTokenizer
from luoxia.errors import ConfigError
from luoxia.generate.hf import HFGenerator, context_length, load_hf_model
from luoxia.generate.interface import GenerationConfig
from luoxia.generate.mlm import load_mlm
from luoxia.models.gpt import GPT, GPTConfig
from luoxia.models.gpt_hf import save_hf
from luoxia.models.mlm import MLMConfig
from luoxia.models.mlm_hf import save_bert
from luoxia.runs import (
    ADAPTER_DIR,
    BASE_DIR,
    CONFIG_FILE,
    FULL_DIR,
    HF_CONFIG_FILE,
    WEIGHTS_FILE,
    base_dir,
    load_run_module,
    run_recipe,
)
from luoxia.runtime import DistributedContext, init_distributed, resolve_device, seed_everything, set_threads
from luoxia.train.lm import SampleConfig
from luoxia.train.logging import RunLogger
from luoxia.train.loop import Callback, LoopConfig, SampleLogConfig, TrainState, fit
from luoxia.train.optim import OptimizerConfig, build_optimizers
from luoxia.train.task import (
    Amp,
    Batch,
    CompileConfig,
    ExampleSampler,
    Learner,
    LossFn,
    gradient_step,
    mean_across_ranks,
    mean_eval_loss,
    to_device,
    wrap_model,
)

Method = Literal["full", "lora", "adalora", "ia3", "prefix", "prompt"]


class MethodConfig(Config):
    """Which parameters train: all of them, or a peft method's few."""

    name: Method = Field("lora", description="full, lora, adalora, ia3, prefix or prompt")
    r: int = Field(8, gt=0, description="LoRA/AdaLoRA rank (AdaLoRA: the average final rank)")
    alpha: int = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: list[str] | str | None = Field(
        "all-linear", description="LoRA/AdaLoRA: modules to adapt (names, all-linear, or null: peft's default)")
    num_virtual_tokens: int = Field(8, gt=0, description="prefix/prompt tuning: virtual tokens")


class FinetuneData(Config):
    """Training data: one file or directory, plus an optional validation file."""

    train: str = Field(..., description="text, instruction/chat JSONL, or labelled CSV/JSONL")
    val: str | None = Field(None, description="validation file (default: a seeded share of train)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out when val is not given")
    format: Literal["auto", "text", "instruction", "chat"] = Field(
        "auto", description="generation data: text (continued pre-training), instruction or chat JSONL")
    text_field: str = Field("text", description="classification: the text column/field")
    label_field: str = Field("label", description="classification: the label column/field")
    label_names: list[str] | None = Field(None, description="classification: names of labels 0..n-1 (or the set)")
    max_length: int = Field(256, gt=1, description="longest example in tokens (longer ones are cut)")
    packing: bool = Field(True, description="generation: pack examples into full-length rows")
    augment: int = Field(0, ge=0, description="EDA-augmented copies of each training example")
    augment_alpha: float = Field(0.1, ge=0, le=1, description="share of words each augmentation changes")
    synonyms: str | None = Field(None, description="synonym file for augmentation (default: the bundled list)")


class FinetuneTrainConfig(LoopConfig, OptimizerConfig, CompileConfig, SampleLogConfig):
    """Fine-tuning's loop, AdamW, compile and sample settings."""

    # peft adapters are low-rank factors, vectors and prompt embeddings, and transformers' Conv1D
    # stores a full model's matrices transposed: Muon's orthogonalised, shape-scaled update of a
    # whole (out, in) weight fits neither.
    muon_refusal: ClassVar[str | None] = ("fine-tuning trains peft adapters or transposed Conv1D matrices, "
                                          "which Muon's whole-matrix update does not fit")


class FinetuneRecipe(Config):
    """A fine-tuning run: a base model, data, a method and the shared training loop."""

    task: Literal["finetune", "classify"] = Field("finetune", description="finetune (generation) or classify")
    base_model: str = Field(..., description="a Luoxia run directory or a local Hugging Face model directory")
    out_dir: str = Field("runs/finetune", description="run directory")
    seed: int = Field(1337, description="seed for data order, head initialisation and dropout")
    data: FinetuneData
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: FinetuneTrainConfig = Field(default_factory=FinetuneTrainConfig)
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    sample: SampleConfig = Field(default_factory=SampleConfig)

    @model_validator(mode="after")
    def _check(self) -> FinetuneRecipe:
        if self.method.name == "prefix" and self.task == "finetune" and self.data.packing:
            raise ValueError("prefix tuning keeps examples apart: set data.packing=false")
        if self.task == "classify" and self.train.sample_interval:
            raise ValueError("a classifier draws no samples: remove train.sample_interval")
        return self


# Model ----------------------------------------------------------------------------------------
def export_base(base_model: str, target: Path) -> str:
    """A Luoxia run as a Hugging Face directory, by its model's family: a masked LM (``bert``) as
    BERT (`luoxia.models.mlm_hf`), a GPT (``gpt``) as its `transformers` family; returns what it became."""
    gpt = GPTConfig.model_fields["family"].default
    family = run_recipe(base_model).get("model", {}).get("family", gpt)  # older GPT runs name none
    if family == MLMConfig.model_fields["family"].default:
        return save_bert(*load_mlm(base_model, device="cpu"), target)
    if family != gpt:
        raise ConfigError(f"base model {base_model}: model family {family!r} has no transformers counterpart to "
                          "fine-tune; use a GPT (task: lm) or masked-LM (task: mlm) run, or a Hugging Face directory")
    return save_hf(load_run_module(base_model, GPT, GPTConfig).eval(), TextTokenizer.load(base_model), target)


def base_model_dir(base_model: str, run_dir: Path) -> Path:
    """The base as a Hugging Face directory: itself, or a Luoxia run exported into the run."""
    target = base_dir(run_dir, base_model)
    if target == run_dir / BASE_DIR and not (target / HF_CONFIG_FILE).is_file():
        export_base(base_model, target)
    return target


# peft picks IA³'s modules by model type and knows no Arcee (Luoxia's rotary + ReLU² export): its
# module names are Llama's, so Llama's choice (keys, values, the feed-forward's down projection) applies.
IA3_MODULES_LIKE = {"arcee": "llama"}


def peft_config(method: MethodConfig, task: str, total_steps: int, model_type: str = ""):
    """The peft config for ``method`` (None for full fine-tuning); ``model_type`` is the base's
    ``config.model_type``."""
    import peft
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    )

    task_type = peft.TaskType.SEQ_CLS if task == "classify" else peft.TaskType.CAUSAL_LM
    common = {"task_type": task_type}
    adapted = {"target_modules": method.target_modules} if method.target_modules else {}
    if method.name == "lora":
        return peft.LoraConfig(r=method.r, lora_alpha=method.alpha, lora_dropout=method.dropout, **adapted, **common)
    if method.name == "adalora":
        return peft.AdaLoraConfig(target_r=method.r, init_r=2 * method.r, lora_alpha=method.alpha,
                                  lora_dropout=method.dropout, total_step=total_steps, **adapted, **common)
    if method.name == "ia3":
        like = IA3_MODULES_LIKE.get(model_type)  # else peft's own per-model attention + feed-forward choice
        modules = {"target_modules": TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING[like],
                   "feedforward_modules": TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING[like]} if like else {}
        return peft.IA3Config(**modules, **common)
    if method.name == "prefix":
        return peft.PrefixTuningConfig(num_virtual_tokens=method.num_virtual_tokens, **common)
    if method.name == "prompt":
        return peft.PromptTuningConfig(num_virtual_tokens=method.num_virtual_tokens, **common)
    return None


def load_base(base_dir: Path, task: str, label_names: list[str] | None):
    """Base model and tokenizer; a classification head on top for ``task == "classify"``."""
    from transformers import AutoModelForSequenceClassification

    if task != "classify":
        model, tokenizer = load_hf_model(base_dir, device="cpu")
        # The template used in training travels with the saved tokenizer (and every export), so
        # inference renders chats exactly as training did.
        tokenizer.chat_template = chat_template(tokenizer)
        return model, tokenizer
    model, tokenizer = load_hf_model(base_dir, "cpu", AutoModelForSequenceClassification,
                                     num_labels=len(label_names), id2label=dict(enumerate(label_names)),
                                     label2id={name: i for i, name in enumerate(label_names)})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id  # a decoder's head finds the last real token by it
    return model, tokenizer


def check_fits_context(recipe: FinetuneRecipe, model_config) -> None:
    """Rows longer than the base's context would index past its positions: refuse them up front."""
    context = context_length(model_config)
    virtual = recipe.method.num_virtual_tokens if recipe.method.name in ("prefix", "prompt") else 0
    if recipe.data.max_length + virtual > context:
        extra = f" + {virtual} virtual tokens" if virtual else ""
        raise ConfigError(f"data.max_length={recipe.data.max_length}{extra} exceeds the base model's context of "
                          f"{context} tokens; lower data.max_length")


def build_model(recipe: FinetuneRecipe, run_dir: Path, label_names: list[str] | None):
    base, tokenizer = load_base(base_model_dir(recipe.base_model, run_dir), recipe.task, label_names)
    check_fits_context(recipe, base.config)
    config = peft_config(recipe.method, recipe.task, recipe.train.max_steps, base.config.model_type)
    if config is None:
        return base, tokenizer
    import peft

    return peft.get_peft_model(base, config), tokenizer


def trainable_share(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# Data -----------------------------------------------------------------------------------------
def pad_batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> Batch:
    """Right-padded (input_ids, attention_mask, labels); labels are ``IGNORE`` on padding."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(rows):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        mask[i, : len(row_ids)] = 1
        labels[i, : len(row_labels)] = torch.tensor(row_labels)
    return ids, mask, labels


# Task -----------------------------------------------------------------------------------------
def finetune_loss(classify: bool, smoothing: float) -> LossFn:
    """Classification cross-entropy, or causal-LM cross-entropy on the labelled tokens."""

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        ids, mask, labels = batch  # (B, T), (B, T), (B,) classes or (B, T) token labels
        logits = model(input_ids=ids, attention_mask=mask).logits
        if classify:
            return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
        # Prompt tuning prepends virtual tokens: the last T positions are the real ones. Position t
        # predicts token t + 1; shifting the labels rather than the logits avoids copying (B, T, V).
        logits = logits[:, -ids.size(1) :]
        targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE,
                               label_smoothing=smoothing)

    return loss



def finetune_step(learner: Learner, model: nn.Module, method: str, cfg: FinetuneTrainConfig, step: int,
                  micro_batch: Callable[[int], Batch], loss_fn: LossFn) -> dict[str, float]:
    """One optimizer step of a fine-tune (any head), with its loss averaged over ranks."""
    # AdaLoRA re-allocates ranks from the stepped weights' gradients, before they are cleared.
    reallocate = (lambda: model.base_model.update_and_allocate(step)) if method == "adalora" else None
    loss = gradient_step(learner, micro_batch, loss_fn, cfg.grad_accum, cfg.grad_clip, before_zero_grad=reallocate)
    samples = cfg.grad_accum * cfg.batch_size * learner.ctx.world_size
    return {"loss": mean_across_ranks(loss, learner.ctx), "samples": samples}


def val_sample(rows: Sequence[Any], cfg: FinetuneTrainConfig, seed: int) -> list[list[Any]]:
    """A fixed, seeded sample of the validation rows in evaluation batches (files are often sorted by label)."""
    size = cfg.eval_batch_size or cfg.batch_size
    order = np.random.default_rng(seed).permutation(len(rows))[: size * cfg.eval_batches]
    picked = [rows[i] for i in sorted(order)]
    return [picked[i : i + size] for i in range(0, len(picked), size)]

class FinetuneTask:
    """Fine-tuning as a `Task`: causal-LM loss on labelled tokens, or classification loss."""

    def __init__(self, recipe: FinetuneRecipe, model: nn.Module, tokenizer, train_rows: list, val_rows: list,
                 ctx: DistributedContext, device: torch.device):
        cfg = self.cfg = recipe.train
        self.recipe, self.tokenizer = recipe, tokenizer
        self.model = model.to(device)
        self.model.train()
        self.optimizers = build_optimizers(self.model, cfg, device)  # AdamW; decay on the trained matrices
        torch.manual_seed(recipe.seed + ctx.rank)
        self.learner = Learner(self.model, wrap_model(self.model, ctx, device, cfg.compile), self.optimizers,
                               Amp.resolve(device, cfg.precision), ctx)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self.train_rows, self.val_rows = train_rows, val_rows
        self.sampler = ExampleSampler(len(train_rows), cfg.batch_size, cfg.grad_accum, recipe.seed, ctx.rank,
                                      ctx.world_size)
        self.classify = recipe.task == "classify"
        self.loss_fn = finetune_loss(self.classify, recipe.label_smoothing)

    def _batch(self, rows: list) -> Batch:
        if self.classify:
            ids, mask, _ = pad_batch([(ids, []) for ids, _ in rows], self.pad_id)
            return ids, mask, torch.tensor([label for _, label in rows])
        return pad_batch(rows, self.pad_id)

    def micro_batch(self, step: int, micro: int) -> Batch:
        return self._batch([self.train_rows[i] for i in self.sampler.indices(step, micro)])

    def train_step(self, step: int) -> dict[str, float]:
        return finetune_step(self.learner, self.model, self.recipe.method.name, self.cfg, step,
                             lambda micro: self.micro_batch(step, micro), self.loss_fn)

    def val_batches(self) -> list[Batch]:
        return [self._batch(rows) for rows in val_sample(self.val_rows, self.cfg, self.recipe.seed)]

    def evaluate(self) -> dict[str, float]:
        batches = self.val_batches()
        val = mean_eval_loss(self.learner, batches, self.loss_fn)
        metrics = {"val_loss": val}
        if self.classify:
            predicted = predict_batches(self.model, [to_device(b, self.learner.device) for b in batches])
            gold = torch.cat([b[2] for b in batches])
            metrics["val_accuracy"] = float((predicted.cpu() == gold).float().mean())
        else:
            metrics["val_ppl"] = math.exp(min(val, 50.0))
        return metrics

    def log_samples(self, logger: RunLogger, step: int) -> None:
        if self.classify or self.recipe.method.name in ("prefix", "prompt"):
            return

        sample = self.recipe.sample
        generator = HFGenerator(self.model, self.tokenizer)
        config = GenerationConfig(max_new_tokens=sample.max_new_tokens, temperature=sample.temperature, seed=step)
        logger.text("samples", sample.prompt + generator.generate([sample.prompt], config)[0].text, step)
        self.model.train()

    def extra_state(self) -> dict[str, Any]:
        return self.learner.amp.state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.learner.amp.load_state(state)


@torch.no_grad()
def predict_batches(model: nn.Module, batches: list[Batch]) -> torch.Tensor:
    was_training = model.training
    model.eval()
    predicted = torch.cat([model(input_ids=ids, attention_mask=mask).logits.argmax(-1) for ids, mask, *_ in batches])
    model.train(was_training)
    return predicted


def finetune(recipe: FinetuneRecipe, resume: bool = False, callbacks: Sequence[Callback] = ()) -> TrainState:
    """Run a fine-tuning recipe end to end and save its adapter (or full model); ``callbacks`` go to `fit`."""
    set_threads(recipe.train.num_threads)
    device = resolve_device(recipe.train.device)
    ctx = init_distributed(device)
    run_dir = Path(recipe.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(recipe.seed)
    label_names = resolve_label_names(recipe)
    model, tokenizer = build_model(recipe, run_dir, label_names)
    train_rows, val_rows = load_rows(recipe, tokenizer, label_names)
    if ctx.is_main:
        resolved = recipe.model_copy(update={"data": recipe.data.model_copy(update={"label_names": label_names})})
        dump_config(resolved, run_dir / CONFIG_FILE)
    task = FinetuneTask(recipe, model, tokenizer, train_rows, val_rows, ctx, device)
    state = fit(task, recipe.train, run_dir, ctx, resume=resume, callbacks=callbacks)
    if ctx.is_main and state.stop_reason != "signal":
        save_outputs(task, run_dir)
    return state


def resolve_label_names(recipe: FinetuneRecipe) -> list[str] | None:
    if recipe.task != "classify":
        return None
    if recipe.data.label_names:
        return list(recipe.data.label_names)
    return sorted({label for _, label in read_labelled(recipe.data.train, recipe.data)})


def save_outputs(task: FinetuneTask, run_dir: Path) -> Path:
    """The best weights as an adapter directory (peft) or a full Hugging Face directory."""
    load_weights(task.model, run_dir / WEIGHTS_FILE)
    target = run_dir / (FULL_DIR if task.recipe.method.name == "full" else ADAPTER_DIR)
    with atomic_directory(target) as tmp:
        task.model.save_pretrained(tmp)
        task.tokenizer.save_pretrained(tmp)
    return target


def check_data(recipe: FinetuneRecipe) -> str:
    """``luoxia finetune --check``: validate the data files and render two examples (what the model
    will see, and which parts carry the loss), without loading weights or training."""
    from collections import Counter

    from transformers import AutoTokenizer

    data = recipe.data
    base_dir(Path(recipe.out_dir), recipe.base_model)  # a missing base fails here, in one line
    lines = [f"base model: {recipe.base_model}; method: {recipe.method.name}; task: {recipe.task}"]
    if recipe.task == "classify":
        for path in filter(None, [data.train, data.val]):
            pairs = read_labelled(path, data)
            counts = Counter(label for _, label in pairs)
            lines.append(f"{path}: {len(pairs)} examples; labels {dict(sorted(counts.items()))}")
            lines += [f"  [{label}] {text}" for text, label in pairs[:2]]
        return "\n".join(lines)

    tokenizer_dir = base_model_dir(recipe.base_model, Path(recipe.out_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    for path in filter(None, [data.train, data.val]):
        lines.append(f"{path}: valid; two examples (the loss is on the marked parts):")
        lines.append(preview(resolve_data_path(path), data.format, tokenizer, n=2))
    return "\n".join(lines)
