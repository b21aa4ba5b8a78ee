"""Response bodies, declared on the routes (``response_model=``): OpenAI's shapes for OpenAI's
endpoints (plus Luoxia's ``safety`` record on choices and images), Luoxia's own for the rest."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Record = dict[str, Any]  # a stored record (history, audit event, run) as the store writes it


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None = None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None
    safety: Record


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[Record]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: ChatLogprobs | None = None
    safety: Record


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    app: dict | None = None  # an application's reply (`luoxia.apps.interface.AppReply`): sources, hand-off …


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "luoxia"
    app: str | None = None  # an application's kind (support, ask); absent for a model


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ImageData(BaseModel):
    b64_json: str


class Images(BaseModel):
    created: int
    data: list[ImageData]
    safety: Record  # the guard's decisions and watermark key id (empty with safety off)


class Evidence(BaseModel):
    """Why a category scored: a rule (``source``: its id) or a learned head, over ``[start, end)`` of
    the input in Unicode code points; ``text`` is that span (code units differ in UTF-16 clients)."""

    layer: Literal["rule", "head"]
    category: str
    score: float
    start: int
    end: int
    source: str
    text: str


class ModerationVerdict(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    evidence: list[Evidence] | None = None  # Luoxia's own, with ``explain``; absent otherwise


class Moderation(BaseModel):
    id: str
    model: str
    results: list[ModerationVerdict]


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class Embeddings(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[EmbeddingData]
    usage: EmbeddingUsage


class WatermarkDetection(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    z: float
    p_value: float
    green_fraction: float
    tokens_scored: int
    watermarked: bool | None  # None: shorter than min_tokens, "too short to decide"
    key_id: str
    gamma: float
    tokens: int
    min_tokens: int | None
    entropy_threshold: float
    scheme: str
    verdict: str


class Span(BaseModel):
    type: str
    start: int
    end: int


class Redaction(BaseModel):
    text: str
    spans: list[Span]


class RecordList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Record]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    models: list[str]
    image_models: list[str]
    apps: list[str]
    queue_depth: int
    active_sequences: int
    max_tokens_limit: int
