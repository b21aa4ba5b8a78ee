"""Request and response bodies of the OpenAI-compatible API (the fields Luoxia supports; unknown
fields are ignored, as OpenAI's own server does).

Every text field is a `Text`: a lone UTF-16 surrogate (``"x\\ud800y"`` in JSON) is a 400 here, not
a 500 wherever the text is first encoded. Seeds, the ``user`` field and stop strings are bounded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from luoxia.generate.interface import GenerationConfig

MAX_SEED = 2**63  # exclusive: seed + choice index must stay within torch's generator seeds
MAX_STOP_CHARS, MAX_STOPS, MAX_USER_CHARS = 256, 4, 256


def _encodable(value: object) -> object:
    """Text that is valid Unicode: no lone surrogate, which UTF-8 cannot encode (checked before
    pydantic's own string checks, so that the error says what is wrong)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape)") from None
    return value


Text = Annotated[str, BeforeValidator(_encodable)]
Seed = Annotated[int, Field(ge=0, lt=MAX_SEED)]
StopText = Annotated[Text, Field(max_length=MAX_STOP_CHARS)]


def generation_field(name: str, **overrides: Any) -> Any:
    """A request field with `GenerationConfig`'s default, bounds and description for ``name`` (defined
    there once); ``overrides`` add the API's own (OpenAI's bounds, or its spelling of "none")."""
    info = GenerationConfig.model_fields[name]
    bounds = {key: getattr(m, key) for m in info.metadata for key in ("gt", "ge", "lt", "le") if hasattr(m, key)}
    return Field(**{"default": info.default, "description": info.description, **bounds, **overrides})


class SamplingRequest(BaseModel):
    """What completions and chat completions share."""

    model: Text | None = None
    temperature: float = generation_field("temperature", le=2)
    top_p: float = generation_field("top_p", default=1.0)  # OpenAI spells "no nucleus" as 1
    n: int = Field(1, ge=1)
    stream: bool = False
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOPS)] | None = None
    seed: Seed | None = generation_field("seed")
    user: Annotated[Text, Field(max_length=MAX_USER_CHARS)] | None = None


class CompletionRequest(SamplingRequest):
    prompt: Text | list[Text] = Field(..., description="one prompt or several")
    # OpenAI's documented default for completions (a protocol default, kept for its clients)
    max_tokens: int = generation_field("max_new_tokens", default=16)
    logprobs: int | None = Field(None, ge=0, le=5)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: Text


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = generation_field("max_new_tokens", default=None)
    max_completion_tokens: int | None = generation_field("max_new_tokens", default=None)
    logprobs: bool = False


class ImageRequest(BaseModel):
    model: Text | None = None
    prompt: Text = Field(..., min_length=1)
    n: int = Field(1, ge=1)
    response_format: Literal["b64_json"] = "b64_json"
    seed: Seed | None = None
    size: Text | None = None


class ModerationRequest(BaseModel):
    input: Text | list[Text]
    model: Text | None = None
    explain: bool = Field(False, description="Luoxia's own: add each result's `evidence` (which rule or learned "
                          "head scored each category, and the span of the input)")


class EmbeddingRequest(BaseModel):
    input: Text | list[Text]
    model: Text | None = None
    encoding_format: Literal["float", "base64"] = "float"


class RedactRequest(BaseModel):
    text: Text
    style: Literal["tag", "partial"] = "tag"


class ReviewDecision(BaseModel):
    status: Literal["approved", "rejected"]
    note: Text | None = Field(None, max_length=2000)


class WatermarkDetectRequest(BaseModel):
    text: Text = Field(..., min_length=1)
    model: Text | None = None
