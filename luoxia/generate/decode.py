"""The one decode loop: a synchronous engine whose rows join and leave between steps, each with its
own settings and its own seeded generator.

Library generation and streaming (`luoxia.generate.text`) run it to completion; the continuous
batcher (`luoxia.generate.batching`) drives it from its worker thread. Every path takes its tokens
from the same `decode_step` — adjust the logits (repetition penalty, logits processors), sample
with one uniform draw per row, record log-probabilities — so the same request with the same seed
gives the same text on every path, whatever else shares the batch. Beam search scores with the
same `adjust_logits`.

Seeds: row ``i`` of a request (the i-th prompt, or the i-th choice, prompt-major) draws from a
generator seeded with ``seed + i`` (`row_seed`); without a seed, every row gets a fresh random one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F

from luoxia.generate.interface import FinishReason, GenerationConfig, GenerationResult, LogitsProcessor
from luoxia.generate.postprocess import collapse_repeats, stop_prefix_length, trim_at_stop
from luoxia.generate.sampling import apply_repetition_penalty, presence_mask, sample_rows
from luoxia.models.gpt import GPT
from luoxia.models.kv_cache import KVCache


def left_pad(sequences: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, T) ids right-aligned with zeros on the left, and the mask of real tokens (None if no padding)."""
    width = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), width, dtype=torch.long)
    mask = torch.zeros(len(sequences), width, dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = True
    return ids.to(device), (mask.to(device) if not bool(mask.all()) else None)


class TokenizerLike(Protocol):
    eos_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...


class StepDecoder(Protocol):
    """A model fed one token per sequence at a time: the histories so far and the next-token logits."""

    histories: list[list[int]]
    logits: torch.Tensor  # (B, V) float32

    def push(self, next_ids: torch.Tensor) -> torch.Tensor: ...

    def reorder(self, index: torch.Tensor) -> None: ...


# (prompt histories, use_cache) → a decoder that has read them
DecoderFactory = Callable[[Sequence[Sequence[int]], bool], StepDecoder]
StepModel = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


class BatchDecoder(Protocol):
    """Sequences that join (`add`) and leave (`remove`) between steps; row order is join order."""

    histories: list[list[int]]
    logits: torch.Tensor  # (B, V) float32: next-token logits of every row

    def add(self, ids: list[int]) -> None: ...

    def remove(self, rows: Sequence[int]) -> None: ...

    def push(self, next_ids: torch.Tensor) -> None: ...


@dataclass
class Completion:
    """One prompt's completion while it decodes: its tokens, their log-probabilities, and why it
    ended."""

    prompt_tokens: int
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finished: FinishReason | None = None

    def append(self, token: int, logprob: float, tokenizer: TokenizerLike, config: GenerationConfig) -> None:
        """Add a sampled token, or end at end-of-text, a stop string or ``max_new_tokens``."""
        if token == tokenizer.eos_id:
            self.finished = "stop"
            return
        self.ids.append(token)
        self.logprobs.append(logprob)
        if config.stop and trim_at_stop(tokenizer.decode(self.ids), config.stop)[1]:
            self.finished = "stop"
        elif len(self.ids) >= config.max_new_tokens:
            self.finished = "length"

    def settled_text(self, tokenizer: TokenizerLike, config: GenerationConfig) -> str:
        """The text that can no longer change: cut at a stop string, and while decoding goes on
        without an incomplete UTF-8 character or the start of a possible stop string at its end."""
        text, _ = trim_at_stop(tokenizer.decode(self.ids), config.stop)
        if self.finished is None:
            text = text.rstrip("\ufffd")
            text = text[: len(text) - stop_prefix_length(text, config.stop)]
        return text

    def result(self, tokenizer: TokenizerLike, config: GenerationConfig) -> GenerationResult:
        text, _ = trim_at_stop(tokenizer.decode(self.ids), config.stop)
        if config.collapse_repeats:
            text = collapse_repeats(text, config.collapse_repeats)
        return GenerationResult(text, self.ids, self.finished or "length", self.prompt_tokens, self.logprobs)


def append_tokens(histories: list[list[int]], next_ids: torch.Tensor) -> None:
    """Append one token per row (B,) to each row's history, in place."""
    for history, token in zip(histories, next_ids.tolist(), strict=True):
        history.append(token)


def kept_rows(count: int, leaving: Sequence[int]) -> list[int]:
    """The rows of ``count`` that stay when ``leaving`` go, in their order."""
    gone = set(leaving)
    return [i for i in range(count) if i not in gone]


def row_seed(seed: int | None, index: int) -> int | None:
    """The seed of row ``index`` of a request seeded with ``seed``: rows never share a stream."""
    return None if seed is None else seed + index


def row_generator(seed: int | None, device: torch.device | str) -> torch.Generator:
    """A row's own generator: seeded, or from a fresh random seed."""
    generator = torch.Generator(device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


@dataclass
class Row:
    """One sequence in the engine: its prompt, settings, processors, generator and completion."""

    prompt_ids: list[int]
    config: GenerationConfig
    processors: list[LogitsProcessor]
    generator: torch.Generator
    completion: Completion = field(init=False)

    def __post_init__(self) -> None:
        self.completion = Completion(len(self.prompt_ids))


def adjust_logits(logits: torch.Tensor, histories: Sequence[Sequence[int]], penalties: Sequence[float],
                  processors: Sequence[Sequence[LogitsProcessor]]) -> torch.Tensor:
    """Logits (B, V) after each row's repetition penalty and logits processors, applied to that row
    alone with its own history (1, T): a row's adjustment never sees its neighbours or padding."""
    rows = [row for row in range(logits.size(0)) if penalties[row] != 1.0 or processors[row]]
    if not rows:
        return logits
    logits = logits.clone()
    for row in rows:
        ids = torch.tensor([list(histories[row])], device=logits.device)  # (1, T)
        adjusted = logits[row : row + 1]  # (1, V)
        if penalties[row] != 1.0:
            present = presence_mask(ids, torch.ones_like(ids, dtype=torch.bool), logits.size(-1))
            adjusted = apply_repetition_penalty(adjusted, present, penalties[row])
        for processor in processors[row]:
            adjusted = processor(ids, adjusted)
        logits[row] = adjusted[0]
    return logits


def sample_step(logits: torch.Tensor, configs: Sequence[GenerationConfig],
                generators: Sequence[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token ids (B,) and their log-probabilities (B,) under the adjusted ``logits`` (B, V):
    each row with its own temperature, top-k, top-p and one uniform draw from its own generator."""
    vocab, device = logits.size(-1), logits.device
    temperature = torch.tensor([c.temperature for c in configs], device=device)
    top_k = torch.tensor([c.top_k or vocab for c in configs], device=device)
    top_p = torch.tensor([c.top_p or 1.0 for c in configs], device=device)
    uniform = torch.cat([torch.rand(1, generator=g, device=device) for g in generators])
    tokens = sample_rows(logits, temperature, top_k, top_p, uniform)
    logprobs = F.log_softmax(logits, dim=-1).gather(1, tokens[:, None]).squeeze(1)
    return tokens, logprobs


def decode_step(logits: torch.Tensor, histories: Sequence[Sequence[int]],
                rows: Sequence[Row]) -> tuple[torch.Tensor, torch.Tensor]:
    """The one decode step: adjust each row's logits, sample, and score the samples."""
    adjusted = adjust_logits(logits, histories, [r.config.repetition_penalty for r in rows],
                             [r.processors for r in rows])
    return sample_step(adjusted, [r.config for r in rows], [r.generator for r in rows])


class GPTBatchDecoder:
    """Luoxia GPT rows over one shared KV cache that rows join and leave between steps.

    A row reads its prompt into a cache of its own and joins the batch's (`KVCache.join`). When a
    row's span fills the cache it re-reads its last half-context alone and joins again, so a long
    generation runs past the context without touching its neighbours. Without the cache
    (``use_cache=False``) every step re-reads each row's last ``block_size`` tokens alone.
    ``step_model`` (the model compiled, or the model) runs the one-token steps.
    """

    def __init__(self, model: GPT, step_model: StepModel | None = None, use_cache: bool = True):
        self.model = model
        self.step_model = step_model if step_model is not None else model
        self.use_cache = use_cache
        self.block_size = model.config.block_size
        self.device = model.lm_head.weight.device
        self.cache: KVCache | None = None
        self.histories: list[list[int]] = []
        self.logits = torch.empty(0, model.lm_head.weight.size(0), device=self.device)  # (0, V)

    @torch.no_grad()
    def _read(self, ids: Sequence[int]) -> tuple[torch.Tensor, KVCache | None]:
        """Logits (1, V) after reading ``ids`` alone, and the row's own cache (None without one)."""
        own = self.model.new_cache(1) if self.use_cache else None
        logits, _ = self.model(torch.tensor([list(ids)], device=self.device), cache=own, last_only=True)
        return logits[:, -1].float(), own

    def _join(self, own: KVCache | None) -> None:
        if own is None:
            return
        if self.cache is None:
            self.cache = own
        else:
            self.cache.join(own)

    def add(self, ids: list[int]) -> None:
        """Read a prompt (its last ``block_size`` tokens) and join the batch as its last row."""
        logits, own = self._read(ids[-self.block_size :])
        self._join(own)
        self.histories.append(list(ids))
        self.logits = torch.cat([self.logits, logits])

    def remove(self, rows: Sequence[int]) -> None:
        keep = kept_rows(len(self.histories), rows)
        self.histories = [self.histories[i] for i in keep]
        self.logits = self.logits[keep]
        if self.cache is None:
            return
        if not keep:
            self.cache = None
        elif len(keep) < self.cache.seen.numel():
            self.cache.reorder(torch.tensor(keep, device=self.device))

    @torch.no_grad()
    def push(self, next_ids: torch.Tensor) -> None:
        """Append one token per row (B,) and compute every row's next logits."""
        append_tokens(self.histories, next_ids)
        cache = self.cache
        if not self.use_cache or cache is None:
            self.logits = torch.cat([self._read(h[-self.block_size :])[0] for h in self.histories])
            return
        if cache.length >= cache.max_len:
            cache.compact()
        full = cache.key_valid[:, 0].tolist() if cache.length >= cache.max_len else []
        if not any(full):
            logits, _ = self.step_model(next_ids[:, None].to(self.device), cache=cache, last_only=True)
            self.logits = logits[:, -1].float()
            return
        self._refill_full_rows([i for i, f in enumerate(full) if f], next_ids)

    def _refill_full_rows(self, full: list[int], next_ids: torch.Tensor) -> None:
        """Rows whose span fills the cache re-read their last half-context alone; the others step."""
        rest = [i for i in range(len(self.histories)) if i not in set(full)]
        pieces = []
        if rest and self.cache is not None:
            self.cache.reorder(torch.tensor(rest, device=self.device))
            self.cache.compact()
            logits, _ = self.step_model(next_ids[rest][:, None].to(self.device), cache=self.cache, last_only=True)
            pieces.append(logits[:, -1].float())
        else:
            self.cache = None
        for row in full:
            logits, own = self._read(self.histories[row][-(self.block_size // 2) :])
            self._join(own)
            pieces.append(logits)
        order = rest + full  # cache rows now; put them back in join order
        back = torch.tensor(sorted(range(len(order)), key=order.__getitem__), device=self.device)
        assert self.cache is not None  # the refilled rows just joined it
        self.cache.reorder(back)
        self.logits = torch.cat(pieces)[back]


class SingleDecoder:
    """Any model's own `StepDecoder` (a Hugging Face model), one row at a time (no joining)."""

    def __init__(self, start_decoder: DecoderFactory, use_cache: bool = True):
        self.start_decoder = start_decoder
        self.use_cache = use_cache
        self.decoder: StepDecoder | None = None
        self.histories: list[list[int]] = []
        self.logits = torch.empty(0)

    def add(self, ids: list[int]) -> None:
        if self.decoder is not None:
            raise RuntimeError("this model decodes one sequence at a time")
        self.decoder = self.start_decoder([ids], self.use_cache)
        self.histories, self.logits = self.decoder.histories, self.decoder.logits

    def remove(self, rows: Sequence[int]) -> None:
        if rows:
            self.decoder, self.histories, self.logits = None, [], torch.empty(0)

    def push(self, next_ids: torch.Tensor) -> None:
        assert self.decoder is not None
        self.logits = self.decoder.push(next_ids)


class DecodeEngine:
    """Steps every row of a `BatchDecoder` one token at a time; rows join (`add`) up to
    ``max_rows`` and leave when finished (returned by `step`) or when `remove`d."""

    def __init__(self, decoder: BatchDecoder, tokenizer: TokenizerLike, max_rows: int):
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.max_rows = max_rows
        self.rows: list[Row] = []

    @property
    def has_room(self) -> bool:
        return len(self.rows) < self.max_rows

    def add(self, row: Row) -> None:
        self.decoder.add(row.prompt_ids)
        self.rows.append(row)

    def remove(self, rows: Sequence[Row]) -> None:
        leaving = [i for i, r in enumerate(self.rows) if any(r is x for x in rows)]
        if leaving:
            self.decoder.remove(leaving)
            self.rows = [r for i, r in enumerate(self.rows) if i not in set(leaving)]

    def step(self) -> list[Row]:
        """Sample one token for every row; the rows that finished leave and are returned."""
        tokens, logprobs = decode_step(self.decoder.logits, self.decoder.histories, self.rows)
        for row, token, logprob in zip(self.rows, tokens.tolist(), logprobs.tolist(), strict=True):
            row.completion.append(token, logprob, self.tokenizer, row.config)
        finished = [r for r in self.rows if r.completion.finished]
        going_on = [i for i, r in enumerate(self.rows) if not r.completion.finished]
        self.remove(finished)
        if self.rows:
            self.decoder.push(tokens[going_on])
        return finished
