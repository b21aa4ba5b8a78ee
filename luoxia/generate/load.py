"""Text generators from disk: a pre-training run's GPT, a fine-tuning run's model (adapter applied),
and the tokenizer of any of them. Which loader a run needs is `luoxia.registry`'s decision;
``luoxia.load(path)`` (`luoxia.registry.load`) is the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from luoxia.data.tokenizer import TextTokenizer
from luoxia.errors import CheckpointError, ConfigError
from luoxia.generate.hf import HFGenerator, HFModel, HFTokenizer, HFTokenizerLike, load_hf_model
from luoxia.generate.text import GPTGenerator
from luoxia.models.gpt import GPT, GPTConfig
from luoxia.runs import (
    ADAPTER_DIR,
    FULL_DIR,
    TOKENIZER_FILE,
    base_dir,
    finetuned_dir,
    is_run_dir,
    load_run_module,
    require_path,
    run_recipe,
)
from luoxia.runtime import resolve_device

MERGEABLE_METHODS = ("lora", "adalora", "ia3")


def load_gpt(run_dir: str | Path, device: str = "auto") -> tuple[GPT, TextTokenizer]:
    """The trained GPT of a run directory (in eval mode) and its tokenizer."""
    model = load_run_module(run_dir, GPT, GPTConfig)
    model.to(resolve_device(device)).eval()
    return model, TextTokenizer.load(run_dir)


def load_lm_run(run_dir: Path, recipe: dict[str, Any], device: str = "auto", compile: bool = False) -> GPTGenerator:
    """A pre-training (or imported) run as a `TextGenerator`; ``compile`` compiles its decode step."""
    model, tokenizer = load_gpt(run_dir, device)
    return GPTGenerator(model, tokenizer, name=Path(run_dir).name, compile=compile)


def load_finetuned_run(run_dir: Path, recipe: dict[str, Any], device: str = "auto",
                       compile: bool = False) -> HFGenerator:
    """A fine-tuning run as a `TextGenerator` (``compile`` applies to Luoxia GPTs only)."""
    model, tokenizer = load_finetuned(run_dir, device)
    return HFGenerator(model, tokenizer, name=Path(run_dir).name)


def load_tokenizer(path: str | Path) -> TextTokenizer | HFTokenizer:
    """Only the tokenizer of a model (``encode``/``decode``): a pre-training run's or a prepared data
    directory's ``tokenizer.json``, a fine-tuning run's, or a Hugging Face model directory's. Cheap:
    no weights are read."""
    path = require_path(path)
    if (path / TOKENIZER_FILE).is_file() and not (path / "tokenizer_config.json").is_file():
        return TextTokenizer.load(path)  # Luoxia's own: a pre-training run or prepared data
    if is_run_dir(path):
        path = finetuned_dir(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such directory (expected a run, a data directory or a Hugging Face model)")
    from transformers import AutoTokenizer  # heavy: only for Hugging Face tokenizers

    try:
        return HFTokenizer(AutoTokenizer.from_pretrained(str(path), local_files_only=True))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: no tokenizer found ({str(error).splitlines()[0]})") from None


def base_dir_of(run_dir: Path, recipe: dict[str, Any]) -> Path:
    """Where a fine-tuning run's base model lives in Hugging Face format."""
    return base_dir(run_dir, recipe["base_model"])


def load_finetuned(run_dir: str | Path, device: str = "auto", merge: bool = True
                   ) -> tuple[HFModel, HFTokenizerLike]:
    """A fine-tuning run's model (adapter applied, merged when the method allows and ``merge``) and
    its tokenizer; with a classification head for ``task: classify`` runs."""
    run_dir = Path(run_dir)
    recipe = run_recipe(run_dir)
    model_class, options = None, {}
    if recipe.get("task") == "classify":
        from transformers import AutoModelForSequenceClassification  # heavy: only for classifiers

        names = recipe["data"]["label_names"]
        model_class, options = AutoModelForSequenceClassification, dict(
            num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    if (run_dir / FULL_DIR).is_dir():
        return load_hf_model(run_dir / FULL_DIR, device, model_class, **options)
    if not (run_dir / ADAPTER_DIR).is_dir():
        raise CheckpointError(f"{run_dir}: the fine-tuning run has no {ADAPTER_DIR}/ or {FULL_DIR}/ yet (unfinished?)")
    from peft import PeftModel  # heavy: only for adapters
    from transformers import AutoTokenizer

    base, _ = load_hf_model(base_dir_of(run_dir, recipe), device, model_class, **options)
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
