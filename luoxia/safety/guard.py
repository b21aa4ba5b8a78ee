"""`GuardedGenerator`: safety as part of generation, around any `TextGenerator` or `ImageGenerator`.

For text, each request goes: moderate the prompt → generate (with the watermark's logits processor)
→ redact personal data in the output → moderate the output. Each flagged category is handled by
the policy's action for it:

- ``allow``: noted in the result's ``safety`` record only;
- ``flag``: noted, and written to the audit trail for human review;
- ``redact``: the offending sentences (or, for personal data, the spans) are masked, and audited;
- ``block``: the prompt is refused or the output withheld (``finish_reason="content_filter"``), and audited.

The output is checked in segments (`OutputFilter`): sentences, cut only where no personal-data value
can straddle the cut, so streamed and whole generations release the same text. What the guard
changed is in the result's ``safety["edits"]`` (offsets into the model's text → replacement), from
which `released_tokens` masks the tokens and log-probabilities too.

Images: the prompt is moderated, then every image is upscaled, watermarked (DWT-DCT) and can be
saved with a signed provenance record (`save_guarded_image`).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import Field

from luoxia.config import Config
from luoxia.errors import LuoxiaError
from luoxia.generate.interface import GenerationConfig, GenerationResult, ImageGenerator, LogitsProcessor, TextGenerator
from luoxia.safety.audit import AuditStore
from luoxia.safety.image_mark import embed_image_watermark
from luoxia.safety.moderation import CATEGORIES, ModerationResult, Moderator
from luoxia.safety.pii import DEFAULT_PII_TYPES, ENTITY_TYPES, MaskStyle, PIIRedactor, PIISpan, PIIType
from luoxia.safety.pii_key import resolve_pii_key
from luoxia.safety.provenance import save_with_provenance
from luoxia.safety.watermark import WatermarkConfig, WatermarkKey, WatermarkLogitsProcessor, resolve_key

Action = Literal["allow", "flag", "redact", "block"]
SEVERITY = {"allow": 0, "flag": 1, "redact": 2, "block": 3}
REFUSAL = "I can't help with that request."
WITHHELD = "[content withheld by the safety policy]"


def _default_actions() -> dict[str, Action]:
    return {c: ("flag" if c in ("sexual", "violence/graphic") else "block") for c in CATEGORIES}


class GuardPolicy(Config):
    """What the guard does; every part can be switched off."""

    moderate_input: bool = Field(True, description="moderate prompts")
    moderate_output: bool = Field(True, description="moderate generated text")
    actions: dict[str, Action] = Field(default_factory=_default_actions, description="category → action")
    thresholds: dict[str, float] = Field(default_factory=dict, description="category → flag threshold override")
    pii: Action = Field("redact", description="action on personal data in the output")
    pii_style: MaskStyle = Field("tag", description="how redacted personal data looks: tag, partial or hash")
    pii_types: list[PIIType] = Field(default_factory=lambda: list(DEFAULT_PII_TYPES),
                                     description="the personal data acted on (default: all but ORG)")
    watermark: bool = Field(True, description="watermark generated text and images")
    watermark_config: WatermarkConfig = Field(default_factory=WatermarkConfig)
    audit: bool = Field(True, description="write flag/redact/block decisions to the audit trail")

    def action_for(self, flagged: Sequence[str]) -> Action:
        """The most severe action among the flagged categories' (allow when none)."""
        actions = [self.actions.get(c, "block") for c in flagged]
        return max(actions, key=SEVERITY.__getitem__, default="allow")


@dataclass
class Decision:
    """One check of the guard and what it did."""

    stage: Literal["input", "output", "image"]
    check: Literal["moderation", "pii", "watermark"]
    action: Action
    categories: list[str] = field(default_factory=list)
    audit_id: int | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [])}


