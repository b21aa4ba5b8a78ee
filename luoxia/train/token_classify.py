"""Token classification (``task: token_classify``): fine-tune a tagger on IOB2 data, full or through
a peft method (LoRA on the encoder, the new head always trained), with the shared loop — checkpoints,
exact resume, TensorBoard and callbacks come with it.

``luoxia finetune configs/finetune/ner_zh_uner.yaml``; ``luoxia eval --model RUN`` scores it with
seqeval; ``luoxia.load(RUN).tag(["张三住在北京"])`` gives spans. Every sub-token is labelled (see
`luoxia.data.iob`): the tagger reads raw text, where Chinese marks no word boundaries.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from luoxia.config import Config, dump_config
from luoxia.data.instruct import IGNORE
from luoxia.data.iob import TaggedSentence, align_labels, bio_spans, label_names, read_iob
from luoxia.errors import ConfigError, DataError
from luoxia.generate.tagger import load_token_classifier
from luoxia.runs import CONFIG_FILE, base_dir
from luoxia.runtime import DistributedContext, init_distributed, resolve_device, seed_everything, set_threads
from luoxia.train.finetune import (
    FinetuneTrainConfig,
    MethodConfig,
    base_model_dir,
    check_fits_context,
    finetune_step,
    pad_batch,
    save_outputs,
    val_sample,
)
from luoxia.train.logging import RunLogger
from luoxia.train.loop import Callback, TrainState, fit
from luoxia.train.optim import build_optimizers
from luoxia.train.task import (
    Amp,
    Batch,
    ExampleSampler,
    Learner,
    mean_eval_loss,
    to_device,
    wrap_model,
)

HEAD_MODULES = ["classifier", "score"]  # the token-classification head's name in BERT/GPT-2 and in Llama-likes
Row = tuple[list[int], list[int]]  # (input_ids, one label id per sub-token; IGNORE on special tokens)


class TaggingData(Config):
    """IOB2 / CoNLL files (``index<TAB>token<TAB>tag`` or ``token<TAB>tag``, blank line between sentences)."""

    train: str = Field(..., description="IOB2 training file")
    val: str | None = Field(None, description="IOB2 validation file (default: a seeded share of train)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out when val is not given")
    label_names: list[str] | None = Field(None, description="IOB2 tags in label order (default: from train)")
    max_length: int = Field(256, gt=2, description="sub-tokens per sentence in training, per window in tagging")
    extend_vocab: bool = Field(False, description="add the training words' characters that the base tokenizer "
                                                  "reads as unknown as new tokens (their embeddings train)")


class TokenClassifyRecipe(Config):
    """A token-classification run: a base model, IOB2 data, a method and the shared loop."""

    task: Literal["token_classify"] = Field("token_classify", description="token_classify")
    base_model: str = Field(..., description="a local Hugging Face directory, a bundled model (minilm) or a run")
    out_dir: str = Field("runs/tagger", description="run directory")
    seed: int = Field(1337, description="seed for data order, head initialisation and dropout")
    data: TaggingData
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: FinetuneTrainConfig = Field(default_factory=FinetuneTrainConfig)

    @model_validator(mode="after")
    def _check(self) -> TokenClassifyRecipe:
        if self.method.name in ("prefix", "prompt"):
            raise ValueError("a tagger labels every input position; prefix/prompt tuning add virtual ones: "
                             "use full, lora, adalora or ia3")
        if self.train.sample_interval:
            raise ValueError("a tagger draws no samples: remove train.sample_interval")
        return self


# Data and model -------------------------------------------------------------------------------
def split_sentences(train: list[TaggedSentence], val: list[TaggedSentence] | None, fraction: float,
                    seed: int) -> tuple[list[TaggedSentence], list[TaggedSentence]]:
    if val is not None:
        return train, val
    if len(train) < 2:
        raise ConfigError("need at least two sentences to hold one out for validation (or give data.val)")
    held = set(np.random.default_rng(seed).permutation(len(train))[: max(1, round(len(train) * fraction))].tolist())
    return [s for i, s in enumerate(train) if i not in held], [s for i, s in enumerate(train) if i in held]


def unknown_characters(sentences: Sequence[TaggedSentence], tokenizer) -> list[str]:
    """The wide (CJK) characters of the words that the tokenizer reads as its unknown token, sorted.
    Only wide ones: a BERT-style tokenizer reads them one at a time, so adding one changes no other
    word's tokens (an added Latin letter would split every English word that holds it)."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return []
    chars = sorted({char for sentence in sentences for word in sentence.words for char in word
                    if unicodedata.east_asian_width(char) in ("W", "F")})
    return [char for char in chars if tokenizer(char, add_special_tokens=False)["input_ids"] == [unk]]


