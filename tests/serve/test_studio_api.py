"""The endpoints behind the studio's panels: redaction, the review queue, the runs page."""

from __future__ import annotations

import httpx
import pytest

from luoxia.serve.store import Store

pytestmark = pytest.mark.slow


def call(server, method: str, path: str, body=None, key: str | None = None) -> httpx.Response:
    return httpx.request(method, server.url + path, json=body, timeout=60,
                         headers={"Authorization": f"Bearer {key or server.key}"})


def test_studio_page_is_served_offline(live_server):
    page = httpx.get(live_server.url + "/", follow_redirects=True)
    assert page.status_code == 200 and "Luoxia Studio" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: works offline
    for script in ("app.js", "i18n.js"):
        assert httpx.get(live_server.url + f"/studio/{script}").status_code == 200


def test_redact_endpoint(live_server):
    reply = call(live_server, "POST", "/v1/redact", {"text": "mail amy@example.org"}).json()
    assert reply["text"] == "mail [EMAIL]" and reply["spans"][0]["type"] == "EMAIL"


def test_review_queue_lists_and_records_a_verdict(live_server):
    blocked = {"model": "tiny-chat", "messages": [{"role": "user", "content": "we will kill you"}], "max_tokens": 4}
    audit_id = call(live_server, "POST", "/v1/chat/completions", blocked).json()["choices"][0]["safety"][
        "decisions"][0]["audit_id"]
    _, reviewer = Store(live_server.data_dir).create_key("reviewer", "reviewer")
    assert call(live_server, "GET", "/v1/review?status=pending").status_code == 403  # a user key
    pending = call(live_server, "GET", "/v1/review?status=pending", key=reviewer).json()["data"]
    assert audit_id in [e["id"] for e in pending]
    decided = call(live_server, "POST", f"/v1/review/{audit_id}", {"status": "rejected", "note": "threat"},
                   key=reviewer).json()
    assert decided["status"] == "rejected" and decided["review_note"] == "threat"
    missing = call(live_server, "POST", "/v1/review/999999", {"status": "approved"}, key=reviewer)
    assert missing.status_code == 404 and "no audit event" in missing.json()["error"]["message"]


def test_runs_page_reads_loss_curves(live_server, chat_run, settings_for):
    from fastapi.testclient import TestClient

    from luoxia.serve.app import create_app

    settings = settings_for(runs_dir=chat_run.parent, image_models=[], open_access=True)
    with TestClient(create_app(settings), base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        runs = client.get("/v1/runs").json()["data"]
    (run,) = [r for r in runs if r["name"] == "tiny-chat"]
    assert run["task"] == "lm" and len(run["train"]) > 1 and len(run["eval"]) >= 1
