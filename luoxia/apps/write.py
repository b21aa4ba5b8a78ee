"""The writing assistant: text of a genre (五言/七言绝句, news release, ad copy, English prose) from
keywords and a title, with every keyword made to appear, form checks, and n candidates reranked.

A `WriteRequest` names the genre (its Jinja template under ``configs/templates/write_*.j2`` and its
form), the keywords, a title or topic, and the mode:

- ``draft``: a new text; ``continue``: the user's draft is the prefix and the model goes on;
- ``rewrite``: a new text under the same title and keywords, shown as a diff against the draft;
- ``polish``: the draft's units (clauses of a poem, sentences of prose) are kept from the start
  while each passes its check; the rest is regenerated (and the last unit too when a keyword is
  still missing); a diff against the draft.

Keywords: ``constraint`` none (plain sampling), boost (`luoxia.generate.constraints.KeywordBoost`:
a logit bias until used) or beam (`KeywordBeamGenerator`: beam search with the boost, coverage
first). Candidates are scored by keyword coverage, mean token log-probability and form, and
ranked by the weighted sum; every part is in the result.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator

from luoxia.config import CONFIGS_DIR, Config
from luoxia.errors import ConfigError
from luoxia.generate.constraints import Encodes, KeywordBeamGenerator, keyword_boost
from luoxia.generate.interface import GenerationConfig, GenerationResult, LogitsProcessor, TextGenerator
from luoxia.generate.templates import render_template
from luoxia.generate.text import CausalLMGenerator
from luoxia.registry import load
from luoxia.safety.guard import Guard, GuardedGenerator

TEMPLATES_DIR = CONFIGS_DIR / "templates"
Mode = Literal["draft", "continue", "rewrite", "polish"]
Constraint = Literal["none", "boost", "beam"]
MAX_KEYWORDS = 8
MAX_CANDIDATES = 16
EMPTY_LIKELIHOOD = -10.0  # the likelihood score of a generation that added nothing (ranked last on it)


@dataclass(frozen=True)
class Genre:
    """A genre: its prompt template and its form — a quatrain (``lines`` × ``chars`` Han characters)
    or prose of ``min_length``–``max_length`` units (Han characters plus Latin words)."""

    name: str
    template: str
    max_new_tokens: int
    lines: int = 0  # 0: prose
    chars: int = 0
    min_length: int = 0
    max_length: int = 0

    @property
    def is_poem(self) -> bool:
        return self.lines > 0


GENRES: dict[str, Genre] = {
    "五言绝句": Genre("五言绝句", "write_poem.j2", 32, lines=4, chars=5),
    "七言绝句": Genre("七言绝句", "write_poem.j2", 40, lines=4, chars=7),
    "news": Genre("news", "write_news.j2", 256, min_length=60, max_length=400),
    "ad": Genre("ad", "write_ad.j2", 96, min_length=15, max_length=80),
    "prose": Genre("prose", "write_prose.j2", 320, min_length=25, max_length=90),
}
ALIASES = {"wuyan": "五言绝句", "qiyan": "七言绝句", "jueju5": "五言绝句", "jueju7": "七言绝句"}
GENRE_NAMES = [*GENRES, *ALIASES]


def genre_of(name: str) -> Genre:
    """The genre ``name`` (or an alias) names; a one-line error listing them otherwise."""
    found = GENRES.get(ALIASES.get(name, name))
    if found is None:
        raise ConfigError(f"unknown genre '{name}'; valid: {', '.join(GENRE_NAMES)}")
    return found


GENERATION = GenerationConfig.model_fields  # the token settings' descriptions


class WriteRequest(Config):
    """One writing request: what to write, how keywords are enforced, and how tokens are picked."""

    genre: str = Field("五言绝句", description=f"the genre: {', '.join(GENRE_NAMES)}")
    keywords: list[str] = Field(default_factory=list, max_length=MAX_KEYWORDS,
                                description="words that must appear")
    title: str = Field("", max_length=200, description="the title or topic")
    mode: Mode = Field("draft", description="draft (new text), continue (the draft is the prefix), rewrite "
                       "(new text, diff against the draft) or polish (keep the draft's passing start)")
    draft: str = Field("", max_length=4000, description="the user's text (continue, rewrite, polish)")
    n: int = Field(4, ge=1, le=MAX_CANDIDATES, description="candidates to generate and rank")
    constraint: Constraint = Field("boost", description="how keywords are made to appear: none, boost "
                                   "(a logit bias until used) or beam (beam search, coverage first)")
    boost: float = Field(4.0, ge=0, le=50, description="the keyword logit bias (boost and beam)")
    beam_width: int = Field(4, ge=1, le=MAX_CANDIDATES, description="beams kept per step (beam)")
    seed: int | None = Field(None, ge=0, lt=2**63 - MAX_CANDIDATES, description="seed: candidate i samples with "
                             "seed + i")
    max_new_tokens: int | None = Field(None, ge=1, le=100_000, description=str(GENERATION["max_new_tokens"]
                                       .description) + "; none: the genre's")
    temperature: float = Field(0.8, ge=0, le=100, description=GENERATION["temperature"].description)
    top_k: int | None = Field(50, ge=1, le=10**7, description=GENERATION["top_k"].description)
    top_p: float | None = Field(None, gt=0, le=1, description=GENERATION["top_p"].description)
    repetition_penalty: float = Field(1.0, gt=0, le=100,
                                      description=GENERATION["repetition_penalty"].description)
    coverage_weight: float = Field(1.0, ge=0, le=1000, description="ranking weight of keyword coverage (0–1)")
    form_weight: float = Field(1.0, ge=0, le=1000, description="ranking weight of the form score (0–1)")
    likelihood_weight: float = Field(0.1, ge=0, le=1000, description="ranking weight of the mean token log-probability")

    @field_validator("keywords", "title", "draft", "genre")
    @classmethod
    def _encodable(cls, value: str | list[str]) -> str | list[str]:
        for text in [value] if isinstance(value, str) else value:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("not valid Unicode (a lone surrogate)") from None
        return value

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        words = list(dict.fromkeys(k.strip() for k in value if k.strip()))
        if any(len(k) > 40 for k in words):
            raise ValueError("a keyword is longer than 40 characters")
        return words


def generation_config(request: WriteRequest, genre: Genre) -> GenerationConfig:
    """The request's token settings as a `GenerationConfig` (the genre's length unless given)."""
    return GenerationConfig(max_new_tokens=request.max_new_tokens or genre.max_new_tokens,
                            temperature=request.temperature, top_k=request.top_k, top_p=request.top_p,
                            repetition_penalty=request.repetition_penalty, seed=request.seed)


# --- form -------------------------------------------------------------------------------------

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_CLAUSE_END = re.compile(r"[，。！？；、,.!?;:：\n]+")
_SENTENCE = re.compile(r"[^.!?。！？\n]*+(?:[.!?。！？]++[\"'”’」』)]*+\s*+|\n|$)")


def han_count(text: str) -> int:
    return len(_HAN.findall(text))


def text_length(text: str) -> int:
    """Length in units: Han characters plus Latin words (so Chinese and English prose compare)."""
    return han_count(text) + len(_WORD.findall(text))


def poem_units(text: str) -> list[str]:
    """A poem's clauses, each with the punctuation that ends it: ``"春眠不觉晓，"``."""
    units, start = [], 0
    for end in _CLAUSE_END.finditer(text):
        units.append(text[start : end.end()])
        start = end.end()
    if text[start:].strip():
        units.append(text[start:])
    return [u for u in units if han_count(u)]