class Guard:
    """The checks, shared by the text and image wrappers."""

    def __init__(self, policy: GuardPolicy | None = None, moderator: Moderator | None = None,
                 audit: AuditStore | None = None, key: WatermarkKey | None = None, model_name: str | None = None,
                 pii_key: bytes | None = None):
        self.policy = policy or GuardPolicy()
        self.moderator = moderator or Moderator(thresholds=self.policy.thresholds)
        self.key = key or resolve_key()
        hashed = self.policy.pii_style == "hash"  # pseudonyms have their own key, never the watermark's
        self.redactor = PIIRedactor(style=self.policy.pii_style, key=(pii_key or resolve_pii_key()) if hashed else None,
                                    types=tuple(self.policy.pii_types))
        self.audit = audit if self.policy.audit else None
        self.model_name = model_name

    def _audit(self, decision: Decision, content: str, scores: dict[str, float], excerpt: str | None = None
               ) -> Decision:
        if self.audit is not None and decision.action != "allow":
            masked = self.redactor(content) if excerpt is None else excerpt
            decision.audit_id = self.audit.record(decision.stage, decision.action, decision.categories, scores,
                                                  content, masked, self.model_name)
        return decision

    def moderate(self, texts: Sequence[str], stage: Literal["input", "output", "image"]
                 ) -> list[tuple[Decision, ModerationResult]]:
        results = self.moderator.moderate(list(texts))
        out = []
        for text, result in zip(texts, results, strict=True):
            flagged = [c for c, hit in result.categories.items() if hit]
            decision = Decision(stage, "moderation", self.policy.action_for(flagged), flagged)
            scores = {c: round(result.scores[c], 4) for c in flagged}
            out.append((self._audit(decision, text, scores), result))
        return out

    def find_pii(self, text: str) -> list[PIISpan]:
        """The personal data the policy acts on (none when it allows it)."""
        return [] if self.policy.pii == "allow" else self.redactor.redact(text).spans

    def replacement(self, span: PIISpan) -> str:
        """What ``span`` becomes in the policy's style; a plain tag when its value alone is not
        recognised (it needed context, such as ``password:`` before a secret). Names and addresses
        always need context (a tagger reads the sentence): they are masked as found."""
        if span.type in ENTITY_TYPES:
            return self.redactor.mask(span)
        alone = self.redactor.redact(span.text)
        whole = len(alone.spans) == 1 and (alone.spans[0].start, alone.spans[0].end) == (0, len(span.text))
        return alone.text if whole else f"[{span.type}]"

    def check_segment(self, raw: str, spans: Sequence[PIISpan], offset: int) -> Checked:
        """PII handling then output moderation of one segment (``raw``, at ``offset`` in the output,
        with the PII ``spans`` found in it, offsets relative to ``raw``)."""
        decisions, edits = [], []
        text = raw
        if spans:
            pii_edits = [Edit(offset + s.start, offset + s.end, self.replacement(s)) for s in spans]
            masked = apply_edits(raw, pii_edits, offset)
            types = sorted({s.type for s in spans})
            decision = self._audit(Decision("output", "pii", self.policy.pii, types), raw, {}, masked)
            decisions.append(decision)
            if decision.action == "block":
                return Checked(WITHHELD, [Edit(offset, -1, WITHHELD)], decisions, True)
            if decision.action == "redact":
                text, edits = masked, pii_edits
        if self.policy.moderate_output and text.strip():
            (decision, _), = self.moderate([text], "output")
            decisions.append(decision)
            if decision.action == "block":
                return Checked(WITHHELD, [Edit(offset, -1, WITHHELD)], decisions, True)
            if decision.action == "redact":  # the segment is a sentence (or a few, joined around a value)
                body = len(raw.rstrip())
                return Checked(WITHHELD + raw[body:], [Edit(offset, offset + body, WITHHELD)], decisions, False)
        return Checked(text, edits, decisions, False)


@dataclass(frozen=True)
class Edit:
    """One change of the guard to a generation's text: characters ``start:end`` of what the model
    wrote became ``text`` (``end`` -1: to the end of the output, withheld)."""

    start: int
    end: int
    text: str

    def to_json(self) -> dict:
        return {"start": self.start, "end": self.end, "text": self.text}


