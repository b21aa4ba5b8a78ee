"""The monitor over HTTP: ingest a batch, read series, alerts, status and the report; texts redacted;
bad requests get one-line 4xx errors."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from luoxia.serve.app import create_app
from luoxia.serve.models import serve_app
from tests.apps.monitor_stub import SOURCE, monitor_app_dir, stream
from tests.echo import LOOPBACK, echo_models, echo_settings


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("monitor-serve")
    with pytest.MonkeyPatch.context() as monkeypatch:
        folder = monitor_app_dir(tmp_path / "apps" / "markets", monkeypatch)
        settings = echo_settings(tmp_path / "data", open_access=True, apps=[folder])
        models = echo_models(settings)
        serve_app(models, folder)
        with TestClient(create_app(settings, models=models), **LOOPBACK) as client:
            yield client


def test_ingest_then_series_alerts_and_report(server):
    items = [i.to_json() for i in stream(0)]
    burst = next(i for i in items if i.get("burst") == 0)
    burst["text"] += " call 13812345678"
    half = len(items) // 2
    first = server.post("/v1/monitor/items", json={"items": items[:half]})
    assert first.status_code == 200, first.text
    assert first.json()["ingested"] == half
    second = server.post("/v1/monitor/items", json={"app": "monitor", "items": items, "flush": True}).json()
    assert second["ingested"] == len(items) - half  # the first half is not counted twice
    assert any(a["topic"] == "$ACME" for a in first.json()["alerts"] + second["alerts"])  # the burst: 10:00
    assert second["status"]["sentiment_source"] == SOURCE
    series = server.get("/v1/monitor/series", params={"topic": "$ACME"}).json()
    assert series["window_minutes"] == 15 and max(s["negative"] for s in series["data"]) >= 8
    assert {"topic": "all", "volume": len(items), "negative": series["topics"][0]["negative"]} == series["topics"][0]
    alerts = server.get("/v1/monitor/alerts", params={"topic": "$ACME"}).json()["data"]
    assert alerts and alerts[0]["top_items"] and alerts[0]["negative_share"] >= 0.4
    report = server.get("/v1/monitor/report", params={"topic": ["all", "$ACME"], "hours": 48}).json()
    assert [t["topic"] for t in report["topics"]] == ["all", "$ACME"]
    assert "## $ACME" in report["markdown"] and "data:image/png;base64," in report["html"]
    everything = json.dumps([first.json(), second, series, alerts, report])
    assert "13812345678" not in everything
    assert server.get("/v1/monitor/status").json()["items"] == len(items)


def test_bad_monitor_requests(server):
    def error(reply, status: int) -> str:
        assert reply.status_code == status, reply.text
        message = reply.json()["error"]["message"]
        assert "\n" not in message and "Traceback" not in message
        return message

    assert "unknown monitor application 'nope'" in error(
        server.get("/v1/monitor/alerts", params={"app": "nope"}), 404)
    assert "not a time" in error(server.post("/v1/monitor/items", json={"items": [{"text": "a", "time": "soon"}]}), 400)
    error(server.post("/v1/monitor/items", json={"items": []}), 400)
    error(server.post("/v1/monitor/items", json={"items": [{"text": "a"}]}), 400)
    error(server.get("/v1/monitor/alerts", params={"limit": 0}), 400)
    assert "unknown topic" in error(server.get("/v1/monitor/report", params={"topic": "$NOPE"}), 400)
    error(server.get("/v1/monitor/series", params={"since": "later"}), 400)
    error(server.post("/v1/chat/completions", json={"model": "monitor", "messages": [
        {"role": "user", "content": "hi"}]}), 400)
