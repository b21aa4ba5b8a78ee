"""The masked language model's data: its special tokens, sentence-pair framing, and BERT's masking.

A masked-LM tokenizer is an ordinary char or BPE tokenizer (`luoxia.data.tokenizer`) trained with
``[PAD] [CLS] [SEP] [MASK]`` as its first ids 0–3 (then ``<|endoftext|>`` and ``<unk>`` as for the
GPT). An input is ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with segment ids 0 for ``[CLS] a
[SEP]`` and 1 for ``b [SEP]``, as in BERT.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import jieba
import numpy as np
import torch
from pydantic import Field, model_validator

from luoxia.config import Config
from luoxia.data.tokenizer import TextTokenizer
from luoxia.errors import DataError

jieba.setLogLevel(logging.WARNING)  # its dictionary-loading notice is not the user's business

PAD_TOKEN = "[PAD]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
MLM_SPECIALS = (PAD_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)  # their ids are 0, 1, 2, 3


@dataclass(frozen=True)
class MLMSpecials:
    """The ids of a masked-LM tokenizer's special tokens, and every id that is never masked."""

    pad: int
    cls: int
    sep: int
    mask: int
    never_masked: frozenset[int]  # all the tokenizer's special tokens (end-of-text and <unk> too)

    @classmethod
    def of(cls, tokenizer: TextTokenizer) -> MLMSpecials:
        """The specials of ``tokenizer``; a clear error when it was trained without them."""
        ids = {token: tokenizer.backend.token_to_id(token) for token in MLM_SPECIALS}
        missing = [token for token, i in ids.items() if i is None]
        if missing:
            raise DataError(f"this tokenizer has no {' '.join(missing)}: it was not trained for a masked LM "
                            "(prepare the data through a `task: mlm` recipe)")
        added = tokenizer.backend.get_added_tokens_decoder()
        never = frozenset(i for i, token in added.items() if token.special) | frozenset(ids.values())  # type: ignore[arg-type]
        return cls(ids[PAD_TOKEN], ids[CLS_TOKEN], ids[SEP_TOKEN], ids[MASK_TOKEN], never)  # type: ignore[arg-type]


def frame(ids_a: Sequence[int], ids_b: Sequence[int] | None, specials: MLMSpecials) -> tuple[list[int], list[int]]:
    """``[CLS] a [SEP]`` (segments all 0) or ``[CLS] a [SEP] b [SEP]`` (0 up to the first
    ``[SEP]``, 1 after): the input ids and their segment ids, of equal length."""
    ids = [specials.cls, *ids_a, specials.sep]
    segments = [0] * len(ids)
    if ids_b is not None:
        ids += [*ids_b, specials.sep]
        segments += [1] * (len(ids_b) + 1)
    return ids, segments


class MaskingConfig(Config):
    """BERT's masking: which tokens are predicted, and what the model sees in their place."""

    mask_prob: float = Field(0.15, gt=0, lt=1, description="share of non-special tokens chosen for prediction")
    replace_mask: float = Field(0.8, ge=0, le=1, description="share of chosen tokens shown as [MASK]")
    replace_random: float = Field(0.1, ge=0, le=1, description="share of chosen tokens shown as a random "
                                  "token (the rest are shown unchanged)")
    whole_word: bool = Field(False, description="choose whole words: jieba words in Chinese, "
                             "letters/digits runs and single punctuation marks elsewhere")

    @model_validator(mode="after")
    def _shares(self) -> MaskingConfig:
        if self.replace_mask + self.replace_random > 1:
            raise ValueError("replace_mask + replace_random must be at most 1")
        return self


# Byte-level BPE writes each byte as a printable character (GPT-2's table): bytes that are
# printable Latin-1 stand for themselves, the other 68 are shifted to 256 onwards, in order.
_PRINTABLE = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
_BYTE_OF_CHAR = {chr(b): b for b in _PRINTABLE} | {
    chr(256 + n): b for n, b in enumerate(b for b in range(256) if b not in set(_PRINTABLE))}

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Runs of CJK characters (cut by jieba), runs of other letters/digits, and single other non-spaces.
_WORDS = re.compile(rf"(?P<cjk>[{_CJK}]+)|[^\W{_CJK}]+|[^\w\s]")


