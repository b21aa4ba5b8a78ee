"""The guard's checks as endpoints: moderation (OpenAI's shape), PII redaction and watermark detection."""

from __future__ import annotations

from fastapi import APIRouter

from luoxia.safety.moderation import ModerationResult
from luoxia.safety.pii import RedactionResult
from luoxia.safety.pii import redact as find_and_mask
from luoxia.safety.watermark import WatermarkDetector
from luoxia.serve import schemas
from luoxia.serve.deps import CallerDep, ModelsDep, OffloadDep, SettingsDep
from luoxia.serve.errors import APIError
from luoxia.serve.generation import new_id
from luoxia.serve.models import Models
from luoxia.serve.responses import Moderation, ModerationVerdict, Redaction, WatermarkDetection
from luoxia.serve.settings import ServeSettings

router = APIRouter()
MAX_INPUTS = 256  # texts per moderation or embedding request


def inputs(value: str | list[str], settings: ServeSettings) -> list[str]:
    """The texts of an ``input`` field: between 1 and `MAX_INPUTS` of them, each within
    `max_input_chars` and all within `max_total_chars` (a request's work is bounded)."""
    texts = [value] if isinstance(value, str) else list(value)
    if not texts or len(texts) > MAX_INPUTS:
        raise APIError(400, f"input: between 1 and {MAX_INPUTS} texts", param="input")
    check_length(texts, settings, "input")
    return texts


def check_length(texts: list[str], settings: ServeSettings, param: str) -> None:
    if any(len(t) > settings.max_input_chars for t in texts):
        raise APIError(400, f"{param}: a text is longer than {settings.max_input_chars} characters", param=param)
    if sum(map(len, texts)) > settings.max_total_chars:
        raise APIError(400, f"{param}: more than {settings.max_total_chars} characters in all", param=param)


@router.post("/v1/moderations", response_model=Moderation, response_model_exclude_none=True)
async def moderations(body: schemas.ModerationRequest, who: CallerDep, models: ModelsDep, settings: SettingsDep,
                      offload: OffloadDep) -> Moderation:
    """OpenAI's moderation; with ``explain`` (Luoxia's own field; ``extra_body`` in OpenAI's client)
    each result also says which rule or head scored each category and where, and each category's
    threshold: on request only, since locating the spans is extra work and OpenAI's shape stays exact
    for those who do not ask."""
    texts = inputs(body.input, settings)
    moderator = models.guard.moderator
    results = await offload(moderator.moderate, texts, explain=body.explain)
    thresholds = moderator.thresholds if body.explain else None
    verdicts = [verdict(text, result, thresholds) for text, result in zip(texts, results, strict=True)]
    return Moderation(id=new_id("modr"), model="luoxia-moderation", results=verdicts)


def verdict(text: str, result: ModerationResult, thresholds: dict[str, float] | None) -> ModerationVerdict:
    """One result in OpenAI's shape, plus its evidence (with each span's text) and the thresholds
    when an explanation was asked for (``thresholds`` given)."""
    evidence = None if thresholds is None else [evidence.to_json(text) for evidence in result.evidence]
    return ModerationVerdict(flagged=result.flagged, categories=result.categories, category_scores=result.scores,
                             evidence=evidence, category_thresholds=thresholds)


@router.post("/v1/redact", response_model=Redaction)
async def redact(body: schemas.RedactRequest, who: CallerDep, models: ModelsDep, settings: SettingsDep,
                 offload: OffloadDep) -> dict:
    """The types the guard's policy masks (``pii_types``: by default all but ORG)."""
    check_length([body.text], settings, "text")
    return (await offload(_redact, models, body.text, body.style)).to_json()


def _redact(models: Models, text: str, style: str) -> RedactionResult:
    """In a worker thread: the first call builds the guard (its policy names the types)."""
    return find_and_mask(text, style, types=models.guard.policy.pii_types)


@router.post("/v1/watermark/detect", response_model=WatermarkDetection)
async def watermark_detect(body: schemas.WatermarkDetectRequest, who: CallerDep, models: ModelsDep,
                           settings: SettingsDep, offload: OffloadDep) -> dict:
    check_length([body.text], settings, "text")
    served = models.text_model(body.model)
    guard = models.guard
    config = guard.policy.watermark_config  # entropy-aware detection needs the model's logits: the served generator
    model = served.generator if config.entropy_threshold > 0 else None
    detector = WatermarkDetector(served.tokenizer, guard.key, config, model)
    detection = await offload(detector.detect, body.text)
    return {"model": served.name, **detection.to_json(), "z_threshold": config.z_threshold}
