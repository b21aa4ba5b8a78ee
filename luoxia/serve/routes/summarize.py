"""``POST /v1/summarize``: extractive summaries (lead, TextRank: no model needed) or a served text
model's own (``method: model``), with a target length; released through the guard when safety is on."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from luoxia.apps.abstractive import AbstractiveConfig
from luoxia.apps.interface import turn_guard
from luoxia.apps.summarize import Summary, summarize
from luoxia.generate.interface import TextGenerator
from luoxia.serve.deps import CallerDep, ModelsDep, OffloadDep, SettingsDep
from luoxia.serve.models import Models
from luoxia.serve.routes.moderation import check_length

router = APIRouter()
_DEFAULTS = AbstractiveConfig()
MAX_K = 50  # sentences an extractive summary keeps at most


class SummarizeRequest(BaseModel):
    text: str = Field(..., description="the text to summarise (English or Chinese)")
    method: Literal["lead", "textrank", "model"] = "textrank"
    model: str | None = Field(None, description="method model: the served text model (default: the first)")
    k: int = Field(1, ge=1, le=MAX_K, description="sentences to keep when no length is asked for")
    length: int | None = Field(None, ge=1, description="target length in words (characters for Chinese)")
    ratio: float | None = Field(None, gt=0, le=1, description="target length as a share of the input's")
    max_new_tokens: int = Field(_DEFAULTS.max_new_tokens, ge=1, le=1024)
    temperature: float = Field(_DEFAULTS.temperature, ge=0, le=2)
    seed: int = _DEFAULTS.seed


class SummarizeResponse(BaseModel):
    text: str
    method: str
    model: str | None = None
    sentences: list[str]
    indices: list[int]
    length: int
    target_length: int | None
    target_source: str
    safety: dict[str, Any]


@router.post("/v1/summarize", response_model=SummarizeResponse)
async def summarize_route(body: SummarizeRequest, who: CallerDep, models: ModelsDep, settings: SettingsDep,
                          offload: OffloadDep) -> dict:
    """The summary and the kept sentences' indices; a phone number or e-mail in the text is masked
    in the summary when safety is on."""
    check_length([body.text], settings, "text")
    writer, name = None, None
    if body.method == "model":
        served = models.text_model(body.model)
        # the guard runs once, below: the served model's own (inner) generator writes
        writer, name = (served.guarded.inner if served.guarded is not None else served.generator), served.name
    return await offload(_summarize, models, body, writer, name, settings.safety)


def _summarize(models: Models, body: SummarizeRequest, writer: TextGenerator | None, name: str | None,
               safety: bool) -> dict:
    """In a worker thread: summarise under the guard (input moderation, output filtering)."""
    config = AbstractiveConfig(max_new_tokens=body.max_new_tokens, temperature=body.temperature, seed=body.seed)
    made: list[Summary] = []

    def compose() -> str:
        made.append(summarize(body.text, body.method, body.k, body.length, body.ratio, writer=writer, config=config))
        return made[0].text

    guard = models.guard if safety else None
    text, record, blocked = turn_guard(guard, body.text, compose)
    summary = made[0] if made and not blocked else Summary("", body.method)
    sentences = summary.sentences
    if guard is not None and guard.policy.pii != "allow":  # every field the guard releases, not only the text
        sentences = [guard.redactor(sentence) for sentence in sentences]
    return {**summary.to_json(), "text": text, "sentences": sentences, "model": name, "safety": record}