def token_bytes(tokenizer: TextTokenizer) -> list[bytes]:
    """The UTF-8 bytes each id stands for (b"" for special tokens): how tokens map onto text offsets."""
    backend = tokenizer.backend
    special = {i for i, token in backend.get_added_tokens_decoder().items() if token.special}
    table: list[bytes] = []
    for i in range(tokenizer.vocab_size):
        piece = backend.id_to_token(i) or ""
        if i in special:
            table.append(b"")
        elif tokenizer.is_char_level:
            table.append(piece.encode("utf-8"))
        else:
            table.append(bytes(_BYTE_OF_CHAR.get(c, 0) for c in piece))
    return table


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the words of ``text``: jieba's words inside runs of Chinese
    characters, runs of letters and digits elsewhere, and each punctuation mark on its own."""
    spans: list[tuple[int, int]] = []
    for match in _WORDS.finditer(text):
        if match["cjk"] is None:
            spans.append(match.span())
            continue
        start = match.start()
        for word in jieba.cut(match["cjk"]):
            spans.append((start, start + len(word)))
            start += len(word)
    return spans


def word_starts(ids: Sequence[int], table: Sequence[bytes]) -> np.ndarray:
    """(T,) True where a token begins a new word, False where it continues the previous token's
    word (a special token always begins one). Words come from `word_spans` of the decoded text and
    are mapped back to tokens through byte offsets; a token that straddles two words joins them."""
    pieces = [table[i] for i in ids]
    data = b"".join(pieces)
    # surrogateescape keeps one character per undecodable byte, so character → byte offsets stay exact
    text = data.decode("utf-8", errors="surrogateescape")
    char_bytes = np.array([1 if "\udc80" <= c <= "\udcff" else len(c.encode("utf-8")) for c in text], dtype=np.int64)
    byte_of_char = np.concatenate([[0], np.cumsum(char_bytes)])
    word_of_byte = np.full(len(data), -1, dtype=np.int64)
    for n, (start, end) in enumerate(word_spans(text)):
        word_of_byte[byte_of_char[start] : byte_of_char[end]] = n
    starts = np.ones(len(pieces), dtype=bool)
    offset, previous_word = 0, -1
    for i, piece in enumerate(pieces):
        if piece:
            first = word_of_byte[offset]
            starts[i] = first == -1 or first != previous_word
            offset += len(piece)
            previous_word = int(word_of_byte[offset - 1])
        else:
            previous_word = -1
    return starts


def mask_tokens(ids: np.ndarray, maskable: np.ndarray, starts: np.ndarray | None, rng: np.random.Generator,
                config: MaskingConfig, mask_id: int, random_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masking of one sequence ``ids`` (T,): (inputs, targets), targets -100 where nothing is
    predicted. ``round(mask_prob · n)`` of the n ``maskable`` tokens are chosen (at least one) — whole
    words when ``starts`` marks where words begin, taken in a random order while they fit — and each
    chosen token is shown as [MASK], as a random token from ``random_ids``, or unchanged."""
    candidates = np.flatnonzero(maskable)
    inputs, targets = ids.copy(), np.full_like(ids, -100)
    if not len(candidates):
        return inputs, targets
    group = np.cumsum(starts[candidates]) - 1 if starts is not None else np.arange(len(candidates))
    group -= group[0]  # a window may open inside a word: its first candidate starts a group
    n_groups, budget = int(group[-1]) + 1, max(1, round(config.mask_prob * len(candidates)))
    sizes = np.bincount(group, minlength=n_groups)
    chosen_groups, total = [], 0
    for g in rng.permutation(n_groups):
        if total + sizes[g] <= budget:
            chosen_groups.append(g)
            total += sizes[g]
            if total == budget:
                break
    chosen = candidates[np.isin(group, chosen_groups)]
    targets[chosen] = ids[chosen]
    draw = rng.random(len(chosen))
    as_mask = draw < config.replace_mask
    as_random = (draw >= config.replace_mask) & (draw < config.replace_mask + config.replace_random)
    inputs[chosen[as_mask]] = mask_id
    inputs[chosen[as_random]] = rng.choice(random_ids, size=int(as_random.sum()))
    return inputs, targets


