"""``luoxia.load(path)``: a run directory (pre-training or fine-tuning) or a local Hugging Face model
directory in, a ready `TextGenerator` out."""

from __future__ import annotations

from pathlib import Path

import yaml

from luoxia.checkpoint import MODEL_FILE, latest_checkpoint, load_weights, verify_checkpoint
from luoxia.config import build_config
from luoxia.data.tokenizer import TextTokenizer
from luoxia.encoders.bundled import model_path
from luoxia.errors import CheckpointError, ConfigError
from luoxia.generate.interface import ImageGenerator, TextGenerator
from luoxia.generate.text import GPTGenerator
from luoxia.models.gpt import GPT, GPTConfig
from luoxia.runtime import resolve_device

RUN_CONFIG = "config.yaml"
# What a fine-tuning run leaves: the base in HF format (for a Luoxia base), an adapter or a full model.
BASE_DIR, ADAPTER_DIR, FULL_DIR = "base", "adapter", "hf"
MERGEABLE_METHODS = ("lora", "adalora", "ia3")


def run_recipe(run_dir: str | Path) -> dict:
    """The resolved recipe a run directory was trained with."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a Luoxia run directory (no {RUN_CONFIG})")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def run_weights(run_dir: Path) -> Path:
    """The run's best weights, or those of its latest checkpoint if it never got to save them."""
    if (run_dir / MODEL_FILE).is_file():
        return run_dir / MODEL_FILE
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise CheckpointError(f"{run_dir}: the run has no weights yet (no {MODEL_FILE}, no checkpoint)")
    verify_checkpoint(checkpoint)
    return checkpoint / MODEL_FILE


def load_gpt(run_dir: str | Path, device: str = "auto") -> tuple[GPT, TextTokenizer]:
    """The trained GPT of a run directory (in eval mode) and its tokenizer."""
    run_dir = Path(run_dir)
    recipe = run_recipe(run_dir)
    config = build_config(GPTConfig, recipe.get("model", {}), source=str(run_dir / RUN_CONFIG))
    model = GPT(config)
    load_weights(model, run_weights(run_dir))
    model.to(resolve_device(device)).eval()
    return model, TextTokenizer.load(run_dir)


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RUN_CONFIG).is_file()


def load(path: str | Path, device: str = "auto", compile: bool = False) -> TextGenerator | ImageGenerator:
    """A Luoxia run directory or a local Hugging Face model directory as a text generator —
    ``luoxia.load("runs/tiny").generate("Hello")`` — or, for an image run, an image generator —
    ``luoxia.load("runs/vae").generate("7", n=16)``. ``compile`` compiles a Luoxia GPT's decode step
    (`luoxia.generate.text.compile_step`): faster generation after a first call that takes seconds."""
    task = run_recipe(path).get("task", "lm") if is_run_dir(path) else None
    if task == "lm":
        model, tokenizer = load_gpt(path, device)
        return GPTGenerator(model, tokenizer, name=Path(path).name, compile=compile)
    from luoxia.generate.image import IMAGE_FAMILIES, load_image_model

    if task in IMAGE_FAMILIES:
        return load_image_model(path, run_recipe(path), device)
    if task == "classifier":
        raise ConfigError(f"{path}: a digit classifier run, which generates nothing; it measures image models: "
                          f"luoxia eval-image --model RUN --classifier {path}")
    from luoxia.generate.hf import HFGenerator

    if is_run_dir(path):
        model, tokenizer = load_finetuned(path, device)
        return HFGenerator(model, tokenizer, name=Path(path).name)
    if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
        raise CheckpointError(f"{path}: not a Luoxia run directory (no {RUN_CONFIG}) "
                              "nor a Hugging Face model directory (no config.json)")
    from luoxia.generate.hf import load_hf  # transformers is only imported when needed

    return load_hf(path, device)


def load_tokenizer(path: str | Path):
    """Only the tokenizer of a model (``encode``/``decode``): a pre-training run's or a prepared data
    directory's ``tokenizer.json``, a fine-tuning run's, or a Hugging Face model directory's. Cheap:
    no weights are read."""
    path = Path(path)
    pretraining_run = is_run_dir(path) and run_recipe(path).get("task", "lm") == "lm"
    data_dir = (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file()
    if pretraining_run or data_dir:
        return TextTokenizer.load(path)
    if is_run_dir(path):
        path = path / (FULL_DIR if (path / FULL_DIR).is_dir() else ADAPTER_DIR)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such directory (expected a run, a data directory or a Hugging Face model)")
    from transformers import AutoTokenizer

    from luoxia.generate.hf import HFTokenizer

    try:
        return HFTokenizer(AutoTokenizer.from_pretrained(str(path), local_files_only=True))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: no tokenizer found ({str(error).splitlines()[0]})") from None


def base_dir_of(run_dir: Path, recipe: dict) -> Path:
    """Where a fine-tuning run's base model lives in Hugging Face format."""
    return run_dir / BASE_DIR if is_run_dir(recipe["base_model"]) else model_path(recipe["base_model"])


def load_finetuned(run_dir: str | Path, device: str = "auto", merge: bool = True):
    """A fine-tuning run's model (adapter applied, merged when the method allows and ``merge``) and
    its tokenizer; with a classification head for ``task: classify`` runs."""
    from luoxia.generate.hf import load_hf_model

    run_dir = Path(run_dir)
    recipe = run_recipe(run_dir)
    model_class, options = None, {}
    if recipe.get("task") == "classify":
        from transformers import AutoModelForSequenceClassification

        names = recipe["data"]["label_names"]
        model_class, options = AutoModelForSequenceClassification, dict(
            num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    if (run_dir / FULL_DIR).is_dir():
        return load_hf_model(run_dir / FULL_DIR, device, model_class, **options)
    if not (run_dir / ADAPTER_DIR).is_dir():
        raise CheckpointError(f"{run_dir}: the fine-tuning run has no {ADAPTER_DIR}/ or {FULL_DIR}/ yet (unfinished?)")
    from peft import PeftModel

    base, _ = load_hf_model(base_dir_of(run_dir, recipe), device, model_class, **options)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / ADAPTER_DIR), local_files_only=True)
    if recipe.get("task") == "classify":
        base.config.pad_token_id = tokenizer.pad_token_id
    model = PeftModel.from_pretrained(base, str(run_dir / ADAPTER_DIR)).eval()
    method = recipe.get("method", {}).get("name", "lora")
    if method in MERGEABLE_METHODS:
        return (model.merge_and_unload() if merge else model).eval(), tokenizer
    if recipe.get("task") != "classify":
        raise ConfigError(f"{run_dir}: generation from a {method}-tuned model is not supported yet "
                          f"(virtual tokens); use one of {', '.join(MERGEABLE_METHODS)} or full fine-tuning")
    return model, tokenizer
