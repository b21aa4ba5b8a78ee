"""Cleaning and deduplication of documents before tokenization.

* Unicode normalisation (NFC by default: NFKC would turn the full-width Chinese comma "，" into ",").
* Control characters are removed, except newline and tab; Windows line ends become ``\\n``.
* Exact duplicates are found by hashing whitespace-normalised text; near duplicates by MinHash LSH
  (``datasketch``) over character 5-gram shingles, which works for scripts without spaces too.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from datasketch import MinHash

Normalization = Literal["NFC", "NFKC", "none"]

# Cc (control) characters other than \t and \n, plus the byte-order mark.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff]")
_SPACES = re.compile(r"\s+")


def clean_text(text: str, normalization: Normalization = "NFC") -> str:
    """Normalise line ends and Unicode, drop control characters, trim surrounding whitespace."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if normalization != "none":
        text = unicodedata.normalize(normalization, text)
    return _CONTROL.sub("", text).strip()


def _fingerprint(text: str) -> str:
    return hashlib.sha256(_SPACES.sub(" ", text).strip().lower().encode("utf-8")).hexdigest()


def _shingles(text: str, size: int) -> set[bytes]:
    flat = _SPACES.sub(" ", text).lower()
    return {flat[i : i + size].encode("utf-8") for i in range(max(1, len(flat) - size + 1))}


@dataclass
class DedupStats:
    """What deduplication removed, for ``meta.json`` and the user's summary."""

    kept: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    empty: int = 0


class Deduplicator:
    """Streams documents and keeps the first of each exact or near-duplicate group.

    ``threshold`` is the estimated Jaccard similarity of 5-gram shingle sets above which a document
    counts as a near duplicate of one already kept; ``None`` turns near-duplicate removal off, and
    ``exact=False`` turns all deduplication off (empty documents are still dropped).
    """

    def __init__(self, exact: bool = True, threshold: float | None = 0.8, num_perm: int = 128,
                 shingle: int = 5, seed: int = 1):
        # imported here: datasketch (and the scipy it loads) costs every `luoxia` command about a second
        from datasketch import MinHash, MinHashLSH

        self.exact = exact
        self.shingle = shingle
        self.seen: set[str] = set()
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm) if exact and threshold else None
        # Drawing the hash permutations once and sharing them is ~5x faster than per document.
        self.template = MinHash(num_perm=num_perm, seed=seed)
        self.stats = DedupStats()

    def _minhash(self, text: str) -> MinHash:
        signature = self.template.copy()  # the shared permutations, no values yet
        signature.update_batch(list(_shingles(text, self.shingle)))
        return signature

    def _is_duplicate(self, text: str) -> bool:
        key = _fingerprint(text)
        if key in self.seen:
            self.stats.exact_duplicates += 1
            return True
        if self.lsh is not None and len(text) >= 2 * self.shingle:
            signature = self._minhash(text)
            if self.lsh.query(signature):
                self.stats.near_duplicates += 1
                return True
            self.lsh.insert(key, signature)
        self.seen.add(key)
        return False

    def keep(self, text: str) -> bool:
        """True if ``text`` is new: not empty, and (when deduplicating) not near anything kept."""
        if not text:
            self.stats.empty += 1
            return False
        if self.exact and self._is_duplicate(text):
            return False
        self.stats.kept += 1
        return True


def clean_and_dedup(texts: Iterable[str], normalization: Normalization = "NFC",
                    near_dup_threshold: float | None = 0.8, dedup: bool = True,
                    seed: int = 1) -> tuple[list[str], DedupStats]:
    """Clean every text and drop empty, duplicate and near-duplicate ones, keeping order."""
    cleaned = [clean_text(raw, normalization) for raw in texts]
    # A single document has nothing to be a near duplicate of; skip its (costly) MinHash.
    threshold = near_dup_threshold if len(cleaned) > 1 else None
    deduplicator = Deduplicator(exact=dedup, threshold=threshold, seed=seed)
    kept = [text for text in cleaned if deduplicator.keep(text)]
    return kept, deduplicator.stats
