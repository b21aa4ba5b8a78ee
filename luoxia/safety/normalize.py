"""One canonical spelling of a text for moderation matching, so that formatting cannot hide harm.

`normalize` undoes what a reader does not see or reads past: compatibility forms (full-width
letters, ligatures, circled digits: NFKC), accents and other combining marks, zero-width,
bidirectional and control characters, runs of spaces and tabs (and spaces between Chinese
characters: `怎么 制作 炸弹`), Cyrillic and Greek letters that look Latin (`bоmb` with a Cyrillic
о), leetspeak inside words (`b0mb`, `k1ll`; `2024` and `12-year-old` stay numbers) and traditional
Chinese characters (`怎麼製作炸彈` → `怎么制作炸弹`, per character, from OpenCC's dictionary).

The result is for matching only (rules and the classifier read it), never shown. Each character
is folded on its own (`_fold_char`, cached; printable ASCII folds to itself), then spaces are cut;
`mapped_variants` also keeps, for each normalised character, the offset of the original character
it came from (the PII fold's map, `luoxia.safety._pii_fold`), so that a match in the normalised
text is reported as a span of the text as given. Every step is one pass over the text (one-
character-class regexes, per-character folds), so the work is linear in its length.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files

from luoxia.safety._pii_fold import Folded, fold, fold_with_map

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
# What `_fold_char` may change, less tabs and line breaks: those become spaces one for one (`LINE_SPACES`).
FOLDED_RUNS = re.compile(r"[^\t\n\r\x20-\x7e]+")
LINE_SPACES = str.maketrans("\t\n\r", "   ")
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
SPACE_IN_CHINESE = re.compile(f"(?<=[{HAN}]) (?=[{HAN}])")
ANY_HAN = re.compile(f"[{HAN}]")


def normalize(text: str) -> str:
    """The text as matched: see the module docstring for each step."""
    return variants(text)[0]


def variants(text: str) -> tuple[str, ...]:
    """The normalised text, and when a word holds a "1" also that text with "1" read as "l" (`ki11`)."""
    return mapped_variants(text, keep_map=False).texts


@dataclass(frozen=True)
class Variants:
    """The normalised readings of one text (same length: leetspeak folds a character to one) and,
    when asked for, the map from their offsets to the original text's (``folded.origin``)."""

    texts: tuple[str, ...]
    folded: Folded  # texts[0] before leetspeak, with its origin map (None: no map kept, or offsets unchanged)
    length: int  # of the original text

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of normalised ``[start, end)``: whole original characters, and any
        character dropped between them (a zero-width space inside a word) is inside."""
        if end > start:
            return self.folded.span(start, end)
        origin = self.folded.origin
        at = start if origin is None else (origin[start] if start < len(origin) else self.length)
        return at, at


def mapped_variants(text: str, keep_map: bool = True) -> Variants:
    """`variants`, with (``keep_map``) the offset map back to ``text``; without it no map is built."""
    if keep_map:
        folded = fold_with_map(text, _fold_char, FOLDED_RUNS)
        folded = Folded(folded.text.translate(LINE_SPACES), folded.origin)
    else:  # ASCII: one translate, the same as folding each character
        folded = Folded(text.translate(_table()) if text.isascii() else
                        fold(text, _fold_char, FOLDED_RUNS).translate(LINE_SPACES), None)
    folded = _strip(_cut(folded, SPACES, keep_map, keep=1), keep_map)
    if ANY_HAN.search(folded.text):
        folded = _cut(folded, SPACE_IN_CHINESE, keep_map)
    base = folded.text
    if not any(char in base for char in "013457@$"):
        return Variants((base,), folded, len(text))
    ones: list[bool] = []  # one entry per folded word that holds a "1"
    first = WORD.sub(lambda word: _fold_leet(word.group(), ones), base)
    if not ones:
        return Variants((first,), folded, len(text))
    second = WORD.sub(lambda word: _fold_leet(word.group(), [], one_as_l=True), base)
    return Variants((first, second), folded, len(text))


def _strip(folded: Folded, keep_map: bool) -> Folded:
    """``folded`` without spaces at either end (origins follow with ``keep_map``)."""
    text = folded.text
    start, end = len(text) - len(text.lstrip(" ")), len(text.rstrip(" "))
    if (start, end) == (0, len(text)):
        return folded
    origin = folded.origin if folded.origin is not None else range(len(text))
    return Folded(text[start:end], list(origin[start:end]) if keep_map else None)


def _cut(folded: Folded, spaces: re.Pattern[str], keep_map: bool, keep: int = 0) -> Folded:
    """``folded`` with each match of ``spaces`` (a run of spaces) cut to its first ``keep`` spaces;
    with ``keep_map``, the origins of the characters kept stay with them."""
    if not keep_map:
        return Folded(spaces.sub(" " * keep, folded.text), None)
    text, pieces, origin, last = folded.text, [], [], 0
    source = folded.origin if folded.origin is not None else range(len(text))
    for match in spaces.finditer(text):
        pieces.append(text[last:match.start() + keep])
        origin.extend(source[last:match.start() + keep])
        last = match.end()
    if not pieces:  # no match
        return folded
    pieces.append(text[last:])
    origin.extend(source[last:])
    return Folded("".join(pieces), origin)


def _fold_leet(word: str, ones: list[bool], one_as_l: bool = False) -> str:
    """Leetspeak read as letters, only in a word that has a letter (numbers stay numbers)."""
    if word.isalpha() or word.isdigit() or not any(char.isalpha() for char in word):
        return word
    if "1" in word:
        ones.append(True)
    return (word.translate(LEET_ONE_AS_L) if one_as_l else word).translate(LEET)


@lru_cache(maxsize=1 << 16)
def _fold_char(char: str) -> str:
    """One character as matched: compatibility form, no marks, look-alikes folded, simplified."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFKD", char).translate(_table()))


@cache
def _table() -> dict[int, str | None]:
    """One translation table: drop what shows nothing, fold look-alikes, traditional → simplified."""
    table: dict[int, str | None] = {ord(k): v for k, v in traditional_to_simplified().items()}
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
def traditional_to_simplified() -> dict[str, str]:
    """OpenCC's character table (TSCharacters): the first simplified form of each traditional one.

    Character by character, not OpenCC's phrase segmentation: that is not linear in the length of
    a run of Chinese, and matching needs the characters, not the finer points of word choice."""
    text = (files("opencc") / "dictionary" / "TSCharacters.txt").read_text(encoding="utf-8")
    pairs = (line.split("\t", 1) for line in text.splitlines() if "\t" in line)
    return {source: target.split()[0] for source, target in pairs if len(source) == 1 and target.split()}

