"""Request and response bodies of the OpenAI-compatible API (the fields Luoxia supports; unknown
fields are ignored, as OpenAI's own server does)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class SamplingRequest(BaseModel):
    """What completions and chat completions share."""

    model: str | None = None
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1)
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] = Field(..., description="one prompt or several")
    max_tokens: int = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=5)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
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