def encode_sentences(sentences: Sequence[TaggedSentence], tokenizer, names: list[str], max_length: int) -> list[Row]:
    """Sub-token ids and aligned labels (`align_labels`), cut at ``max_length``."""
    ids = {name: i for i, name in enumerate(names)}
    for sentence in sentences:
        unknown = sorted(set(sentence.tags) - set(ids))
        if unknown:
            raise DataError(f"{sentence.origin}: tag {unknown[0]} is not in data.label_names ({', '.join(names)})")
    encoding = tokenizer([s.words for s in sentences], is_split_into_words=True, truncation=True,
                         max_length=max_length)
    return [(list(encoding["input_ids"][i]), align_labels(encoding.word_ids(i), s.tags, ids))
            for i, s in enumerate(sentences)]


def embedding_module_name(model: nn.Module) -> str:
    """The last name of the input-embedding module (``word_embeddings`` in BERT, ``wte`` in GPT-2)."""
    embeddings = model.get_input_embeddings()
    return next(name.rsplit(".", 1)[-1] for name, module in model.named_modules() if module is embeddings)


def tagger_peft_config(method: MethodConfig, total_steps: int, extra_trained: list[str]):
    """The peft config of a token classifier (None for full fine-tuning); peft keeps the new head
    trainable, and ``extra_trained`` modules (grown embeddings) too."""
    import peft

    common: dict[str, Any] = {"task_type": peft.TaskType.TOKEN_CLS, "modules_to_save": extra_trained or None}
    # "all-linear" would adapt the new head too, which peft already trains whole (modules_to_save)
    adapted = {"target_modules": method.target_modules, "exclude_modules": HEAD_MODULES} if method.target_modules \
        else {}
    if method.name == "lora":
        return peft.LoraConfig(r=method.r, lora_alpha=method.alpha, lora_dropout=method.dropout, **adapted, **common)
    if method.name == "adalora":
        return peft.AdaLoraConfig(target_r=method.r, init_r=2 * method.r, lora_alpha=method.alpha,
                                  lora_dropout=method.dropout, total_step=total_steps, **adapted, **common)
    if method.name == "ia3":
        return peft.IA3Config(**common)
    return None


def build_tagger(recipe: TokenClassifyRecipe, run_dir: Path, names: list[str], train: list[TaggedSentence]):
    """The base with a fresh head for ``names``, its tokenizer grown by `unknown_characters` when
    ``data.extend_vocab``, and the peft wrapping."""
    model, tokenizer = load_token_classifier(base_model_dir(recipe.base_model, run_dir), names, "cpu")
    check_fits_context(recipe, model.config)  # type: ignore[arg-type]  # reads data.max_length and method only
    extra: list[str] = []
    if recipe.data.extend_vocab:
        added = tokenizer.add_tokens(unknown_characters(train, tokenizer))
        if added:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
            extra = [embedding_module_name(model)]
    config = tagger_peft_config(recipe.method, recipe.train.max_steps, extra)
    if config is None:
        return model, tokenizer
    import peft

    return peft.get_peft_model(model, config), tokenizer


# Task -----------------------------------------------------------------------------------------
def tagging_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    ids, mask, labels = batch
    logits = model(input_ids=ids, attention_mask=mask).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)


