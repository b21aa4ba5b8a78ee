"""Request and response bodies of the OpenAI-compatible API (the fields Luoxia supports; unknown
fields are ignored, as OpenAI's own server does)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from luoxia.generate.interface import GenerationConfig


def generation_field(name: str, **overrides: Any) -> Any:
    """A request field with `GenerationConfig`'s default, bounds and description for ``name`` (defined
    there once); ``overrides`` add the API's own (OpenAI's bounds, or its spelling of "none")."""
    info = GenerationConfig.model_fields[name]
    bounds = {key: getattr(m, key) for m in info.metadata for key in ("gt", "ge", "lt", "le") if hasattr(m, key)}
    return Field(**{"default": info.default, "description": info.description, **bounds, **overrides})


class SamplingRequest(BaseModel):
    """What completions and chat completions share."""

    model: str | None = None
    temperature: float = generation_field("temperature", le=2)
    top_p: float = generation_field("top_p", default=1.0)  # OpenAI spells "no nucleus" as 1
    n: int = Field(1, ge=1)
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = generation_field("seed")
    user: str | None = None


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] = Field(..., description="one prompt or several")
    # OpenAI's documented default for completions (a protocol default, kept for its clients)
    max_tokens: int = generation_field("max_new_tokens", default=16)
    logprobs: int | None = Field(None, ge=0, le=5)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = generation_field("max_new_tokens", default=None)
    max_completion_tokens: int | None = generation_field("max_new_tokens", default=None)
    logprobs: bool = False


class ImageRequest(BaseModel):
    model: str | None = None
    prompt: str = Field(..., min_length=1)
    n: int = Field(1, ge=1)
    response_format: Literal["b64_json"] = "b64_json"
    seed: int | None = None
    size: str | None = None


class ModerationRequest(BaseModel):
    input: str | list[str]
    model: str | None = None


class EmbeddingRequest(BaseModel):
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"


class RedactRequest(BaseModel):
    text: str
    style: Literal["tag", "partial"] = "tag"


class ReviewDecision(BaseModel):
    status: Literal["approved", "rejected"]
    note: str | None = Field(None, max_length=2000)


class WatermarkDetectRequest(BaseModel):
    text: str = Field(..., min_length=1)
    model: str | None = None
