"""``luoxia export`` and ``luoxia import``: thin commands over `luoxia.models.gpt_hf`, which maps
Luoxia's GPT onto the `transformers` family computing exactly the same function (GPT-2, Llama,
Qwen3, Arcee) and back. An export of a fine-tuning run copies its adapter or full model, or folds
the adapter into its base (``--merge``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from luoxia.checkpoint import atomic_directory, save_weights
from luoxia.config import dump_config
from luoxia.data.tokenizer import TextTokenizer
from luoxia.errors import ConfigError
from luoxia.generate.hf import load_hf_model
from luoxia.generate.load import MERGEABLE_METHODS, load_finetuned, load_gpt, load_lm_run
from luoxia.generate.mlm import load_mlm, load_mlm_run
from luoxia.generate.rnn import load_rnn_run
from luoxia.models.gpt import GPT, GPTConfig
from luoxia.models.gpt_hf import gpt_from_hf, save_hf
from luoxia.models.mlm_hf import save_bert
from luoxia.registry import run_family
from luoxia.runs import ADAPTER_DIR, CONFIG_FILE, FULL_DIR, IMPORT_RECORD, WEIGHTS_FILE, is_run_dir, run_recipe
from luoxia.train.lm import LMRecipe


def export_hf(run_dir: str | Path, out_dir: str | Path) -> str:
    """Write a pre-training run as a standard Hugging Face directory; returns the family name."""
    model, tokenizer = load_gpt(run_dir, device="cpu")
    return save_hf(model, tokenizer, out_dir)


def export_mlm(run_dir: str | Path, out_dir: str | Path) -> str:
    """Write a masked-LM run as a standard Hugging Face BERT directory; returns the class it became."""
    return save_bert(*load_mlm(run_dir, device="cpu"), out_dir)


def refuse_rnn(run_dir: Path, out_dir: Path) -> str:
    raise ConfigError(f"{run_dir}: an LSTM/GRU language model run; no Hugging Face model family matches an "
                      "LSTM/GRU language model, so it cannot be exported (use the run directory itself)")


# A pre-training family's export, by its loader: each writes the `transformers` model computing it.
EXPORTS: dict[Callable[..., Any], Callable[[Path, Path], str]] = {
    load_lm_run: lambda run, out: f"{export_hf(run, out)} model", load_mlm_run: export_mlm, load_rnn_run: refuse_rnn}


def export_finetuned(run_dir: Path, out_dir: Path, merge: bool) -> str:
    """A fine-tuning run: its full model, its adapter alone, or (``merge``) base + adapter folded."""
    method = run_recipe(run_dir).get("method", {}).get("name", "lora")
    if (run_dir / FULL_DIR).is_dir():
        source = run_dir / FULL_DIR
    elif not merge:
        source = run_dir / ADAPTER_DIR
        if not source.is_dir():
            raise ConfigError(f"{run_dir}: no {ADAPTER_DIR}/ yet (unfinished run?)")
    elif method not in MERGEABLE_METHODS:
        raise ConfigError(f"{run_dir}: a {method} adapter adds virtual tokens and cannot be merged; "
                          f"export it without --merge (mergeable: {', '.join(MERGEABLE_METHODS)})")
    else:
        model, tokenizer = load_finetuned(run_dir, device="cpu", merge=True)
        with atomic_directory(out_dir) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        return f"{method} adapter merged into its base"
    with atomic_directory(out_dir) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    return "full fine-tuned model" if source.name == FULL_DIR else f"{method} adapter (without its base)"


def export_run(run_dir: str | Path, out_dir: str | Path, merge: bool = False) -> str:
    """``luoxia export RUN --format hf --out DIR [--merge]``; returns what was written."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir}: exists and is not empty; choose a new --out directory")
    export = EXPORTS.get(run_family(run_dir).load)  # type: ignore[arg-type]
    if export is not None:  # a Luoxia pre-training family; anything else is a fine-tuning run
        return export(run_dir, out_dir)
    return export_finetuned(run_dir, out_dir, merge)


def write_run(out_dir: Path, model: GPT, tokenizer: TextTokenizer, source: dict) -> None:
    """A run directory holding just a model: its recipe, weights, tokenizer and where it came from."""
    with atomic_directory(out_dir) as tmp:
        tokenizer.save(tmp)
        save_weights(model, tmp / WEIGHTS_FILE)
        dump_config(LMRecipe(out_dir=str(out_dir), model=model.config), tmp / CONFIG_FILE)
        (tmp / IMPORT_RECORD).write_text(json.dumps(source, indent=2), encoding="utf-8")


def import_hf(hf_dir: str | Path, out_dir: str | Path) -> GPTConfig:
    """Turn a local Hugging Face GPT-2/Llama/Qwen3/Arcee directory into a Luoxia run directory
    (``config.yaml``, ``model.safetensors``, ``tokenizer.json``) that every command accepts."""
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    if is_run_dir(out_dir) or (out_dir.exists() and any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir}: exists and is not empty; choose a new --out directory")
    hf_model, hf_tok = load_hf_model(hf_dir, device="cpu")
    if not getattr(hf_tok, "is_fast", False):
        raise ConfigError(f"{hf_dir}: Luoxia needs a fast tokenizer (tokenizer.json)")
    model = gpt_from_hf(hf_model)
    write_run(out_dir, model, TextTokenizer(hf_tok.backend_tokenizer),
              {"source": str(hf_dir.resolve()), "model_type": hf_model.config.model_type})
    return model.config
