"""The registry of families: every shipped recipe validates through it, every generating family
has a loader, and a path that is not a run is refused in one line without a hub lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

import luoxia
from luoxia.errors import CheckpointError, ConfigError
from luoxia.registry import FAMILIES, load_recipe, recipe_family, tasks
from luoxia.runs import CONFIG_FILE
from tests.helpers import REPO


def test_commands_train_the_families_they_name():
    assert tasks("finetune") == ("finetune", "classify", "token_classify")
    assert set(tasks("train")) == {"lm", "mlm", "vae", "ddpm", "gan", "classifier", "moderation"}
    assert all((found.load is None) == (found.output is None) for found in FAMILIES.values())


@pytest.mark.parametrize("recipe", sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml")
                                          if "task:" in p.read_text(encoding="utf-8") or "/lm/" in str(p)))
def test_every_shipped_recipe_validates_into_its_family(recipe: str):
    config = load_recipe(REPO / recipe)
    assert isinstance(config, recipe_family(config).recipe)


def test_load_refuses_what_is_not_a_run(tmp_path: Path):
    with pytest.raises(CheckpointError, match="^no run at .*missing; train one with"):
        luoxia.load(tmp_path / "missing")
    (tmp_path / CONFIG_FILE).write_text("task: lstm\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown task 'lstm'"):
        luoxia.load(tmp_path)
