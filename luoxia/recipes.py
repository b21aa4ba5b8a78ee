"""Every kind of recipe in ``configs/``, told apart by its ``task`` field."""

from __future__ import annotations

from pathlib import Path

from luoxia.config import Config, load_config, read_yaml, resolve_recipe
from luoxia.errors import ConfigError


def recipe_classes() -> dict[str, type[Config]]:
    """``task`` value → the typed recipe it validates into."""
    from luoxia.train.finetune import FinetuneRecipe
    from luoxia.train.image import IMAGE_RECIPES
    from luoxia.train.lm import LMRecipe
    from luoxia.train.moderation import ModerationRecipe

    return {"lm": LMRecipe, "finetune": FinetuneRecipe, "classify": FinetuneRecipe, **IMAGE_RECIPES,
            "moderation": ModerationRecipe}


def load_recipe(path: str | Path, overrides: list[str] | None = None, allowed: tuple[str, ...] | None = None) -> Config:
    """Any recipe, validated into its class; ``allowed`` limits the tasks a command accepts."""
    path = resolve_recipe(str(path))
    classes = recipe_classes()
    task = read_yaml(path).get("task", "lm")
    valid = [name for name in classes if allowed is None or name in allowed]
    if task not in valid:
        raise ConfigError(f"{path}: task '{task}' is not one this command runs; valid: {', '.join(valid)}")
    return load_config(classes[task], path, overrides or [])
