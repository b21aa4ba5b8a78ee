"""``GET /v1/history``: the caller's own generations, newest first."""

from __future__ import annotations

from fastapi import APIRouter

from luoxia.serve.deps import CallerDep, OffloadDep, StoreDep
from luoxia.serve.errors import APIError
from luoxia.serve.responses import RecordList

router = APIRouter()


@router.get("/v1/history", response_model=RecordList)
async def history(who: CallerDep, store: StoreDep, offload: OffloadDep, limit: int = 50) -> RecordList:
    if not 1 <= limit <= 500:
        raise APIError(400, "limit must be between 1 and 500", param="limit")
    return RecordList(data=await offload(store.history, who.key_id, limit))
