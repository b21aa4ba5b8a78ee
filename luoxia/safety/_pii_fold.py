"""A folded copy of a text for PII detection, with a map from folded offsets back to the original.

Folding applies NFKC to each character (full-width ``１３８`` → ``138``, ``＠`` → ``@``, the
ideographic space → a space) and drops format characters (Unicode category Cf: zero-width space,
joiners, word joiner, BOM, soft hyphen, bidi controls) and lone surrogates, which hide a value
from a pattern but not from a reader. Each folded character remembers the original character it came from, so a
span found in the folded text maps back to the whole original span, hidden characters included.
Moderation's normalisation (`luoxia.safety.normalize`) folds with its own per-character function
through the same two functions (``fold_one``, and ``special`` for the characters it may change).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_CACHE_LIMIT = 1 << 16
_fold_cache: dict[str, str] = {}


def fold_char(char: str) -> str:
    """The folded form of one character: ``""`` for a format character or a lone surrogate (which
    no UTF-8 engine can read), else its NFKC form."""
    folded = _fold_cache.get(char)
    if folded is None:
        hidden = unicodedata.category(char) in ("Cf", "Cs")  # format characters, lone surrogates
        folded = "" if hidden else unicodedata.normalize("NFKC", char)
        if len(_fold_cache) < _CACHE_LIMIT:
            _fold_cache[char] = folded
    return folded


def fold(text: str, fold_one: Callable[[str], str] = fold_char, special: re.Pattern[str] = _NON_ASCII) -> str:
    """The folded text alone (no offset map): to normalise a value that was found. ``fold_one``
    leaves alone every character that ``special`` does not match."""
    if text.isascii() if special is _NON_ASCII else special.search(text) is None:
        return text
    return "".join(map(fold_one, text))


@dataclass(frozen=True)
class Folded:
    """``text`` is the folded copy; ``origin[i]`` the original offset of folded character ``i``
    (``None`` when folding changed nothing, so offsets are the same)."""

    text: str
    origin: list[int] | None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original ``(start, end)`` of folded ``[start, end)``: from the first character's source
        to the end of the last one's, so hidden characters between them are inside."""
        if self.origin is None:
            return start, end
        return self.origin[start], self.origin[end - 1] + 1


def fold_with_map(text: str, fold_one: Callable[[str], str] = fold_char,
                  special: re.Pattern[str] = _NON_ASCII) -> Folded:
    """Fold ``text`` in one pass; runs ``special`` does not match (ASCII by default) are copied
    whole (they fold to themselves)."""
    if special is _NON_ASCII and text.isascii():
        return Folded(text, None)
    pieces: list[str] = []
    origin: list[int] = []
    last = 0
    for m in special.finditer(text):
        pieces.append(text[last:m.start()])
        origin.extend(range(last, m.start()))
        for offset in range(m.start(), m.end()):
            folded = fold_one(text[offset])
            pieces.append(folded)
            origin.extend([offset] * len(folded))
        last = m.end()
    pieces.append(text[last:])
    origin.extend(range(last, len(text)))
    folded_text = "".join(pieces)
    if folded_text == text:
        return Folded(text, None)
    return Folded(folded_text, origin)