@dataclass
class Checked:
    """What the guard releases of one segment, the edits that made it, its decisions, and whether
    the output is withheld from here on."""

    text: str
    edits: list[Edit]
    decisions: list[Decision]
    withheld: bool


def apply_edits(raw: str, edits: Sequence[Edit], offset: int = 0) -> str:
    """``raw`` (starting at ``offset`` of the output) with ``edits`` (sorted, disjoint) applied."""
    pieces, last = [], 0
    for edit in edits:
        end = len(raw) if edit.end < 0 else edit.end - offset
        pieces += [raw[last:edit.start - offset], edit.text]
        last = end
    return "".join(pieces) + raw[last:]


WATERMARK_SKIPPED = "a remote model samples on its own server: its text cannot carry the watermark"


class GuardedGenerator:
    """A `TextGenerator` that runs the guard around another one. Results carry a ``safety`` record:
    each decision, the watermark key id when the output is watermarked, and the ``edits`` (see
    `OutputFilter.result`) when the guard changed the text."""

    def __init__(self, generator: TextGenerator, guard: Guard | None = None):
        self.inner = generator
        self.guard = guard or Guard(model_name=generator.name)
        self.name, self.context_length = generator.name, generator.context_length
        policy = self.guard.policy
        # A remote model (`OpenAIGenerator`) samples on its server, out of reach of a logits processor:
        # its text cannot be watermarked, and every safety record says so instead of naming a key.
        self.watermark_skipped = policy.watermark and not getattr(generator, "runs_logits_processors", True)
        marks = policy.watermark and not self.watermark_skipped
        self.watermark = WatermarkLogitsProcessor(self.guard.key, policy.watermark_config) if marks else None

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def prompt_tokens(self, prompt: str) -> int:
        """The refused prompt's length for usage accounting; 0 when the model cannot even encode it."""
        try:
            return self.count_tokens(prompt)
        except LuoxiaError:
            return 0

    def processors(self, extra: Sequence[LogitsProcessor] = ()) -> list[LogitsProcessor]:
        """The logits processors a generation under this guard runs: ``extra`` plus the watermark."""
        return [*extra, self.watermark] if self.watermark else list(extra)

    def watermark_record(self) -> dict:
        if self.watermark_skipped:
            return {"watermark": {"skipped": WATERMARK_SKIPPED}}
        return {"watermark": {"key_id": self.guard.key.key_id, "gamma": self.watermark.config.gamma,
                              "delta": self.watermark.config.delta}} if self.watermark else {}

    def _check_prompts(self, prompts: Sequence[str]) -> list[Decision | None]:
        """Each prompt's input decision; a prompt given several times is checked (and audited) once."""
        if not self.guard.policy.moderate_input:
            return [None] * len(prompts)
        distinct = list(dict.fromkeys(prompts))
        decisions = dict(zip(distinct, (d for d, _ in self.guard.moderate(distinct, "input")), strict=True))
        return [decisions[p] for p in prompts]

    def screen_prompt(self, prompt: str) -> tuple[list[dict], GenerationResult | None]:
        """The input decisions of one prompt, and the refusal to answer with when it is blocked."""
        (check,) = self._check_prompts([prompt])
        inputs = [check.to_json()] if check else []
        if check is not None and check.action == "block":
            return inputs, GenerationResult(REFUSAL, [], "content_filter", self.prompt_tokens(prompt),
                                            safety={"decisions": inputs, "blocked": "input"})
        return inputs, None

    def generate(self, prompts: str | Sequence[str], config: GenerationConfig | None = None,
                 logits_processors: Sequence[LogitsProcessor] = ()) -> list[GenerationResult]:
        """The texts `stream` would release: the same filter, fed the whole output at once."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        checks = self._check_prompts(prompts)
        allowed = [p for p, d in zip(prompts, checks, strict=True) if d is None or d.action != "block"]
        generated = iter(self.inner.generate(allowed, config, self.processors(logits_processors)) if allowed else [])
        results = []
        for prompt, check in zip(prompts, checks, strict=True):
            inputs = [check.to_json()] if check else []
            if check is not None and check.action == "block":
                results.append(GenerationResult(REFUSAL, [], "content_filter", self.prompt_tokens(prompt),
                                                safety={"decisions": inputs, "blocked": "input"}))
                continue
            result = next(generated)
            released = self.output_filter(inputs)
            released.feed(result.text)
            released.finish()
            results.append(released.result(result))
        return results

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        return self.inner.render_chat(messages)

    def output_filter(self, inputs: list[dict]) -> OutputFilter:
        """The check of one generation's text as it arrives (see `OutputFilter`)."""
        return OutputFilter(self.guard, inputs, self.watermark_record())

    def stream(self, prompt: str, config: GenerationConfig | None = None,
               logits_processors: Sequence[LogitsProcessor] = ()) -> Generator[str, None, GenerationResult]:
        """Streams segment by segment (see `OutputFilter`): each is redacted and moderated before it
        is released, and a blocked one ends the stream with a notice. Returns the `GenerationResult`
        of what was released, with the safety record."""
        inputs, refusal = self.screen_prompt(prompt)
        if refusal is not None:
            yield REFUSAL
            return refusal
        pieces = self.inner.stream(prompt, config, self.processors(logits_processors))
        released, inner = self.output_filter(inputs), None
        while not released.withheld:
            try:
                piece = next(pieces)
            except StopIteration as stop:
                inner = stop.value
                break
            if released.feed(piece):
                yield from released.release()
        if released.withheld:
            pieces.close()
        else:
            yield from released.finish()
        return released.result(inner or GenerationResult("", [], "stop", self.prompt_tokens(prompt)))


