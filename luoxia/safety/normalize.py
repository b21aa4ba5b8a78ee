"""One canonical spelling of a text for moderation matching, so that formatting cannot hide harm.

`normalize` undoes what a reader does not see or reads past: compatibility forms (full-width
letters, ligatures, circled digits: NFKC), accents and other combining marks, zero-width,
bidirectional and control characters, runs of spaces and tabs (and spaces between Chinese
characters: `怎么 制作 炸弹`), Cyrillic and Greek letters that look Latin (`bоmb` with a Cyrillic
о), leetspeak inside words (`b0mb`, `k1ll`; `2024` and `12-year-old` stay numbers) and traditional
Chinese characters (`怎麼製作炸彈` → `怎么制作炸弹`, per character, from OpenCC's dictionary).

The result is for matching only (rules and the classifier read it), never shown. Every step is
one pass over the text (str.translate, str.split, one-character-class regexes), so the work is
linear in its length.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from importlib.resources import files

# Look-alikes of Latin letters (the common ones among Unicode's confusables): Cyrillic, Greek,
# Armenian and a few Latin letters that NFKD leaves alone. Applied everywhere: a Russian or Greek
# text reads as nonsense to the rules (which are English and Chinese) and to the English encoder.
HOMOGLYPHS = {
    **dict(zip("аегкорсухѕіјԁһӏԛԝьѵү", "aerkopcyxsijdhlqwbvy", strict=True)),
    **dict(zip("АВЕКМНОРСТУХЅІЈԚԜҮӀ", "ABEKMHOPCTYXSIJQWYl", strict=True)),
    **dict(zip("αεικνορτυχγω", "aeikvoptuxyw", strict=True)),
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),
    **dict(zip("օսհոցɑɡıȷłøđħ", "ouhngagijlodh", strict=True)),
}
# Leetspeak, read only inside words that also hold a letter; "1" is read both ways (see `variants`).
LEET = str.maketrans("013457@$", "oieastas")
LEET_ONE_AS_L = str.maketrans("1", "l")
INVISIBLE_LETTERS = "\u115f\u1160\u3164\uffa0\u2800"  # Hangul fillers, braille blank: letters that show nothing
# Linear in any engine: character classes with no nested repetition, a one-character lookahead.
WORD = re.compile(r"[0-9A-Za-z@$]+")
SPACES = re.compile(r" {2,}")
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
SPACE_IN_CHINESE = re.compile(f"(?<=[{HAN}]) (?=[{HAN}])")
ANY_HAN = re.compile(f"[{HAN}]")


def normalize(text: str) -> str:
    """The text as matched: see the module docstring for each step."""
    return variants(text)[0]


def variants(text: str) -> tuple[str, ...]:
    """The normalised text, and when a word holds a "1" also that text with "1" read as "l" (`ki11`)."""
    base = unicodedata.normalize("NFC", unicodedata.normalize("NFKD", text).translate(_table()))
    base = SPACES.sub(" ", base).strip(" ")
    if ANY_HAN.search(base):
        base = SPACE_IN_CHINESE.sub("", base)
    if not any(char in base for char in "013457@$"):
        return (base,)
    ones: list[bool] = []  # one entry per folded word that holds a "1"
    first = WORD.sub(lambda word: _fold_leet(word.group(), ones), base)
    if not ones:
        return (first,)
    second = WORD.sub(lambda word: _fold_leet(word.group(), [], one_as_l=True), base)
    return first, second


def _fold_leet(word: str, ones: list[bool], one_as_l: bool = False) -> str:
    """Leetspeak read as letters, only in a word that has a letter (numbers stay numbers)."""
    if word.isalpha() or word.isdigit() or not any(char.isalpha() for char in word):
        return word
    if "1" in word:
        ones.append(True)
    return (word.translate(LEET_ONE_AS_L) if one_as_l else word).translate(LEET)


@cache
def _table() -> dict[int, str | None]:
    """One translation table: drop what shows nothing, fold look-alikes, traditional → simplified."""
    table: dict[int, str | None] = {ord(k): v for k, v in _traditional_to_simplified().items()}
    for code in (*range(0x20000), *range(0xE0000, 0xE1000)):  # planes 0, 1 and 14 hold every such mark
        char = chr(code)
        if char.isspace():
            table[code] = " "  # tabs, newlines, no-break and ideographic spaces
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Mn", "Me"):  # Cs: lone surrogates
            table[code] = None
    table.update({ord(char): None for char in INVISIBLE_LETTERS})
    table.update({ord(k): v for k, v in HOMOGLYPHS.items()})
    return table


@cache
def _traditional_to_simplified() -> dict[str, str]:
    """OpenCC's character table (TSCharacters): the first simplified form of each traditional one.

    Character by character, not OpenCC's phrase segmentation: that is not linear in the length of
    a run of Chinese, and matching needs the characters, not the finer points of word choice."""
    text = (files("opencc") / "dictionary" / "TSCharacters.txt").read_text(encoding="utf-8")
    pairs = (line.split("\t", 1) for line in text.splitlines() if "\t" in line)
    return {source: target.split()[0] for source, target in pairs if len(source) == 1 and target.split()}

