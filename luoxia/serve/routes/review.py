"""The audit trail's review queue: ``GET /v1/review`` lists events, ``POST /v1/review/{id}`` decides one."""

from __future__ import annotations

from fastapi import APIRouter

from luoxia.serve import schemas
from luoxia.serve.deps import CallerDep, ModelsDep, OffloadDep
from luoxia.serve.errors import APIError
from luoxia.serve.responses import Record, RecordList

router = APIRouter()


@router.get("/v1/review", response_model=RecordList)
async def review_queue(who: CallerDep, models: ModelsDep, offload: OffloadDep, status: str = "pending",
                       limit: int = 100) -> RecordList:
    if not 1 <= limit <= 500:
        raise APIError(400, "limit must be between 1 and 500", param="limit")
    events = await offload(models.guard.audit.list, None if status == "all" else status, limit)
    return RecordList(data=[e.to_json() for e in events])


@router.post("/v1/review/{event_id}", response_model=Record)
async def review_decide(event_id: int, body: schemas.ReviewDecision, who: CallerDep, models: ModelsDep,
                        offload: OffloadDep) -> Record:
    reviewer = f"key {who.key_id}" if who.key_id is not None else "studio (open mode)"
    event = await offload(models.guard.audit.review, event_id, body.status, reviewer, body.note)
    return event.to_json()