def prose_units(text: str) -> list[str]:
    """Prose's sentences, each with its end punctuation and the space after it."""
    return [s for s in _SENTENCE.findall(text) if s.strip()]


def trim_poem(text: str, genre: Genre) -> str:
    """A quatrain candidate cut after its ``lines``-th clause (a small model runs on into a 律诗)."""
    units = poem_units(text)
    return "".join(units[: genre.lines]).strip() if len(units) > genre.lines else text.strip()


def form_check(text: str, genre: Genre) -> dict[str, Any]:
    """The form's check: for a quatrain the clause count and Han characters per clause
    (punctuation ignored), for prose the length; ``ok`` and a ``score`` in [0, 1]."""
    if genre.is_poem:
        counts = [han_count(u) for u in poem_units(text)]
        right = sum(c == genre.chars for c in counts[: genre.lines])
        ok = len(counts) == genre.lines and right == genre.lines
        return {"ok": ok, "lines": len(counts), "chars_per_line": counts, "want": [genre.lines, genre.chars],
                "score": round(right / max(len(counts), genre.lines), 4)}
    length = text_length(text)
    low, high = genre.min_length, genre.max_length
    score = 1.0 if low <= length <= high else (length / low if length < low else high / length)
    return {"ok": low <= length <= high, "length": length, "want": [low, high], "score": round(score, 4)}


