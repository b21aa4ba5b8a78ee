"""`GuardedGenerator`: safety as part of generation, around any `TextGenerator` or `ImageGenerator`.

For text, each request goes: moderate the prompt → generate (with the watermark's logits processor)
→ redact personal data in the output → moderate the output. Each flagged category is handled by
the policy's action for it:

- ``allow``: noted in the result's ``safety`` record only;
- ``flag``: noted, and written to the audit trail for human review;
- ``redact``: the offending sentences (or, for personal data, the spans) are masked, and audited;
- ``block``: the prompt is refused or the output withheld (``finish_reason="content_filter"``), and audited.

Images: the prompt is moderated, then every image is upscaled, watermarked (DWT-DCT) and can be
saved with a signed provenance record (`save_guarded_image`).
"""

from __future__ import annotations

import hashlib
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
from luoxia.safety.pii import MaskStyle, PIIRedactor
from luoxia.safety.provenance import save_with_provenance
from luoxia.safety.watermark import WatermarkConfig, WatermarkKey, WatermarkLogitsProcessor, resolve_key

Action = Literal["allow", "flag", "redact", "block"]
SEVERITY = {"allow": 0, "flag": 1, "redact": 2, "block": 3}
REFUSAL = "I can't help with that request."
WITHHELD = "[content withheld by the safety policy]"
_SENTENCE = re.compile(r"[^.!?。！？\n]+[.!?。！？\n]*\s*")


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


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Guard:
    """The checks, shared by the text and image wrappers."""

    def __init__(self, policy: GuardPolicy | None = None, moderator: Moderator | None = None,
                 audit: AuditStore | None = None, key: WatermarkKey | None = None, model_name: str | None = None):
        self.policy = policy or GuardPolicy()
        self.moderator = moderator or Moderator(thresholds=self.policy.thresholds)
        self.key = key or resolve_key()
        self.redactor = PIIRedactor(style=self.policy.pii_style,
                                    key=self.key.secret if self.policy.pii_style == "hash" else None)
        self.audit = audit if self.policy.audit else None
        self.model_name = model_name

    def _audit(self, decision: Decision, content: str, scores: dict[str, float]) -> Decision:
        if self.audit is not None and decision.action != "allow":
            decision.audit_id = self.audit.record(decision.stage, decision.action, decision.categories, scores,
                                                  sha256(content), self.redactor(content), self.model_name)
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

    def redact_sentences(self, text: str) -> str:
        """The text with every sentence the moderator flags replaced by a notice."""
        sentences = _SENTENCE.findall(text) or [text]
        verdicts = self.moderator.moderate(sentences)
        return "".join(WITHHELD if v.flagged else s for s, v in zip(sentences, verdicts, strict=True))

    def clean_output(self, text: str) -> tuple[str, list[Decision], bool]:
        """PII redaction then output moderation: the text to return, the decisions, whether it is withheld."""
        decisions = []
        if self.policy.pii != "allow":
            found = self.redactor.redact(text)
            if found.spans:
                types = sorted({s.type for s in found.spans})
                decision = self._audit(Decision("output", "pii", self.policy.pii, types), text, {})
                decisions.append(decision)
                if decision.action == "block":
                    return WITHHELD, decisions, True
                if decision.action == "redact":
                    text = found.text
        if self.policy.moderate_output and text.strip():
            (decision, _), = self.moderate([text], "output")
            decisions.append(decision)
            if decision.action == "block":
                return WITHHELD, decisions, True
            if decision.action == "redact":
                text = self.redact_sentences(text)
        return text, decisions, False


class GuardedGenerator:
    """A `TextGenerator` that runs the guard around another one. Results carry a ``safety`` record:
    each decision, and the watermark key id when the output is watermarked."""

    def __init__(self, generator: TextGenerator, guard: Guard | None = None):
        self.inner = generator
        self.guard = guard or Guard(model_name=generator.name)
        self.name, self.context_length = generator.name, generator.context_length
        policy = self.guard.policy
        self.watermark = WatermarkLogitsProcessor(self.guard.key, policy.watermark_config) if policy.watermark else None

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
        return {"watermark": {"key_id": self.guard.key.key_id, "gamma": self.watermark.config.gamma,
                              "delta": self.watermark.config.delta}} if self.watermark else {}

    def _check_prompts(self, prompts: Sequence[str]) -> list[Decision | None]:
        if not self.guard.policy.moderate_input:
            return [None] * len(prompts)
        return [decision for decision, _ in self.guard.moderate(prompts, "input")]

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
            results.append(self._finish(next(generated), inputs))
        return results

    def _finish(self, result: GenerationResult, inputs: list[dict]) -> GenerationResult:
        text, decisions, withheld = self.guard.clean_output(result.text)
        result.safety = {"decisions": inputs + [d.to_json() for d in decisions], **self.watermark_record()}
        result.text = text
        if withheld:
            result.finish_reason, result.safety["blocked"] = "content_filter", "output"
        return result

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        return self.inner.render_chat(messages)

    def output_filter(self, inputs: list[dict]) -> OutputFilter:
        """The sentence-by-sentence check of one streamed generation (see `stream`)."""
        return OutputFilter(self.guard, inputs, self.watermark_record())

    def stream(self, prompt: str, config: GenerationConfig | None = None,
               logits_processors: Sequence[LogitsProcessor] = ()) -> Generator[str, None, GenerationResult]:
        """Streams sentence by sentence: each is redacted and moderated before it is released, and a
        blocked sentence ends the stream with a notice. Returns the `GenerationResult` of what was
        released, with the safety record."""
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
            for sentence in released.complete_sentences(piece):
                yield released.check(sentence)
                if released.withheld:
                    pieces.close()
                    break
        if released.pending and not released.withheld:
            yield released.check(released.pending)
        return released.result(inner or GenerationResult("", [], "stop", self.prompt_tokens(prompt)))


class OutputFilter:
    """The guard's state for one streamed generation: text arrives in pieces, each sentence is
    checked once it has ended, and what was released becomes the result. Why a class: a server
    feeds it from the event loop and runs the (CPU-bound) checks elsewhere."""

    def __init__(self, guard: Guard, inputs: list[dict], watermark: dict):
        self.guard, self.inputs, self.watermark = guard, inputs, watermark
        self.pending, self.released, self.decisions, self.withheld = "", [], [], False

    def complete_sentences(self, piece: str) -> list[str]:
        """Add ``piece``; the sentences that have ended, taken out of ``pending``, to `check` in order."""
        self.pending += piece
        sentences = _complete_sentences(self.pending)
        self.pending = self.pending[sum(map(len, sentences)):]
        return sentences

    def check(self, sentence: str) -> str:
        """Redact and moderate one sentence (or the last, unfinished text): what to release."""
        text, found, withheld = self.guard.clean_output(sentence)
        self.decisions += found
        self.released.append(text)
        self.withheld = self.withheld or withheld
        return text

    def result(self, inner: GenerationResult) -> GenerationResult:
        """``inner`` (the model's result) with the released text and the safety record."""
        inner.text = "".join(self.released)
        inner.safety = {"decisions": self.inputs + [d.to_json() for d in self.decisions], **self.watermark}
        if self.withheld:
            inner.finish_reason, inner.safety["blocked"] = "content_filter", "output"
        return inner


def _complete_sentences(text: str) -> list[str]:
    """The sentences of ``text`` that have ended (the last one may still be growing)."""
    sentences = _SENTENCE.findall(text)
    return sentences if re.search(r"[.!?。！？\n]\s*$", text) else sentences[:-1]


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
