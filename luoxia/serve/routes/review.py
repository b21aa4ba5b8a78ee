"""The audit trail's review queue: ``GET /v1/review`` lists events, ``POST /v1/review/{id}`` decides
one, ``POST /v1/review/{id}/reopen`` undoes a verdict.

Reviewer and admin keys list and decide (user keys get 403); a verdict is final (409) unless an admin
reopens it. Open mode has no keys and runs only on loopback: its caller is the local admin.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from luoxia.safety.audit import AlreadyDecided
from luoxia.serve import schemas
from luoxia.serve.deps import Caller, CallerDep, ModelsDep, Offload, OffloadDep, StoreDep
from luoxia.serve.errors import APIError
from luoxia.serve.responses import Record, RecordList
from luoxia.serve.store import ROLES, Store

router = APIRouter()


class ReviewReopen(BaseModel):
    note: str | None = Field(None, max_length=2000)


async def require_role(who: Caller, store: Store, offload: Offload, least: str) -> None:
    """403 unless the caller's role is ``least`` or above (`ROLES` order)."""
    role = await offload(store.role, who.key_id)
    if ROLES.index(role) < ROLES.index(least):
        raise APIError(403, f"this needs a {least} key (yours is a {role} key; see `luoxia keys create --role`)",
                       "permission_error", code="insufficient_role")


def actor(who: Caller) -> str:
    return f"key {who.key_id}" if who.key_id is not None else "studio (open mode)"


@router.get("/v1/review", response_model=RecordList)
async def review_queue(who: CallerDep, models: ModelsDep, store: StoreDep, offload: OffloadDep,
                       status: str = "pending", limit: int = 100) -> RecordList:
    await require_role(who, store, offload, "reviewer")
    if not 1 <= limit <= 500:
        raise APIError(400, "limit must be between 1 and 500", param="limit")
    events = await offload(models.guard.audit.list, None if status == "all" else status, limit)
    return RecordList(data=[e.to_json() for e in events])


@router.post("/v1/review/{event_id}", response_model=Record)
async def review_decide(event_id: int, body: schemas.ReviewDecision, who: CallerDep, models: ModelsDep,
                        store: StoreDep, offload: OffloadDep) -> Record:
    await require_role(who, store, offload, "reviewer")
    try:
        event = await offload(models.guard.audit.review, event_id, body.status, actor(who), body.note, who.key_id)
    except AlreadyDecided as error:
        raise APIError(409, str(error), code="already_decided") from None
    return event.to_json()


@router.post("/v1/review/{event_id}/reopen", response_model=Record)
async def review_reopen(event_id: int, who: CallerDep, models: ModelsDep, store: StoreDep, offload: OffloadDep,
                        body: ReviewReopen | None = None) -> Record:
    await require_role(who, store, offload, "admin")
    event = await offload(models.guard.audit.reopen, event_id, actor(who), body.note if body else None, who.key_id)
    return event.to_json()
