"""EDA augmentation: seeded, drawn from the synonym list, n variants, alpha=0 leaves the text alone."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from luoxia.data.augment import augment, delete, load_synonyms, replace
from luoxia.errors import DataError

HEADLINE = "Shares rise as profit beats the strong forecast, while debt falls"


@pytest.fixture
def synonyms(tmp_path: Path) -> dict[str, list[str]]:
    path = tmp_path / "synonyms.txt"
    path.write_text("# finance\nrise, climb, gain\nfall, drop  # inline comment\nprofit, earnings\n\nstrong, robust\n",
                    encoding="utf-8")
    return load_synonyms(str(path))


def test_synonym_file_format(synonyms: dict[str, list[str]]):
    assert synonyms["rise"] == ["climb", "gain"] and synonyms["gain"] == ["rise", "climb"]
    assert synonyms["drop"] == ["fall"] and "finance" not in synonyms


def test_same_seed_same_variants_other_seed_others(synonyms):
    first = augment(HEADLINE, 8, 0.2, seed=3, synonyms=synonyms)
    assert first == augment(HEADLINE, 8, 0.2, seed=3, synonyms=synonyms)
    assert first != augment(HEADLINE, 8, 0.2, seed=4, synonyms=synonyms)
    assert len(first) == 8 and all(variant and variant != HEADLINE for variant in first)


def test_new_words_come_from_the_synonym_list(synonyms):
    original = {word.strip(",") for word in HEADLINE.split()}
    listed = {word for group in synonyms.values() for word in group}
    for variant in augment(HEADLINE, 20, 0.3, seed=0, synonyms=synonyms):
        new = {word.strip(",") for word in variant.split()} - original
        assert {word.lower() for word in new} <= listed


def test_replacement_keeps_capitals_and_punctuation(synonyms):
    first, then, last = replace(["Rise,", "then", "fall."], 2, random.Random(0), synonyms)
    assert first in {"Climb,", "Gain,"} and then == "then" and last == "drop."


def test_alpha_zero_returns_the_text_unchanged(synonyms):
    text = "Shares  rise\nsharply"
    assert augment(text, 3, 0.0, seed=0, synonyms=synonyms) == [text] * 3


def test_deletion_never_empties_a_text(synonyms):
    assert delete(["only"], 5, random.Random(0), synonyms) == ["only"]
    assert all(augment("profit", 10, 1.0, seed=s, synonyms=synonyms)[0] for s in range(10))


def test_missing_or_malformed_file_is_named(tmp_path: Path):
    with pytest.raises(DataError, match="nope.txt: no such file or directory"):
        load_synonyms(str(tmp_path / "nope.txt"))
    lonely = tmp_path / "lonely.txt"
    lonely.write_text("rise, climb\nfall\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"lonely.txt:2: a synonym group needs at least two"):
        load_synonyms(str(lonely))


def test_bundled_list_loads_and_knows_market_words():
    bundled = load_synonyms(None)
    assert {"climb", "gain"} <= set(bundled["rise"]) and {"drop", "decline"} <= set(bundled["fall"])
    assert len(augment(HEADLINE, 4, 0.1, seed=0, synonyms=bundled)) == 4