class MLMBatches:
    """Masked windows of one token file: ``[CLS] window [SEP]``, or with ``nsp`` a window cut at a
    random point into ``[CLS] a [SEP] b [SEP]`` whose ``b`` is, half the time, a span from elsewhere.

    Windows run across document boundaries (``<|endoftext|>`` is a special token: never masked), so
    every row is ``block_size`` long and nothing is padded. ``batch(step, micro)`` picks the global
    batch's windows from ``(seed, step, micro)`` and masks global row ``r`` from ``(seed, step,
    micro, r)``: a pure function, so a resumed run (or any world size) sees the same batches.
    """

    def __init__(self, tokens: np.ndarray, tokenizer: TextTokenizer, block_size: int, batch_size: int, seed: int,
                 masking: MaskingConfig, nsp: bool = False, rank: int = 0, world_size: int = 1):
        self.span = block_size - (3 if nsp else 2)  # content tokens of a row
        if self.span < 2 or len(tokens) <= self.span + 1:
            raise DataError(f"only {len(tokens)} tokens: too few for masked windows of block_size={block_size}; "
                            "use more data or a smaller block_size")
        self.tokens, self.block_size, self.batch_size, self.seed = tokens, block_size, batch_size, seed
        self.masking, self.nsp, self.rank, self.world_size = masking, nsp, rank, world_size
        self.specials = MLMSpecials.of(tokenizer)
        never = np.fromiter(self.specials.never_masked, dtype=np.int64)
        self.never_masked = never
        self.random_ids = np.setdiff1d(np.arange(tokenizer.vocab_size), never)
        self.table = token_bytes(tokenizer) if masking.whole_word else None

    def row(self, start: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """One masked row from the window at ``start``: (inputs, targets, segments[, is_random])."""
        window = np.asarray(self.tokens[start : start + self.span], dtype=np.int64)
        if self.nsp:
            cut = int(rng.integers(1, self.span))
            is_random = bool(rng.random() < 0.5)
            second = window[cut:]
            if is_random:  # a span of the same length from anywhere but the true continuation
                other = int(rng.integers(0, len(self.tokens) - len(second)))
                other = other if other != start + cut else (other + len(second)) % (len(self.tokens) - len(second))
                second = np.asarray(self.tokens[other : other + len(second)], dtype=np.int64)
            ids, segments = frame(window[:cut].tolist(), second.tolist(), self.specials)
        else:
            ids, segments = frame(window.tolist(), None, self.specials)
        ids_array = np.asarray(ids, dtype=np.int64)
        maskable = ~np.isin(ids_array, self.never_masked)
        starts = word_starts(ids, self.table) if self.table is not None else None
        inputs, targets = mask_tokens(ids_array, maskable, starts, rng, self.masking, self.specials.mask,
                                      self.random_ids)
        extra = (np.asarray(int(is_random)),) if self.nsp else ()
        return inputs, targets, np.asarray(segments, dtype=np.int64), *extra

    def rows(self, starts: Sequence[int], seeds: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        """Rows at ``starts``, each masked by a generator seeded with its entry of ``seeds``, as a batch:
        inputs, targets, segments (B, T) and, with nsp, next-sentence labels (B,) (1 = random)."""
        made = [self.row(int(s), np.random.default_rng(list(seed))) for s, seed in zip(starts, seeds, strict=True)]
        return tuple(torch.from_numpy(np.stack(column)) for column in zip(*made, strict=True))

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, ...]:
        rng = np.random.default_rng([self.seed, step, micro])
        starts = rng.integers(0, len(self.tokens) - self.span, self.batch_size * self.world_size)
        mine = range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        return self.rows([starts[r] for r in mine], [(self.seed, step, micro, r) for r in mine])

    def sequential(self, batch_size: int, max_rows: int | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        """Non-overlapping windows in file order, each masked from ``(seed, its index)`` (evaluation)."""
        starts = list(range(0, len(self.tokens) - self.span, self.span))[:max_rows]
        for first in range(0, len(starts), batch_size):
            chunk = range(first, min(first + batch_size, len(starts)))
            yield self.rows([starts[i] for i in chunk], [(self.seed, i) for i in chunk])
