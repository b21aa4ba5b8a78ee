"""Lexically constrained decoding: requested keywords appear in the output.

Two ways, measured against each other in ``bench/apps_write.py``:

- `KeywordBoost`, a logits processor: until a keyword is written, its next token gets a bias — the
  first token of a keyword not yet started, or, while one is partly written, its next token. It
  reads only the row's own ids, so it works wherever processors run (library, continuous batcher,
  server, beam search) and keeps the same seed giving the same text.
- `KeywordBeamGenerator`, a `TextGenerator` running beam search with the boost whose beams are
  ranked by keyword coverage first and log-probability second (a simple form of grid beam search,
  Hokamp & Liu 2017, with one grid row per coverage count).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from luoxia.errors import ConfigError, LuoxiaError
from luoxia.generate.decode import Completion, adjust_logits
from luoxia.generate.interface import FinishReason, GenerationConfig, GenerationResult, LogitsProcessor
from luoxia.generate.postprocess import trim_at_stop
from luoxia.generate.text import CausalLMGenerator

Spelling = tuple[int, ...]  # one tokenisation of a keyword


def contains(ids: Sequence[int], spelling: Spelling) -> bool:
    """Whether ``spelling`` occurs as a contiguous run of ``ids``."""
    n = len(spelling)
    return any(tuple(ids[i : i + n]) == spelling for i in range(len(ids) - n + 1))


def partial_length(ids: Sequence[int], spelling: Spelling) -> int:
    """The longest proper prefix of ``spelling`` that ``ids`` ends with (0: none)."""
    for k in range(min(len(spelling) - 1, len(ids)), 0, -1):
        if tuple(ids[len(ids) - k :]) == spelling[:k]:
            return k
    return 0


@dataclass(frozen=True)
class KeywordBoost:
    """Adds ``bias`` to the logit of each unwritten keyword's next token.

    ``keywords``: per keyword, its spellings (token ids; a BPE keyword has one with and one without
    a leading space). ``start``: how many leading ids of every row are prompt (not searched: a
    keyword in the instructions does not count as written). Stateless: a row's ids say everything.
    """

    keywords: tuple[tuple[Spelling, ...], ...]
    start: int
    bias: float = 4.0

    def written(self, ids: Sequence[int]) -> list[bool]:
        """Per keyword: does the generated part of ``ids`` (after ``start``) contain it?"""
        generated = ids[self.start :]
        return [any(contains(generated, s) for s in spellings) for spellings in self.keywords]

    def next_tokens(self, ids: Sequence[int]) -> set[int]:
        """The tokens to boost after ``ids``: per unwritten keyword, its partial spelling's next token
        where one is under way, else each spelling's first token."""
        generated = ids[self.start :]
        boosted: set[int] = set()
        for spellings, done in zip(self.keywords, self.written(ids), strict=True):
            if done:
                continue
            partial = [(partial_length(generated, s), s) for s in spellings]
            under_way = [s[k] for k, s in partial if k > 0]
            boosted.update(under_way or [s[0] for s in spellings])
        return boosted

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``ids`` (1, T) or (T,), ``logits`` (1, V) or (V,) → boosted logits of the same shape."""
        tokens = self.next_tokens(ids.reshape(-1).tolist())
        if not tokens:
            return logits
        bonus = torch.zeros(logits.size(-1), device=logits.device, dtype=logits.dtype)
        bonus[sorted(t for t in tokens if t < logits.size(-1))] = self.bias
        return logits + bonus


class Encodes(Protocol):
    def encode(self, text: str) -> list[int]: ...


def spellings(tokenizer: Encodes, keyword: str) -> tuple[Spelling, ...]:
    """A keyword's token spellings: as written and after a space (BPE spells a word differently
    mid-sentence); duplicates, empty ones and those the tokenizer cannot spell dropped."""
    found: list[Spelling] = []
    for text in (keyword, " " + keyword):
        try:
            ids = tuple(int(i) for i in tokenizer.encode(text))
        except LuoxiaError:  # e.g. a character tokenizer that has never seen a space
            continue
        if text.startswith(" ") and len(ids) > 1 and found and ids[1:] == found[0]:
            continue  # the space is its own token: the bare spelling already covers it
        if ids and ids not in found:
            found.append(ids)
    if not found:
        raise ConfigError(f"keyword '{keyword}': this model's tokenizer cannot spell it")
    return tuple(found)


def keyword_boost(tokenizer: Encodes, keywords: Sequence[str], start: int, bias: float = 4.0) -> KeywordBoost:
    """A `KeywordBoost` for ``keywords`` under ``tokenizer`` (anything with ``encode``)."""
    return KeywordBoost(tuple(spellings(tokenizer, k) for k in keywords), start, bias)


def coverage(processors: Sequence[LogitsProcessor], ids: Sequence[int]) -> int:
    """How many keywords of the `KeywordBoost` among ``processors`` ``ids`` contains (0 without one)."""
    return sum(sum(p.written(ids)) for p in processors if isinstance(p, KeywordBoost))


@dataclass
class Beam:
    ids: list[int]  # generated ids
    logprobs: list[float]
    score: float  # sum of logprobs
    covered: int


class KeywordBeamGenerator:
    """A `TextGenerator` whose ``generate`` runs beam search over ``base`` ranked by keyword coverage
    (of the `KeywordBoost` among the processors) first, then log-probability. The rows of one prompt
    given k times are the k best beams of one search (``n`` candidates of one request); the search is
    deterministic, so the seed plays no part. ``width``: beams kept per step (at least k). ``can_end``:
    whether a beam's text may end here (beam search favours short texts: a genre's minimum form)."""

    runs_logits_processors = True

    def __init__(self, base: CausalLMGenerator, width: int = 4, can_end: Callable[[str], bool] | None = None):
        self.base, self.width, self.can_end = base, width, can_end
        self.name, self.context_length = base.name, base.context_length

    def count_tokens(self, text: str) -> int:
        return self.base.count_tokens(text)

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        return self.base.render_chat(messages)

    def generate(self, prompts: str | Sequence[str], config: GenerationConfig | None = None,
                 logits_processors: Sequence[LogitsProcessor] = ()) -> list[GenerationResult]:
        """One search per distinct prompt; its i-th copy gets the i-th best beam."""
        config = config or GenerationConfig()
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ranked = {p: self.search(p, config, logits_processors, prompts.count(p)) for p in dict.fromkeys(prompts)}
        taken: dict[str, int] = {}
        results = []
        for prompt in prompts:
            index = taken.get(prompt, 0)
            taken[prompt] = index + 1
            results.append(ranked[prompt][min(index, len(ranked[prompt]) - 1)])
        return results

    def stream(self, prompt: str, config: GenerationConfig | None = None,
               logits_processors: Sequence[LogitsProcessor] = ()) -> Generator[str, None, GenerationResult]:
        (result,) = self.generate([prompt], config, logits_processors)
        yield result.text
        return result

    def _may_end(self, ids: list[int]) -> bool:
        return bool(ids) and (self.can_end is None or self.can_end(self.base.tokenizer.decode(ids)))

    def _ends(self, ids: list[int], config: GenerationConfig) -> bool:
        return bool(config.stop) and trim_at_stop(self.base.tokenizer.decode(ids), config.stop)[1]

    @torch.no_grad()
    def search(self, prompt: str, config: GenerationConfig, processors: Sequence[LogitsProcessor],
               count: int = 1) -> list[GenerationResult]:
        """The ``count`` best finished beams, best first (coverage, then length-normalised log-prob)."""
        width = max(self.width, count)
        prompt_ids = self.base.prompt_ids(prompt)
        decoder = self.base.start_decoder([prompt_ids] * width, config.use_cache)
        beams = [Beam([], [], 0.0, coverage(processors, prompt_ids))]
        finished: list[tuple[Beam, FinishReason]] = []
        eos = self.base.tokenizer.eos_id
        for step in range(config.max_new_tokens):
            live = len(beams)
            adjusted = adjust_logits(decoder.logits[:live], decoder.histories[:live],
                                     [config.repetition_penalty] * live, [list(processors)] * live)
            logprobs = F.log_softmax(adjusted, dim=-1)  # (live, V)
            top_lp, top_ids = logprobs.topk(min(2 * width, logprobs.size(-1)), dim=-1)  # (live, 2w)
            candidates: list[tuple[int, int, Beam]] = []  # (origin, token, extended beam)
            for origin, beam in enumerate(beams):
                for lp, token in zip(top_lp[origin].tolist(), top_ids[origin].tolist(), strict=True):
                    if lp == float("-inf"):
                        continue
                    if token == eos and not self._may_end(beam.ids):
                        continue  # an empty or too short text is no candidate
                    if token == eos:
                        finished.append((Beam(beam.ids, beam.logprobs, beam.score, beam.covered), "stop"))
                        continue
                    ids = [*beam.ids, token]
                    covered = coverage(processors, [*prompt_ids, *ids])
                    candidates.append((origin, token, Beam(ids, [*beam.logprobs, lp], beam.score + lp, covered)))
            candidates.sort(key=lambda c: (c[2].covered, c[2].score), reverse=True)
            kept: list[tuple[int, int, Beam]] = []
            for origin, token, beam in candidates:
                if self._ends(beam.ids, config):
                    finished.append((beam, "stop"))
                elif len(kept) < width:
                    kept.append((origin, token, beam))
            if not kept or step + 1 == config.max_new_tokens:
                finished.extend((beam, "length") for _, _, beam in kept)
                break
            padded = kept + [kept[0]] * (width - len(kept))  # the decoder keeps ``width`` rows
            decoder.reorder(torch.tensor([origin for origin, _, _ in padded]))
            decoder.logits = decoder.push(torch.tensor([token for _, token, _ in padded]))
            beams = [beam for _, _, beam in kept]
        ranked = sorted(finished, key=lambda f: (f[0].covered, f[0].score / max(1, len(f[0].ids))
                                                 ** config.length_penalty), reverse=True)
        unique: dict[tuple[int, ...], tuple[Beam, FinishReason]] = {}
        for beam, reason in ranked:
            unique.setdefault(tuple(beam.ids), (beam, reason))
        return [self._result(beam, reason, len(prompt_ids), config) for beam, reason in list(unique.values())[:count]]

    def _result(self, beam: Beam, reason: FinishReason, prompt_tokens: int,
                config: GenerationConfig) -> GenerationResult:
        return Completion(prompt_tokens, list(beam.ids), list(beam.logprobs), reason).result(self.base.tokenizer,
                                                                                            config)
