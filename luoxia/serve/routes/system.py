"""The studio's entry, health, Prometheus metrics and the model list."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, RedirectResponse

from luoxia.serve.deps import CallerDep, MetricsDep, ModelsDep, SettingsDep
from luoxia.serve.responses import Health, ModelCard, ModelList

router = APIRouter()


@router.get("/", include_in_schema=False)
async def studio() -> RedirectResponse:
    return RedirectResponse("/studio/")


@router.get("/health", response_model=Health)
async def health(models: ModelsDep, settings: SettingsDep) -> Health:
    return Health(models=list(models.text), image_models=list(models.images), apps=list(models.apps),
                  queue_depth=models.queue_depth(),
                  active_sequences=models.active_sequences(), max_tokens_limit=settings.max_tokens_limit)


@router.get("/metrics", include_in_schema=False)
async def metrics(metrics: MetricsDep) -> PlainTextResponse:
    body, content_type = metrics.render()
    return PlainTextResponse(body, media_type=content_type)


@router.get("/v1/models", response_model=ModelList, response_model_exclude_none=True)
async def list_models(models: ModelsDep, who: CallerDep) -> ModelList:
    cards = [ModelCard(id=name) for name in [*models.text, *models.images]]
    return ModelList(data=cards + [ModelCard(id=name, app=app.kind) for name, app in models.apps.items()])
