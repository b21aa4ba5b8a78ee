"""``luoxia.load(path)``: a run directory in, a ready `TextGenerator` out."""

from __future__ import annotations

from pathlib import Path

import yaml

from luoxia.checkpoint import MODEL_FILE, latest_checkpoint, load_weights, verify_checkpoint
from luoxia.config import build_config
from luoxia.data.tokenizer import TextTokenizer
from luoxia.errors import CheckpointError
from luoxia.generate.text import GPTGenerator
from luoxia.models.gpt import GPT, GPTConfig
from luoxia.runtime import resolve_device

RUN_CONFIG = "config.yaml"


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
    config_path = run_dir / RUN_CONFIG
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir}: not a Luoxia run directory (no {RUN_CONFIG})")
    recipe = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    config = build_config(GPTConfig, recipe.get("model", {}), source=str(config_path))
    model = GPT(config)
    load_weights(model, run_weights(run_dir))
    model.to(resolve_device(device)).eval()
    return model, TextTokenizer.load(run_dir)


def load(path: str | Path, device: str = "auto") -> GPTGenerator:
    """Load a run directory as a text generator: ``luoxia.load("runs/tiny").generate("Hello")``."""
    model, tokenizer = load_gpt(path, device)
    return GPTGenerator(model, tokenizer, name=Path(path).name)