# A sentence ends at terminal punctuation followed by whitespace, at CJK 。！？, or at a newline;
# possessive runs that start only at the start of a run keep the scan linear.
_BOUNDARY = re.compile(r"(?<![.!?])[.!?]++[)\]}\"'”’」』]*+\s++|(?<![。！？])[。！？]++[)\]}\"'”’」』]*+\s*+|\n\s*+")
_TERMINAL = re.compile(r"[.!?。！？\n]")
LOOKAHEAD = 64  # characters that must follow a cut before it is final: a value that could straddle it has arrived
CONTEXT = 64  # characters already released that PII detection still sees (``password:`` then a new line)


class OutputFilter:
    """The guard's state for one generation: text arrives in pieces and is released in segments,
    each redacted and moderated before release. A segment ends at a sentence end (`_BOUNDARY`), and
    only when `LOOKAHEAD` characters follow it and no personal-data value found in the pending text
    crosses it; otherwise it grows to the next one. So ``amy@example.org`` or ``415. 555 2671`` is
    never checked in halves, and how the text was chunked does not change what is released.

    Why a class: a server feeds it on the event loop (`feed` is cheap) and runs `release` and
    `finish` (the CPU-bound checks) in worker threads."""

    def __init__(self, guard: Guard, inputs: list[dict], watermark: dict):
        self.guard, self.inputs, self.watermark = guard, inputs, watermark
        self.pending, self.context, self.offset = "", "", 0  # offset: where ``pending`` starts in the output
        self.released: list[str] = []
        self.edits: list[Edit] = []
        self.decisions: list[Decision] = []
        self.withheld = False
        self._terminal: int | None = None  # first sentence-ending character in ``pending``
        self._due = 0  # ``pending`` length from which `release` is worth trying again

    def feed(self, piece: str) -> bool:
        """Add ``piece``; whether `release` may now release something."""
        if self._terminal is None and (m := _TERMINAL.search(piece)):
            self._terminal = len(self.pending) + m.start()
        self.pending += piece
        return (self._terminal is not None and len(self.pending) > self._terminal + LOOKAHEAD
                and len(self.pending) >= self._due)

    def release(self) -> list[str]:
        """Check and release every segment that is final; the texts to send, in order."""
        return self._release(final=False)

    def finish(self) -> list[str]:
        """The output has ended: check and release the rest."""
        return self._release(final=True)

    def _release(self, final: bool) -> list[str]:
        if self.withheld:
            return []
        shift = len(self.context)
        spans = [PIISpan(s.type, s.start - shift, s.end - shift, s.text)
                 for s in self.guard.find_pii(self.context + self.pending) if s.end > shift]
        texts, start = [], 0
        for end in self._cuts(spans, final):
            inside = [s for s in spans if s.start < end and s.end > start]
            texts.append(self._check(start, end, inside))
            start = end
            if self.withheld:
                break
        self._advance(start)
        self._due = 0 if texts else len(self.pending) + len(self.pending) // 2  # back off while nothing ends
        return texts

    def _cuts(self, spans: list[PIISpan], final: bool) -> list[int]:
        """Where ``pending`` may be cut now: final sentence ends that no PII span crosses (and its end)."""
        limit = len(self.pending) if final else len(self.pending) - LOOKAHEAD
        cuts = [m.end() for m in _BOUNDARY.finditer(self.pending) if m.end() <= limit and m.end() < len(self.pending)
                and not any(s.start < m.end() < s.end for s in spans)]
        return cuts + [len(self.pending)] if final and self.pending else cuts

    def _check(self, start: int, end: int, spans: list[PIISpan]) -> str:
        """Release ``pending[start:end]`` (``spans`` overlapping it): a span that began in text already
        released (which `_cuts` prevents, kept as a safeguard) is masked from the segment's start."""
        spans = [PIISpan(s.type, max(s.start, start) - start, min(s.end, end) - start, s.text) for s in spans]
        checked = self.guard.check_segment(self.pending[start:end], spans, self.offset + start)
        self.decisions += checked.decisions
        self.edits += checked.edits
        self.released.append(checked.text)
        self.withheld = checked.withheld
        return checked.text

    def _advance(self, start: int) -> None:
        done, self.pending = self.pending[:start], self.pending[start:]
        self.context = (self.context + done)[-CONTEXT:]
        self.offset += start
        m = _TERMINAL.search(self.pending)
        self._terminal = m.start() if m else None

    def result(self, inner: GenerationResult) -> GenerationResult:
        """``inner`` (the model's result) with the released text and the safety record: the
        decisions, the watermark, and, when the text was changed, ``edits``: ``[{"start", "end",
        "text"}]``, sorted: characters ``start:end`` of the model's text became ``text`` (for
        mapping tokens and log-probabilities; the values themselves are never in the record)."""
        inner.text = "".join(self.released)
        inner.safety = {"decisions": self.inputs + [d.to_json() for d in self.decisions], **self.watermark}
        total = self.offset + len(self.pending)
        if self.edits:
            inner.safety["edits"] = [Edit(e.start, total if e.end < 0 else e.end, e.text).to_json()
                                     for e in self.edits]
        if self.withheld:
            inner.finish_reason, inner.safety["blocked"] = "content_filter", "output"
        return inner


