"""Shared fixtures: tiny corpora, a char tokenizer and one tiny trained run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from luoxia.data.corpora import shared_data_dir
from luoxia.data.tokenizer import train_char_tokenizer
from tests.helpers import TEXT, tiny_recipe

# pytest-xdist runs two workers on two cores: one torch thread each keeps them from fighting.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# CI sets this: a test that needs ../shared/data then fails instead of skipping, so a missing data set
# cannot turn a green run into one that tested less.
REQUIRE_SHARED = os.environ.get("LUOXIA_REQUIRE_SHARED_DATA") == "1"


def missing_shared(names: tuple[str, ...]) -> list[str]:
    """The data sets among ``names`` (folders of ../shared/data) that are not on this machine."""
    root = shared_data_dir()
    return [name for name in names if root is None or not (root / name).is_dir()]


# The longest single test (every README command in turn, minutes) runs first, so that on two workers
# it overlaps the many short tests instead of being the last one left running.
FIRST = ("tests/test_readme.py::test_readme_commands_run_as_pasted",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid not in FIRST)  # stable: every other test keeps its order


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.shared_data("mnist", …)``: skip, saying what is missing — or fail under CI."""
    for marker in item.iter_markers("shared_data"):
        missing = missing_shared(marker.args)
        if missing:
            reason = (f"needs ../shared/data/{', '.join(missing)} (absent here; set LUOXIA_DATA_DIR to a folder "
                      "laid out like it)")
            if REQUIRE_SHARED:
                pytest.fail(f"LUOXIA_REQUIRE_SHARED_DATA=1 but this test {reason}", pytrace=False)
            pytest.skip(reason)


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """Three small distinct text files."""
    directory = tmp_path / "corpus"
    directory.mkdir()
    lines = TEXT.splitlines()
    for i in range(3):
        (directory / f"part{i}.txt").write_text("\n".join(lines[2 * i : 2 * i + 2]) * 20, encoding="utf-8")
    return directory


@pytest.fixture
def char_tokenizer():
    return train_char_tokenizer([TEXT + "0123456789 你好🙂"], special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny model trained once for the generation and evaluation tests."""
    from luoxia.train.lm import train_lm

    base = tmp_path_factory.mktemp("trained")
    corpus = base / "corpus.txt"
    corpus.write_text(TEXT * 30, encoding="utf-8")
    train_lm(tiny_recipe(base / "run", corpus, "max_steps=60", "eval_interval=30", "data.split=tail"))
    return base / "run"
