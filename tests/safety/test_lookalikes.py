"""The look-alike twins file (luoxia/safety/data/lookalikes.tsv) and its reader: schema, complete pairs,
per-pair splits, both languages, coverage, no duplicate or leaked texts; and that it ships in the wheel."""

from __future__ import annotations

import fnmatch
import tomllib
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from luoxia.errors import DataError
from luoxia.models.moderation_head import CATEGORIES
from luoxia.safety.lookalikes import (
    COLUMNS,
    DEFAULT,
    LANGS,
    SPLITS,
    THEMES,
    LookAlike,
    read_lookalikes,
    split_of,
)

MIN_PAIRS_PER_LANG = 160
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rows() -> list[LookAlike]:
    return read_lookalikes()


def pairs(rows: list[LookAlike]) -> dict[str, list[LookAlike]]:
    grouped: dict[str, list[LookAlike]] = defaultdict(list)
    for row in rows:
        grouped[row.pair].append(row)
    return grouped


def canonical(text: str) -> str:
    """Case, width and punctuation do not make a text new."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if ch.isalnum())


def test_header_and_columns() -> None:
    body = [line for line in DEFAULT.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    assert tuple(body[0].split("\t")) == COLUMNS
    assert all(line.count("\t") == len(COLUMNS) - 1 for line in body)
    assert "Apache-2.0" in DEFAULT.read_text(encoding="utf-8").split("\npair\t")[0]


def test_labels_categories_themes_valid(rows: list[LookAlike]) -> None:
    assert {r.label for r in rows} == {"safe", "unsafe"}
    assert all(r.category in CATEGORIES for r in rows if r.unsafe)
    assert all(r.category == "" for r in rows if not r.unsafe)
    assert {r.theme for r in rows} == set(THEMES)
    assert all(r.pair.startswith(f"{r.lang}-") for r in rows)


def test_each_pair_is_one_safe_and_one_unsafe_twin_in_one_split(rows: list[LookAlike]) -> None:
    for pair, twins in pairs(rows).items():
        assert sorted(t.label for t in twins) == ["safe", "unsafe"], pair
        assert len({(t.split, t.lang, t.theme) for t in twins}) == 1, pair
        assert twins[0].split == split_of(pair), f"{pair}: split is not the seeded draw"


def test_both_languages_and_split_proportions(rows: list[LookAlike]) -> None:
    for lang in LANGS:
        splits = Counter(twins[0].split for twins in pairs([r for r in rows if r.lang == lang]).values())
        total = sum(splits.values())
        assert total >= MIN_PAIRS_PER_LANG, lang
        assert 0.40 <= splits["train"] / total <= 0.60, (lang, splits)
        assert 0.12 <= splits["dev"] / total <= 0.28, (lang, splits)
        assert 0.22 <= splits["test"] / total <= 0.38, (lang, splits)


def test_every_category_and_theme_in_every_split_of_each_language(rows: list[LookAlike]) -> None:
    for lang in LANGS:
        for split in SPLITS:
            picked = [r for r in rows if r.lang == lang and r.split == split]
            assert {r.theme for r in picked} == set(THEMES), (lang, split)
            assert {r.category for r in picked if r.unsafe} == set(CATEGORIES), (lang, split)


def test_no_duplicate_texts_and_no_test_text_in_train_or_dev(rows: list[LookAlike]) -> None:
    counts = Counter(canonical(r.text) for r in rows)
    assert [text for text, n in counts.items() if n > 1] == []
    seen = {canonical(r.text) for r in rows if r.split != "test"}
    assert [r.pair for r in rows if r.split == "test" and canonical(r.text) in seen] == []


def test_chinese_rows_are_chinese_with_some_traditional_and_full_width(rows: list[LookAlike]) -> None:
    zh = [r.text for r in rows if r.lang == "zh"]
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in text) for text in zh)
    assert any(ch in "這們說為個國殺會麼對裡從還" for text in zh for ch in text)  # traditional characters
    assert any(ch.isalnum() and "\uff10" <= ch <= "\uff5a" for text in zh for ch in text)  # full-width Ｐ１


def test_reader_filters_by_split_and_language(rows: list[LookAlike]) -> None:
    test_zh = read_lookalikes(splits=["test"], langs="zh")
    assert test_zh and {(r.split, r.lang) for r in test_zh} == {("test", "zh")}
    assert len(read_lookalikes(splits="train")) + len(read_lookalikes(splits=("dev", "test"))) == len(rows)
    with pytest.raises(DataError, match="unknown split"):
        read_lookalikes(splits=["validation"])


@pytest.mark.parametrize(("line", "message"), [
    ("x-1\ttrain\ten\tunsafe\tviolence\thomonym", "columns"),
    ("x-1\ttrain\ten\tunsafe\tweapons\thomonym\tsome text", "category 'weapons'"),
    ("x-1\ttrain\ten\tsafe\tviolence\thomonym\tsome text", "category on a safe row"),
    ("x-1\tholdout\ten\tsafe\t\thomonym\tsome text", "split 'holdout'"),
    ("x-1\ttrain\tfr\tsafe\t\tnovel_theme\tsome text", "lang 'fr', theme 'novel_theme'"),
])
def test_reader_names_the_line_of_a_bad_row(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("# comment\n" + "\t".join(COLUMNS) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"bad.tsv:3: .*{message}"):
        read_lookalikes(path)


def test_reader_wants_the_header(tmp_path: Path) -> None:
    path = tmp_path / "headless.tsv"
    path.write_text("x-1\ttrain\ten\tsafe\t\thomonym\tsome text\n", encoding="utf-8")
    with pytest.raises(DataError, match="header"):
        read_lookalikes(path)


def test_file_ships_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["luoxia"]
    relative = DEFAULT.relative_to(ROOT / "luoxia").as_posix()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in globs)
