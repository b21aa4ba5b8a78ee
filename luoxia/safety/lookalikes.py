"""Contrastive look-alike twins for moderation: a safe prompt that looks unsafe beside a plainly unsafe one.

The file (``luoxia/safety/data/lookalikes.tsv``, written for Luoxia, not taken from a public set) has
``#`` comment lines, a header row and one tab-separated row per text:
``pair split lang label category theme text``. Both twins of a pair share the pair id, the split,
the language and the theme; the unsafe twin names its moderation category, the safe twin leaves it empty.
Heads train on ``train``, thresholds are tuned on ``dev``, and ``test`` is only reported.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from luoxia.errors import DataError
from luoxia.models.moderation_head import CATEGORIES

DEFAULT = Path(__file__).with_name("data") / "lookalikes.tsv"
COLUMNS = ("pair", "split", "lang", "label", "category", "theme", "text")
SPLITS = ("train", "dev", "test")
LANGS = ("en", "zh")
LABELS = ("safe", "unsafe")
# What makes the safe twin look unsafe.
THEMES = ("homonym", "figurative", "safe_target", "safe_context", "definition", "historical_event",
          "fictional_group", "real_group_question", "privacy_public_figure", "medical", "educational",
          "counter_speech")
SPLIT_SEED = "luoxia-lookalikes"


@dataclass(frozen=True)
class LookAlike:
    """One text of a twin pair."""

    pair: str
    split: str
    lang: str
    label: str
    category: str  # "" for a safe text
    theme: str
    text: str

    @property
    def unsafe(self) -> bool:
        return self.label == "unsafe"


def split_of(pair: str) -> str:
    """The pair's split, drawn once from a generator seeded by its id: stable when the file grows."""
    draw = random.Random(f"{SPLIT_SEED}/{pair}").random()
    return "train" if draw < 0.5 else "dev" if draw < 0.7 else "test"


def _parse(fields: list[str], where: str) -> LookAlike:
    if len(fields) != len(COLUMNS):
        raise DataError(f"{where}: expected {len(COLUMNS)} tab-separated columns, found {len(fields)}")
    row = LookAlike(*fields)
    checks = (("split", row.split, SPLITS), ("lang", row.lang, LANGS), ("label", row.label, LABELS),
              ("theme", row.theme, THEMES))
    problems = [f"{name} {value!r}" for name, value, valid in checks if value not in valid]
    if row.unsafe and row.category not in CATEGORIES:
        problems.append(f"category {row.category!r}")
    if not row.unsafe and row.category:
        problems.append("a category on a safe row")
    if not row.text.strip():
        problems.append("empty text")
    if problems:
        raise DataError(f"{where}: invalid {', '.join(problems)}")
    return row


def read_lookalikes(path: str | Path = DEFAULT, splits: Iterable[str] | None = None,
                    langs: Iterable[str] | None = None) -> list[LookAlike]:
    """The rows of a look-alike file, optionally only some splits and languages, in file order."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read look-alikes ({error})") from None
    body = [(n, line) for n, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    if not body or tuple(body[0][1].split("\t")) != COLUMNS:
        raise DataError(f"{path}: the first non-comment line must be the header {' '.join(COLUMNS)}")
    wanted_splits, wanted_langs = _subset(splits, SPLITS, "split"), _subset(langs, LANGS, "lang")
    rows = [_parse(line.split("\t"), f"{path}:{n}") for n, line in body[1:]]
    return [r for r in rows if r.split in wanted_splits and r.lang in wanted_langs]


def _subset(chosen: Iterable[str] | None, valid: tuple[str, ...], what: str) -> set[str]:
    picked = set(valid) if chosen is None else {chosen} if isinstance(chosen, str) else set(chosen)
    unknown = sorted(picked - set(valid))
    if unknown:
        raise DataError(f"unknown {what} {', '.join(unknown)}; valid: {', '.join(valid)}")
    return picked
