"""``GET /v1/runs``: the run directories and their loss curves, for the studio's runs page."""

from __future__ import annotations

from fastapi import APIRouter

from luoxia.serve.deps import CallerDep, OffloadDep, SettingsDep
from luoxia.serve.responses import RecordList
from luoxia.serve.runs import list_runs

router = APIRouter()


@router.get("/v1/runs", response_model=RecordList)
async def runs(who: CallerDep, settings: SettingsDep, offload: OffloadDep) -> RecordList:
    return RecordList(data=await offload(list_runs, settings.runs_dir))