def unit_ok(unit: str, genre: Genre) -> bool:
    """One unit's check for polishing: a clause of the right length, or a finished sentence."""
    if genre.is_poem:
        return han_count(unit) == genre.chars
    return bool(re.search(r"[.!?。！？][\"'”’」』)]*\s*$", unit))


def diff(before: str, after: str) -> list[dict[str, str]]:
    """Character-level edits from ``before`` to ``after`` (difflib), for the studio's diff view:
    ``[{"op": "equal" | "insert" | "delete" | "replace", "a": old text, "b": new text}]``."""
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return [{"op": op, "a": before[i1:i2], "b": after[j1:j2]} for op, i1, i2, j1, j2 in matcher.get_opcodes()]


# --- writing ----------------------------------------------------------------------------------

@dataclass
class Candidate:
    """One text, its checks (keywords found, form) and its score parts."""

    text: str
    keywords: dict[str, bool]
    form: dict[str, Any]
    scores: dict[str, float]
    diff: list[dict[str, str]] | None = None
    finish_reason: str = "stop"
    safety: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class WriteResult:
    genre: str
    mode: str
    constraint: str
    prompt: str
    candidates: list[Candidate]  # best first

    def to_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "candidates"},
                "candidates": [c.to_json() for c in self.candidates]}


@dataclass
class Writer:
    """What writing runs on: ``generator`` samples (a server's is batched and guarded);
    ``beam_base`` is the raw model beam search steps through (None: beam is not offered), whose
    output passes ``guard`` (the server's) as every generation does; ``tokenizer`` spells keywords."""

    generator: TextGenerator
    tokenizer: Encodes
    beam_base: CausalLMGenerator | None = None
    guard: Guard | None = None

    def beam(self, width: int, can_end: Callable[[str], bool] | None = None) -> TextGenerator:
        if self.beam_base is None:
            raise ConfigError(f"constraint 'beam' needs a local model that decodes step by step; "
                              f"{self.generator.name} does not")
        searcher = KeywordBeamGenerator(self.beam_base, width, can_end)
        return GuardedGenerator(searcher, self.guard) if self.guard is not None else searcher


def writer_for(generator: TextGenerator) -> Writer:
    """A `Writer` over a loaded text model (`luoxia.load`)."""
    tokenizer = getattr(generator, "tokenizer", None)
    if tokenizer is None:
        raise ConfigError(f"{generator.name} has no tokenizer to spell keywords with")
    return Writer(generator, tokenizer, generator if isinstance(generator, CausalLMGenerator) else None)


def load_writer(path: str, device: str = "auto") -> Writer:
    """A `Writer` over the run or Hugging Face directory at ``path``."""
    return writer_for(load(path, device))


def render_prompt(genre: Genre, request: WriteRequest, draft: str) -> str:
    return render_template(TEMPLATES_DIR / genre.template, "",
                           {"title": request.title, "keywords": request.keywords, "draft": draft})  # type: ignore[dict-item]


def form_reached(genre: Genre, prefix: str) -> Callable[[str], bool]:
    """Whether ``prefix`` + a generated text is long enough to end: all of a quatrain's clauses, or
    prose's minimum length (beam search ends early otherwise: short texts score best)."""
    if genre.is_poem:
        return lambda text: len(poem_units(prefix + text)) >= genre.lines
    return lambda text: text_length(prefix + text) >= genre.min_length