def released_tokens(tokens: Sequence[str], logprobs: Sequence[float], text: str, edits: Sequence[dict]
                    ) -> list[tuple[str, float]] | None:
    """The model's tokens (their texts and log-probabilities) as the guard released them: tokens
    that overlap an edit become one entry carrying the edited text (log-probability: their sum),
    tokens past the released output are dropped, the rest are kept. None when the tokens do not
    spell the model's text exactly, so that nothing can be mapped safely (withhold them then)."""
    pairs = list(zip(tokens, logprobs, strict=False))
    if not edits:
        return pairs
    raw = "".join(token for token, _ in pairs)
    raw_length = len(text) - sum(len(e["text"]) - (e["end"] - e["start"]) for e in edits)
    entries: list[tuple[str, float]] = []
    group: list = []  # [start, end, summed log-probability] of the tokens being merged
    position = 0
    for token, logprob in pairs:
        start, position = position, min(position + len(token), raw_length)
        if start >= raw_length:
            break
        overlaps = [e["end"] for e in edits if e["start"] < position and e["end"] > start]
        if group and (overlaps or start < group[1]):
            group = [group[0], max(position, *overlaps), group[2] + logprob]
            continue
        if group:
            entries.append(_merged(raw, group, edits))
        group = [start, max(position, *overlaps), logprob] if overlaps else []
        if not overlaps:
            entries.append((token[:position - start], logprob))
    if group:
        entries.append(_merged(raw, group, edits))
    return entries if "".join(t for t, _ in entries) == text else None


