"""Training the moderation classifier from a data file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from luoxia.errors import DataError
from luoxia.safety.moderation import Moderator


def _write_dataset(path: Path) -> None:
    rows = []
    for i in range(40):
        rows.append({"prompt": f"I will hurt and kill them all, number {i}", "V": 1, "H": 0})
        rows.append({"prompt": f"A calm note about gardening and tea, number {i}", "V": 0, "H": 0})
        rows.append({"prompt": f"Those people are vermin and inferior, number {i}", "V": 0, "H": 1})
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows))


@pytest.mark.slow
def test_training_writes_a_classifier_that_loads_and_separates_the_classes(tmp_path: Path):
    from luoxia.registry import load_recipe
    from luoxia.train.moderation import train_moderation

    data = tmp_path / "mod.jsonl.gz"
    _write_dataset(data)
    recipe = load_recipe("configs/safety/moderation.yaml", [
        f"out_dir={tmp_path / 'head'}", f"data.path={data}", "data.labels={V: violence, H: hate}"])
    report = train_moderation(recipe)
    assert report["violence"]["recall"] == 1.0 and report["hate"]["precision"] == 1.0
    moderator = Moderator(classifier=tmp_path / "head")
    scores = moderator.moderate(["They will kill them all tonight", "Tea and gardening notes"])
    assert scores[0].scores["violence"] > scores[1].scores["violence"]


def test_training_data_errors_name_the_problem(tmp_path: Path):
    from luoxia.registry import load_recipe
    from luoxia.train.moderation import read_moderation_data

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    recipe = load_recipe("configs/safety/moderation.yaml", [f"data.path={empty}"])
    with pytest.raises(DataError, match="no records"):
        read_moderation_data(recipe.data)
    with pytest.raises(DataError, match="not found"):
        read_moderation_data(recipe.data.model_copy(update={"path": str(tmp_path / "missing.jsonl")}))
