"""Every model family, by the ``task`` its recipes and runs carry (and, where a task has several, the
recipe's ``model.family``): the one place that decides which code handles a run.

A `Family` names its recipe class (how ``configs/*.yaml`` validate), its train function (what
``luoxia train`` / ``luoxia finetune`` run) and its load function (what ``luoxia.load(run)`` returns).
The CLI, `luoxia.load`, the server and the evaluation commands look families up here, never by
comparing task names themselves. Adding a family is one module under ``train/`` (recipe and train
function; its loader under ``generate/`` if it generates) plus one line in `FAMILIES`.

Layering: this module points at ``train/`` and ``generate/`` and sits below evaluate, safety, serve
and the CLI. ``transformers`` and ``peft`` stay unimported until a loader or trainer needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from luoxia.config import Config, build_config, load_config, parse_override, read_yaml, resolve_recipe
from luoxia.errors import CheckpointError, ConfigError
from luoxia.generate.hf import load_hf
from luoxia.generate.image import load_image_model
from luoxia.generate.interface import ImageGenerator, TextGenerator
from luoxia.generate.load import load_finetuned_run, load_lm_run
from luoxia.generate.mlm import load_mlm_run
from luoxia.generate.openai_backend import OpenAIBackendConfig, OpenAIGenerator, is_openai_spec, parse_openai_spec
from luoxia.generate.rnn import load_rnn_run
from luoxia.generate.tagger import Tagger, load_tagger_run
from luoxia.runs import CONFIG_FILE, HF_CONFIG_FILE, TRAIN_HINT, is_hf_dir, is_run_dir, require_path, run_recipe
from luoxia.train.finetune import FinetuneRecipe, finetune
from luoxia.train.image import ClassifierRecipe, DDPMRecipe, GANRecipe, ImageRecipe, VAERecipe, train_image
from luoxia.train.lm import LMRecipe, train_lm
from luoxia.train.mlm import MLMRecipe, train_mlm
from luoxia.train.moderation import ModerationRecipe, train_moderation
from luoxia.train.rnn import RNNRecipe, train_rnn
from luoxia.train.token_classify import TokenClassifyRecipe, finetune_tagger

Generator = TextGenerator | ImageGenerator | Tagger  # what `load` returns: a tagger generates spans, not text
# (run directory, its recipe, device, compile) → a ready generator (or tagger)
Loader = Callable[[Path, dict[str, Any], str, bool], Generator]


@dataclass(frozen=True)
class Family:
    """What Luoxia knows about one ``task`` (or one ``model.family`` within it)."""

    task: str
    title: str  # what its runs are, in a sentence: "a digit classifier"
    command: Literal["train", "finetune"]  # the CLI command that trains it
    recipe: type[Config]
    train: Callable[..., Any]  # (recipe, resume=False, ...) → TrainState or a report
    load: Loader | None = None  # None: its runs generate nothing
    output: Literal["text", "image", "spans"] | None = None  # what its loader generates
    uses: str = ""  # for a family that generates nothing: what its runs are for
    masks_data: bool = False  # its train function takes ``mask`` for ``data.redact_pii``
    served: bool = True  # False: `luoxia serve` refuses its runs, giving ``uses`` as the reason
    model: str = ""  # its recipes' ``model.family`` when a task has several ("" when it has one)

    @property
    def name(self) -> str:
        """Its key in `FAMILIES`: the task, or ``task/model`` for a task's second and later families."""
        first = next((found for found in _ORDER if found.task == self.task), self)
        return self.task if first is self else f"{self.task}/{self.model}"


def _image(task: str, title: str, recipe: type[ImageRecipe]) -> Family:
    """An image generator family: the loader builds the recipe's module from the run's ``model`` section."""
    config_class = recipe.model_fields["model"].annotation
    assert isinstance(config_class, type) and issubclass(config_class, Config), recipe
    loader = partial(load_image_model, module=recipe.module, config_class=config_class)
    return Family(task, title, "train", recipe, train_image, loader, "image")


# One line per family; a task's first line is its default family (``lm``: the GPT).
_ORDER: list[Family] = [
    Family("lm", "a language model pre-training", "train", LMRecipe, train_lm, load_lm_run, "text", masks_data=True,
           model="gpt"),
    Family("lm", "an LSTM/GRU language model pre-training", "train", RNNRecipe, train_rnn, load_rnn_run, "text",
           masks_data=True, model="rnn"),
    Family("mlm", "a masked language model (BERT-style) pre-training", "train", MLMRecipe, train_mlm, load_mlm_run,
           "text", masks_data=True, served=False,
           uses="it fills [MASK]s (luoxia fill-mask) and writes fixed-length text by mask-predict (luoxia generate); "
                "the server's chat, stop strings and streaming need a left-to-right model"),
    Family("finetune", "a fine-tuning", "finetune", FinetuneRecipe, finetune, load_finetuned_run, "text"),
    Family("classify", "a text classifier fine-tuning", "finetune", FinetuneRecipe, finetune, load_finetuned_run,
           "text"),
    Family("token_classify", "a token classifier (tagger) fine-tuning", "finetune", TokenClassifyRecipe,
           finetune_tagger, load_tagger_run, "spans"),
    _image("vae", "a variational autoencoder", VAERecipe),
    _image("ddpm", "a diffusion model", DDPMRecipe),
    _image("gan", "a GAN", GANRecipe),
    Family("classifier", "a digit classifier", "train", ClassifierRecipe, train_image,
           uses="it measures image models: luoxia eval-image --model RUN --classifier {path}"),
    Family("moderation", "a moderation classifier", "train", ModerationRecipe, train_moderation,
           uses="it is the learned layer of `luoxia moderate`"),
]
FAMILIES: dict[str, Family] = {found.name: found for found in _ORDER}