class TokenClassifyTask:
    """Token classification as a `Task`: cross-entropy on every labelled sub-token; validation adds
    sub-token accuracy and seqeval's entity F1 over sub-token tags."""

    def __init__(self, recipe: TokenClassifyRecipe, model: nn.Module, tokenizer, names: list[str],
                 train_rows: list[Row], val_rows: list[Row], ctx: DistributedContext, device: torch.device):
        cfg = self.cfg = recipe.train
        self.recipe, self.tokenizer, self.names = recipe, tokenizer, names
        self.model = model.to(device)
        self.model.train()
        self.optimizers = build_optimizers(self.model, cfg, device)
        torch.manual_seed(recipe.seed + ctx.rank)
        self.learner = Learner(self.model, wrap_model(self.model, ctx, device, cfg.compile), self.optimizers,
                               Amp.resolve(device, cfg.precision), ctx)
        self.pad_id = tokenizer.pad_token_id or 0
        self.train_rows, self.val_rows = train_rows, val_rows
        self.sampler = ExampleSampler(len(train_rows), cfg.batch_size, cfg.grad_accum, recipe.seed, ctx.rank,
                                      ctx.world_size)

    def train_step(self, step: int) -> dict[str, float]:
        def micro_batch(micro: int) -> Batch:
            return pad_batch([self.train_rows[i] for i in self.sampler.indices(step, micro)], self.pad_id)

        return finetune_step(self.learner, self.model, self.recipe.method.name, self.cfg, step, micro_batch,
                             tagging_loss)

    def val_batches(self) -> list[Batch]:
        return [pad_batch(rows, self.pad_id) for rows in val_sample(self.val_rows, self.cfg, self.recipe.seed)]

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        from seqeval.metrics import f1_score  # small, but only needed here

        batches = self.val_batches()
        metrics = {"val_loss": mean_eval_loss(self.learner, batches, tagging_loss)}
        self.model.eval()
        gold, predicted = [], []
        for batch in batches:
            ids, mask, labels = to_device(batch, self.learner.device)
            best = self.model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
            for row_labels, row_best in zip(labels.tolist(), best.tolist(), strict=True):
                kept = [(g, p) for g, p in zip(row_labels, row_best, strict=True) if g != IGNORE]
                gold.append([self.names[g] for g, _ in kept])
                predicted.append([self.names[p] for _, p in kept])
        self.model.train()
        right = sum(g == p for row_g, row_p in zip(gold, predicted, strict=True)
                    for g, p in zip(row_g, row_p, strict=True))
        metrics["val_accuracy"] = right / max(1, sum(map(len, gold)))
        metrics["val_f1"] = float(f1_score(gold, predicted, zero_division=0))
        return metrics

    def log_samples(self, logger: RunLogger, step: int) -> None:
        return None

    def extra_state(self) -> dict[str, Any]:
        return self.learner.amp.state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.learner.amp.load_state(state)


def finetune_tagger(recipe: TokenClassifyRecipe, resume: bool = False,
                    callbacks: Sequence[Callback] = ()) -> TrainState:
    """Run a token-classification recipe end to end and save its adapter (or full model) with its tokenizer."""
    set_threads(recipe.train.num_threads)
    device = resolve_device(recipe.train.device)
    ctx = init_distributed(device)
    run_dir = Path(recipe.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(recipe.seed)
    data = recipe.data
    train, val = split_sentences(read_iob(data.train), read_iob(data.val) if data.val else None,
                                 data.val_fraction, recipe.seed)
    names = list(data.label_names) if data.label_names else label_names(train)
    model, tokenizer = build_tagger(recipe, run_dir, names, train)
    train_rows = encode_sentences(train, tokenizer, names, data.max_length)
    val_rows = encode_sentences(val, tokenizer, names, data.max_length)
    if ctx.is_main:
        dump_config(recipe.model_copy(update={"data": data.model_copy(update={"label_names": names})}),
                    run_dir / CONFIG_FILE)
    task = TokenClassifyTask(recipe, model, tokenizer, names, train_rows, val_rows, ctx, device)
    state = fit(task, recipe.train, run_dir, ctx, resume=resume, callbacks=callbacks)
    if ctx.is_main and state.stop_reason != "signal":
        save_outputs(task, run_dir)  # type: ignore[arg-type]  # reads model, tokenizer and recipe.method only
    return state


def check_tagging_data(recipe: TokenClassifyRecipe) -> str:
    """``luoxia finetune --check`` for a tagger: read the IOB2 files, count sentences and entities per
    type, and show two sentences that hold entities — without loading weights or training."""
    base_dir(Path(recipe.out_dir), recipe.base_model)  # a missing base fails here, in one line
    lines = [f"base model: {recipe.base_model}; method: {recipe.method.name}; task: {recipe.task}"]
    for path in filter(None, [recipe.data.train, recipe.data.val]):
        sentences = read_iob(path)
        counts = Counter(kind for s in sentences for kind, _, _ in bio_spans(s.tags))
        lines.append(f"{path}: {len(sentences)} sentences; entities {dict(sorted(counts.items()))}")
        shown = [s for s in sentences if any(tag != "O" for tag in s.tags)][:2] or sentences[:2]
        for s in shown:
            entities = ", ".join(f"{kind}: {''.join(s.words[a:b]) if s.text else ' '.join(s.words[a:b])}"
                                 for kind, a, b in bio_spans(s.tags))
            lines.append(f"  {s.text or ' '.join(s.words)}  [{entities}]")
    return "\n".join(lines)