def polish_prefix(draft: str, genre: Genre, keywords: Sequence[str]) -> str | None:
    """The start of ``draft`` that polishing keeps: its units while each passes `unit_ok`; the last
    one dropped too when a keyword is missing. None: the draft passes as it is."""
    units = (poem_units if genre.is_poem else prose_units)(draft)
    kept = 0
    while kept < len(units) and unit_ok(units[kept], genre) and (not genre.is_poem or kept < genre.lines):
        kept += 1
    complete = kept == len(units) and form_check(draft, genre)["ok"]
    missing = any(k not in draft for k in keywords)
    if complete and not missing:
        return None
    if missing and kept == len(units):
        kept = max(0, kept - 1)
    return "".join(units[:kept])


def write(writer: Writer, request: WriteRequest) -> WriteResult:
    """The request's candidates, best first."""
    genre = genre_of(request.genre)
    if request.mode != "draft" and not request.draft.strip():
        raise ConfigError(f"mode '{request.mode}' works on a draft: give the draft text")
    prefix = {"draft": "", "rewrite": "", "continue": request.draft}.get(request.mode)
    if prefix is None:  # polish
        prefix = polish_prefix(request.draft, genre, request.keywords)
        if prefix is None:
            kept = candidate(request.draft, "", request, genre, None)
            return masked(WriteResult(genre.name, request.mode, request.constraint, "", [kept]), request,
                          writer.guard)
    head = render_prompt(genre, request, "")
    prompt = render_prompt(genre, request, prefix)
    config = generation_config(request, genre)
    start = writer.generator.count_tokens(head) if head else 0  # the instructions: keywords there do not count
    processors: list[LogitsProcessor] = []
    if request.constraint != "none" and request.keywords:
        processors = [keyword_boost(writer.tokenizer, request.keywords, start, request.boost)]
    generator = writer.beam(request.beam_width, form_reached(genre, prefix)) if request.constraint == "beam" \
        else writer.generator
    results = generator.generate([prompt] * request.n, config, processors)
    candidates = [candidate(prefix + r.text, prefix, request, genre, r) for r in results]
    if request.constraint == "beam":  # beams that differ only past a quatrain's end are one candidate
        unique: dict[str, Candidate] = {}
        for each in candidates:
            unique.setdefault(each.text, each)
        candidates = list(unique.values())
    candidates.sort(key=lambda c: c.scores["total"], reverse=True)
    return masked(WriteResult(genre.name, request.mode, request.constraint, prompt, candidates), request, writer.guard)


def masked(result: WriteResult, request: WriteRequest, guard: Guard | None) -> WriteResult:
    """The result as released: the guard passed what the model wrote, but the draft's own text (kept
    by continue and polish, echoed by the prompt and the diffs) is masked here, so no field carries
    personal data raw. Checks and scores stay those of the text as written."""
    if guard is None or guard.policy.pii == "allow":
        return result
    draft = guard.redactor(request.draft)
    result.prompt = guard.redactor(result.prompt)
    for each in result.candidates:
        each.text = guard.redactor(each.text)
        each.diff = None if each.diff is None else diff(draft, each.text)
    return result


def candidate(text: str, prefix: str, request: WriteRequest, genre: Genre,
              result: GenerationResult | None) -> Candidate:
    """A generated text checked and scored; a diff against the draft when rewriting or polishing."""
    if genre.is_poem:
        text = trim_poem(text, genre)
    found = {k: k in text for k in request.keywords}
    form = form_check(text, genre)
    coverage = sum(found.values()) / len(found) if found else 1.0
    logprobs = result.token_logprobs if result is not None else []
    likelihood = sum(logprobs) / len(logprobs) if logprobs else (EMPTY_LIKELIHOOD if result is not None else 0.0)
    total = (request.coverage_weight * coverage + request.form_weight * form["score"]
             + request.likelihood_weight * likelihood)
    scores = {"coverage": round(coverage, 4), "form": form["score"], "likelihood": round(likelihood, 4),
              "total": round(total, 4)}
    changed = diff(request.draft, text) if request.mode in ("rewrite", "polish") else None
    return Candidate(text, found, form, scores, changed, result.finish_reason if result else "stop",
                     result.safety if result else {})