def family(task: str, model: str | None = None) -> Family:
    """The family of ``task`` whose recipes say ``model.family: model`` (None: the task's default)."""
    found = [entry for entry in _ORDER if entry.task == task]
    if not found:
        raise ConfigError(f"unknown task '{task}'; valid: {', '.join(tasks())}")
    if model is None or not found[0].model:  # a task with one family takes no model.family
        return found[0]
    for entry in found:
        if entry.model == model:
            return entry
    raise ConfigError(f"unknown model.family '{model}' for task '{task}'; valid: "
                      f"{', '.join(entry.model for entry in found)}")


def recipe_family(recipe: dict[str, Any] | Config) -> Family:
    """The family of a recipe (a validated one or its YAML dict): its ``task`` (``lm`` when it has
    none) and ``model.family`` (the task's default when it has none)."""
    data = recipe.model_dump() if isinstance(recipe, Config) else recipe
    model = data.get("model")
    name = model.get("family") if isinstance(model, dict) else None
    return family(str(data.get("task", "lm")), None if name is None else str(name))


def tasks(command: str | None = None) -> tuple[str, ...]:
    """The tasks a CLI command trains (``train`` or ``finetune``; None: every task), each once."""
    found = [entry.task for entry in _ORDER if command is None or entry.command == command]
    return tuple(dict.fromkeys(found))


def run_family(run_dir: str | Path) -> Family:
    """The family of a run directory, by its recipe (see `recipe_family`)."""
    return recipe_family(run_recipe(run_dir))


def load_recipe(path: str | Path, overrides: list[str] | None = None, allowed: tuple[str, ...] | None = None) -> Config:
    """Any recipe (or a run directory's), validated into its family's class; ``allowed`` limits the
    tasks a command accepts."""
    path = Path(path) / CONFIG_FILE if is_run_dir(path) else resolve_recipe(str(path))  # a run: its recipe
    raw = read_yaml(path)
    task = raw.get("task", "lm")
    valid = [name for name in tasks() if allowed is None or name in allowed]
    if task not in valid:
        raise ConfigError(f"{path}: task '{task}' is not one this command runs; valid: {', '.join(valid)}")
    chosen = [value for key, value in map(parse_override, overrides or []) if key == "model.family"]
    model = chosen[-1] if chosen else raw["model"].get("family") if isinstance(raw.get("model"), dict) else None
    try:
        found = family(task, None if model is None else str(model))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return load_config(found.recipe, path, overrides or [])


def load(path: str | Path, device: str = "auto", compile: bool = False) -> Generator:
    """A Luoxia run directory or a local Hugging Face model directory as a text generator —
    ``luoxia.load("runs/tiny").generate("Hello")`` — or, for an image run, an image generator —
    ``luoxia.load("runs/vae").generate("7", n=16)``; a token-classification run as a `Tagger` —
    ``luoxia.load("runs/ner").tag(["张三住在北京"])`` → ``[[("PER", 0, 2), ("LOC", 4, 6)]]``; and
    ``openai:BASE_URL#MODEL`` as a model on any OpenAI-compatible server (`OpenAIGenerator`; the key
    from ``$OPENAI_API_KEY``) — ``luoxia.load("openai:http://127.0.0.1:8000/v1#demo-pydoc")``.
    ``compile`` compiles a Luoxia GPT's decode step (an LSTM/GRU run ignores it)
    (`luoxia.generate.text.compile_step`): faster generation after a first call that takes seconds.
    A path that does not exist is an error, never a Hugging Face hub name."""
    if is_openai_spec(str(path)):
        return OpenAIGenerator(parse_openai_spec(str(path)))
    path = require_path(path)
    if is_run_dir(path):
        recipe = run_recipe(path)
        found = recipe_family(recipe)
        if found.load is None:
            uses = f"; {found.uses.format(path=path)}" if found.uses else ""
            raise ConfigError(f"{path}: {found.title} run, which generates nothing{uses}")
        return found.load(path, recipe, device, compile)
    if not is_hf_dir(path):
        raise CheckpointError(f"{path}: not a Luoxia run directory (no {CONFIG_FILE}) nor a Hugging Face model "
                              f"directory (no {HF_CONFIG_FILE}); {TRAIN_HINT}")
    return load_hf(path, device)


WriterSpec = str | OpenAIBackendConfig  # an application's ``writer:``: a run path, "openai:URL#MODEL" or the block


def load_writer(spec: WriterSpec | dict[str, Any], device: str = "auto") -> TextGenerator:
    """An application's writer model: a run or Hugging Face directory, an ``openai:BASE_URL#MODEL``
    string, or an `OpenAIBackendConfig` (or its YAML block as a dict); one-line errors otherwise."""
    if isinstance(spec, dict):
        spec = build_config(OpenAIBackendConfig, spec, source="writer:")
    if isinstance(spec, OpenAIBackendConfig):
        return OpenAIGenerator(spec)
    if not isinstance(spec, str | Path) or not str(spec):
        raise ConfigError(f"writer: expected a run path, openai:BASE_URL#MODEL or a block with base_url and model, "
                          f"not {spec!r}")
    found = load(spec, device)
    if not isinstance(found, TextGenerator):
        raise ConfigError(f"writer: {spec} is not a text model")
    return found