def _merged(raw: str, group: list, edits: Sequence[dict]) -> tuple[str, float]:
    start, end, logprob = group
    inside = [Edit(e["start"], e["end"], e["text"]) for e in edits if start <= e["start"] and e["end"] <= end]
    return apply_edits(raw[start:end], inside, start), logprob


@dataclass
class GuardedImages:
    """The images of one request together with its safety record (decisions, watermark key id):
    returned together so that concurrent requests never read each other's record."""

    images: list
    safety: dict


class GuardedImageGenerator:
    """An `ImageGenerator` whose prompts are moderated and whose images come back watermarked (RGB,
    upscaled to at least 256×256: the DWT-DCT watermark needs the room). `generate_guarded` also
    returns the safety record; `generate` (the `ImageGenerator` protocol) only the images."""

    def __init__(self, generator: ImageGenerator, guard: Guard | None = None):
        self.inner = generator
        self.guard = guard or Guard(model_name=generator.name)
        self.name, self.class_names = generator.name, generator.class_names

    def generate(self, prompt: str, n: int = 16, seed: int | None = None, **options) -> list:
        return self.generate_guarded(prompt, n, seed, **options).images

    def generate_guarded(self, prompt: str, n: int = 16, seed: int | None = None, **options) -> GuardedImages:
        """Moderate the prompt (raises `PromptBlocked`), draw ``n`` images, watermark them."""
        decisions = []
        if self.guard.policy.moderate_input:
            ((decision, _),) = self.guard.moderate([prompt], "image")
            decisions.append(decision.to_json())
            if decision.action == "block":
                raise PromptBlocked(decision.categories)
        images = self.inner.generate(prompt, n=n, seed=seed, **options)
        if self.guard.policy.watermark:
            images = [embed_image_watermark(image, self.guard.key.secret) for image in images]
        mark = {"watermark": {"key_id": self.guard.key.key_id}} if self.guard.policy.watermark else {}
        return GuardedImages(images, {"decisions": decisions, **mark})


class PromptBlocked(LuoxiaError):
    """The guard refused an image prompt."""

    def __init__(self, categories: list[str]):
        super().__init__(f"prompt blocked by the safety policy ({', '.join(categories)})")
        self.categories = categories


def write_guarded_images(generator: GuardedImageGenerator, prompt: str, n: int, seed: int | None, out_dir: str | Path,
                         run: str, **options) -> list[Path]:
    """``generate-image --watermark``: watermarked ``0000.png`` … each carrying a signed provenance
    record (model, run, seed, parameters, time), and ``grid.png`` of them; returns the grid's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = generator.generate_guarded(prompt, n, seed, **options).images
    for i, image in enumerate(images):
        save_with_provenance(image, out_dir / f"{i:04d}.png", model=generator.name, run=run, seed=seed,
                             parameters={"prompt": prompt, "n": n, "index": i, **options},
                             key=generator.guard.key.secret)
    columns = min(len(images), 8)
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, -(-len(images) // columns) * height))
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * width, (i // columns) * height))
    grid.save(out_dir / "grid.png")
    return [out_dir / "grid.png"]
