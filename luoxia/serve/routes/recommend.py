"""``POST /v1/recommend``: a user (a simulated user id, or liked titles/keywords) → ranked items with
their score parts and personalised copy; ``POST /v1/recommend/copy``: copy for one item."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from luoxia.apps.recommend import RecommendApp, RecommendConfig
from luoxia.serve.deps import CallerDep, ModelsDep, OffloadDep
from luoxia.serve.errors import APIError

router = APIRouter()
K = RecommendConfig.model_fields["k"]


class RecommendRequest(BaseModel):
    model: str | None = Field(None, description="the recommend application (none: the only one)")
    history: list[str] | None = Field(None, max_length=50, description="liked titles or keywords, oldest first")
    user: str | None = Field(None, max_length=64, description="a user id of the application's simulated log")
    k: int | None = Field(None, ge=1, le=100, description=f"items to return (default: app.yaml's k, {K.default})")
    copies: int = Field(3, ge=0, le=10, description="items, from the top, that get personalised copy")


class CopyRequest(BaseModel):
    model: str | None = None
    history: list[str] | None = Field(None, max_length=50)
    user: str | None = Field(None, max_length=64)
    item: int | str = Field(description="the item's book_id or title")


def _app(models, name: str | None) -> RecommendApp:
    app = models.app_of("recommend", name)
    assert isinstance(app, RecommendApp)
    return app


def _user(app: RecommendApp, history: list[str] | None, user: str | None) -> list[str]:
    if (history is None) == (user is None):
        raise APIError(400, "give either history (liked titles or keywords) or user (a user id), not both or "
                       "neither", param="history")
    if history is not None and any(len(entry) > 500 for entry in history):
        raise APIError(400, "a history entry is at most 500 characters", param="history")
    return history if history is not None else app.history_of(str(user))


def _recommend(app: RecommendApp, user: list[str], k: int | None, copies: int) -> dict[str, Any]:
    ranked = app.rank(user, k)
    items = [r.to_json() for r in ranked]
    for item, r in zip(items[:copies], ranked[:copies], strict=False):
        item["copy"] = app.copy(user, r.book.book_id).to_json()
    return {"model": app.name, "object": "recommendation", "items": items,
            "weights": {"interest": app.config.interest_weight, "popularity": app.config.popularity_weight,
                        "recency": app.config.recency_weight}}


@router.post("/v1/recommend")
async def recommend(body: RecommendRequest, who: CallerDep, models: ModelsDep, offload: OffloadDep) -> dict[str, Any]:
    app = _app(models, body.model)
    return await offload(_recommend, app, _user(app, body.history, body.user), body.k, body.copies)


@router.post("/v1/recommend/copy")
async def recommend_copy(body: CopyRequest, who: CallerDep, models: ModelsDep, offload: OffloadDep) -> dict[str, Any]:
    app = _app(models, body.model)
    made = await offload(app.copy, _user(app, body.history, body.user), body.item)
    return {"model": app.name, "object": "recommendation.copy", **made.to_json()}
