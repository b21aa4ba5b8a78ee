"""The generation interface every later layer (safety, serving, apps) depends on.

A `TextGenerator` turns prompts into `GenerationResult`s or streams text; it hides whether the model
is Luoxia's own GPT or a Hugging Face model. Requests are plain `GenerationConfig` values.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import Field, model_validator

from luoxia.config import Config

if TYPE_CHECKING:  # torch only for the annotation: the CLI builds its options from this module at startup
    import torch

# (input_ids (B, t) — each row's history; the decode engine calls it one row at a time, B = 1 —,
# logits (B, V)) → new logits; the shape of HF's processors.
LogitsProcessor = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
FinishReason = Literal["stop", "length", "content_filter"]


class GenerationConfig(Config):
    """How to pick tokens. ``temperature=0`` is greedy; ``num_beams>1`` is beam search."""

    max_new_tokens: int = Field(128, ge=1, description="tokens to generate at most")
    # 1.0 samples the model's own distribution, and is the OpenAI API's default: the CLI, the demo and
    # the HTTP schemas take it from here.
    temperature: float = Field(1.0, ge=0, description="softmax temperature; 0 = greedy")
    top_k: int | None = Field(None, ge=1, description="sample from the k most likely tokens")
    top_p: float | None = Field(None, gt=0, le=1, description="sample from the smallest set with this mass")
    repetition_penalty: float = Field(1.0, gt=0, description="CTRL-style penalty on tokens already present")
    num_beams: int = Field(1, ge=1, description="beam width; >1 runs (deterministic) beam search")
    length_penalty: float = Field(1.0, description="beam score = log-prob / length**length_penalty")
    stop: list[str] = Field(default_factory=list, description="stop strings, trimmed from the output")
    seed: int | None = Field(None, description="seed for sampling: row i of a request (the i-th prompt, or the "
                             "i-th choice, prompt-major) draws from its own generator seeded seed + i, so the same "
                             "request and seed give the same text on every path (library, CLI, server, whatever "
                             "shares the batch); none = a fresh random seed per row")
    collapse_repeats: int | None = Field(None, ge=1, description="collapse immediately repeated n-grams up to n")
    use_cache: bool = Field(True, description="decode with the KV cache")

    @model_validator(mode="after")
    def _check(self) -> GenerationConfig:
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")
        return self


@dataclass
class GenerationResult:
    """One completion: its text (stop string trimmed), ids and why it ended."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_tokens: int
    token_logprobs: list[float] = field(default_factory=list)
    safety: dict[str, Any] = field(default_factory=dict)  # what a guard checked and did (luoxia.safety.guard)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


@runtime_checkable
class TextGenerator(Protocol):
    """What serving, safety and apps may use of a text model — nothing more."""

    name: str
    context_length: int

    def generate(self, prompts: Sequence[str], config: GenerationConfig | None = None,
                 logits_processors: Sequence[LogitsProcessor] = ()) -> list[GenerationResult]: ...

    def stream(self, prompt: str, config: GenerationConfig | None = None,
               logits_processors: Sequence[LogitsProcessor] = ()) -> Generator[str, None, GenerationResult]:
        """Text pieces as they are decided; the generator's return value is the `GenerationResult`."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        """A conversation ([{"role", "content"}]) as a prompt ending where the reply starts, and the
        stop strings that end the reply."""
        ...


@runtime_checkable
class ImageGenerator(Protocol):
    """What serving and apps may use of an image model: a prompt naming what to draw ("7",
    "seven"), how many, a seed; PIL images back."""

    name: str
    class_names: list[str]

    def generate(self, prompt: str, n: int = 16, seed: int | None = None, **options: Any
                 ) -> list[Any]: ...  # PIL images
