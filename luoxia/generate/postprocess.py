"""Post-processing of generated text: trimming at stop strings and collapsing repeated n-grams."""

from __future__ import annotations

import re
from collections.abc import Sequence

# Words, single CJK characters, single punctuation marks; whitespace is kept with the unit before it.
_UNITS = re.compile(r"(?:[\u3400-\u9fff\uf900-\ufaff]|[^\W\u3400-\u9fff\uf900-\ufaff]+|[^\w\s])\s*|\s+")


def text_units(text: str) -> list[str]:
    """Words, CJK characters and punctuation marks, without whitespace: the units that repetition
    and diversity are counted in, for English and Chinese alike."""
    return [u.strip() for u in _UNITS.findall(text) if u.strip()]


def trim_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop string; say whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that could still grow into a stop string; a stream
    holds those characters back until it knows."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                longest = max(longest, size)
                break
    return longest


def collapse_repeats(text: str, max_n: int = 3) -> str:
    """Drop immediate repetitions of any 1..``max_n``-unit n-gram ("the the the cat" → "the cat",
    "床前床前明月" → "床前明月"), the degenerate loop small language models fall into."""
    units = _UNITS.findall(text)
    keys = [u.strip() for u in units]
    i = 0
    while i < len(units):
        for n in range(1, max_n + 1):
            if keys[i : i + n] == keys[i + n : i + 2 * n] and len(keys[i : i + n]) == n and any(keys[i : i + n]):
                del units[i + n : i + 2 * n], keys[i + n : i + 2 * n]
                break
        else:
            i += 1
    return "".join(units)
