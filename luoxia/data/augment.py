"""EDA text augmentation (Wei & Zou, 2019, "EDA: Easy Data Augmentation Techniques for Boosting
Performance on Text Classification Tasks"): synonym replacement, random insertion of a synonym,
random swap and random deletion, each changing about ``alpha`` of a text's words.

Words are whitespace-separated tokens (a variant is re-joined with single spaces); punctuation and
capitals around a replaced word are kept. Synonyms come from a plain text file, one group a line:
``rise, climb, gain`` (``#`` starts a comment). The bundled list is small and English.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

from luoxia.data.readers import read_text_file
from luoxia.errors import DataError

BUNDLED_SYNONYMS = Path(__file__).with_name("synonyms.txt")
_AFFIXES = re.compile(r"^(\W*)(.*?)(\W*)$")  # punctuation before, the word, punctuation after

Synonyms = dict[str, list[str]]


def load_synonyms(path: str | None = None) -> Synonyms:
    """word → the other words of every group it is in; ``None`` loads the bundled list."""
    file = Path(path) if path is not None else BUNDLED_SYNONYMS
    synonyms: Synonyms = {}
    for number, line in enumerate(read_text_file(file).splitlines(), start=1):
        group = [word.strip().lower() for word in line.split("#", 1)[0].split(",") if word.strip()]
        if len(group) == 1:
            raise DataError(f"{file}:{number}: a synonym group needs at least two comma-separated words")
        for word in group:
            known = synonyms.setdefault(word, [])
            known += [other for other in group if other != word and other not in known]
    if not synonyms:
        raise DataError(f"{file}: no synonym groups")
    return synonyms


def _split(token: str) -> tuple[str, str, str]:
    """``'"Rise,'`` → ``('"', 'Rise', ',')``."""
    return _AFFIXES.match(token).groups()


def _word(token: str) -> str:
    """The lowercase word in a token, as the synonym list spells it."""
    return _split(token)[1].lower()


def _synonym(token: str, synonyms: Synonyms, rng: random.Random) -> str:
    """A synonym for the word in ``token``, with the token's punctuation and leading capital."""
    before, word, after = _split(token)
    choice = rng.choice(synonyms[word.lower()])
    return before + (choice[:1].upper() + choice[1:] if word[:1].isupper() else choice) + after


def replace(words: list[str], changes: int, rng: random.Random, synonyms: Synonyms) -> list[str]:
    """Up to ``changes`` words that have synonyms, each replaced by one of them."""
    candidates = [i for i, token in enumerate(words) if synonyms.get(_word(token))]
    for i in rng.sample(candidates, min(changes, len(candidates))):
        words[i] = _synonym(words[i], synonyms, rng)
    return words


def insert(words: list[str], changes: int, rng: random.Random, synonyms: Synonyms) -> list[str]:
    """``changes`` times: a synonym of a random word that has one, inserted at a random place."""
    known = [word for word in map(_word, words) if synonyms.get(word)]
    for _ in range(changes if known else 0):
        words.insert(rng.randrange(len(words) + 1), rng.choice(synonyms[rng.choice(known)]))
    return words


def swap(words: list[str], changes: int, rng: random.Random, synonyms: Synonyms) -> list[str]:
    """``changes`` times: two random words trade places."""
    for _ in range(changes):
        i, j = rng.randrange(len(words)), rng.randrange(len(words))
        words[i], words[j] = words[j], words[i]
    return words


def delete(words: list[str], changes: int, rng: random.Random, synonyms: Synonyms) -> list[str]:
    """``changes`` random words removed, one always kept."""
    doomed = set(rng.sample(range(len(words)), min(changes, len(words) - 1)))
    return [word for i, word in enumerate(words) if i not in doomed]


Operation = Callable[[list[str], int, random.Random, Synonyms], list[str]]
OPERATIONS: tuple[Operation, ...] = (replace, insert, swap, delete)


def augment(text: str, n: int, alpha: float, seed: int, synonyms: Synonyms) -> list[str]:
    """``n`` variants of ``text``, the same for the same seed. The operations take turns in a seeded
    order; each changes ``max(1, round(alpha × words))`` words (none for ``alpha=0``, which returns
    the text as is). Replacement and insertion leave a text with no listed word unchanged. A variant
    keeps at least one word, so it is never empty unless the text is."""
    words = text.split()
    if alpha == 0 or not words:
        return [text] * n
    rng = random.Random(seed)
    changes = max(1, round(alpha * len(words)))
    order = rng.sample(OPERATIONS, len(OPERATIONS))
    return [" ".join(order[k % len(order)](list(words), changes, rng, synonyms)) for k in range(n)]
