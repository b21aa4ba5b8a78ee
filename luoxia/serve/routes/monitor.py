"""The financial sentiment monitor over HTTP: ``POST /v1/monitor/items`` ingests a batch,
``GET /v1/monitor/series`` a topic's windows, ``/alerts`` the stored alerts, ``/report`` the periodic
report (Markdown and self-contained HTML), ``/status`` counts and the sentiment source. The app is a
``luoxia serve --app DIR`` monitor (``app``: its name; none: the only one)."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from luoxia.apps.monitor import KIND, MonitorApp, check_items
from luoxia.apps.monitor_report import to_html, to_markdown
from luoxia.apps.monitor_stream import parse_time
from luoxia.serve.deps import CallerDep, ModelsDep, OffloadDep
from luoxia.serve.models import Models

router = APIRouter()
MAX_BATCH = 1000  # items per request
TopicsQuery = Annotated[list[str] | None, Query(description="topics to report (none: all and the busiest)")]
HoursQuery = Annotated[float | None, Query(gt=0, le=24 * 366, description="hours up to the newest item")]
LimitQuery = Annotated[int, Query(ge=1, le=1000)]


class MonitorItem(BaseModel):
    text: str = Field(min_length=1, max_length=20_000)
    time: str | float = Field(description="ISO 8601 or Unix seconds")
    id: str | None = Field(None, max_length=200, description="your id; none: a hash of text and time")


class MonitorIngest(BaseModel):
    app: str | None = Field(None, description="the monitor's name (none: the only one served)")
    items: list[MonitorItem] = Field(min_length=1, max_length=MAX_BATCH)
    flush: bool = Field(False, description="also close the newest window (the end of a finite stream)")


def monitor_of(models: Models, name: str | None) -> MonitorApp:
    return cast(MonitorApp, models.app_of(KIND, name))


@router.post("/v1/monitor/items")
async def monitor_ingest(body: MonitorIngest, who: CallerDep, models: ModelsDep, offload: OffloadDep) -> dict[str, Any]:
    app = monitor_of(models, body.app)
    items = check_items([item.model_dump() for item in body.items])
    before = (await offload(app.status))["items"]
    alerts = await offload(app.ingest, items)
    if body.flush:
        alerts += await offload(app.flush)
    status = await offload(app.status)
    return {"ingested": status["items"] - before, "alerts": alerts, "status": status}


@router.get("/v1/monitor/series")
async def monitor_series(who: CallerDep, models: ModelsDep, offload: OffloadDep, app: str | None = None,
                         topic: str = "all", since: str | None = None) -> dict[str, Any]:
    monitor = monitor_of(models, app)
    start = parse_time(since, "since") if since else None
    return {"app": monitor.name, "topic": topic, "window_minutes": monitor.config.window_minutes,
            "data": await offload(monitor.series, topic, start), "topics": await offload(monitor.topics)}


@router.get("/v1/monitor/alerts")
async def monitor_alerts(who: CallerDep, models: ModelsDep, offload: OffloadDep, app: str | None = None,
                         topic: str | None = None, limit: LimitQuery = 100) -> dict[str, Any]:
    monitor = monitor_of(models, app)
    return {"object": "list", "data": await offload(monitor.alerts, topic, limit)}


@router.get("/v1/monitor/status")
async def monitor_status(who: CallerDep, models: ModelsDep, offload: OffloadDep,
                         app: str | None = None) -> dict[str, Any]:
    return await offload(monitor_of(models, app).status)


@router.get("/v1/monitor/report")
async def monitor_report(who: CallerDep, models: ModelsDep, offload: OffloadDep, app: str | None = None,
                         topic: TopicsQuery = None, hours: HoursQuery = None) -> dict[str, Any]:
    monitor = monitor_of(models, app)
    report = await offload(monitor.report, topic, hours)
    return {**report.to_json(), "markdown": to_markdown(report), "html": to_html(report)}
