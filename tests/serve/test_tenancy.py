"""Who may do what on a shared server (issue 13): key roles over the review queue, final verdicts
and their log, conversations that belong to their key, and the 404s of ids that name nothing.
On the echo model (`tests/echo.py`), so no model is trained."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from luoxia.serve.app import create_app
from luoxia.serve.store import Store
from tests.echo import LOOPBACK, echo_models, echo_settings

BLOCKED = {"model": "echo", "prompt": "we will kill you", "max_tokens": 20}


@dataclass
class Server:
    client: TestClient
    keys: dict[str, str]  # role → secret
    store: Store

    def call(self, method: str, path: str, role: str | None, body: dict | None = None, **headers: str):
        if role is not None:
            headers["Authorization"] = f"Bearer {self.keys[role]}"
        return self.client.request(method, path, json=body, headers=headers)

    def flagged(self) -> int:
        """A new audit event (a blocked prompt), its id."""
        reply = self.call("POST", "/v1/completions", "user", BLOCKED).json()
        return reply["choices"][0]["safety"]["decisions"][0]["audit_id"]


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    settings = echo_settings(tmp_path / "data")
    store = Store(settings.data_dir)
    keys = {role: store.create_key(role, role)[1] for role in ("user", "reviewer", "admin")}
    keys["other"] = store.create_key("other")[1]
    with TestClient(create_app(settings, models=echo_models(settings))) as client:
        yield Server(client, keys, store)
    store.close()


def test_users_cannot_list_or_decide_review_items(server: Server):
    event = server.flagged()
    assert server.call("GET", "/v1/review", "user").status_code == 403
    denied = server.call("POST", f"/v1/review/{event}", "user", {"status": "approved"})
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
    listed = server.call("GET", "/v1/review", "reviewer").json()["data"]
    assert [e["id"] for e in listed] == [event] and listed[0]["status"] == "pending"


def test_a_verdict_is_final_until_an_admin_reopens_it_and_each_is_logged(server: Server):
    event = server.flagged()
    decided = server.call("POST", f"/v1/review/{event}", "reviewer", {"status": "rejected", "note": "threat"})
    assert decided.status_code == 200 and decided.json()["status"] == "rejected"
    overwrite = server.call("POST", f"/v1/review/{event}", "admin", {"status": "approved"})
    assert overwrite.status_code == 409 and server.call("GET", "/v1/review?status=rejected", "reviewer").json()[
        "data"][0]["reviewer"] == f"key {server.store.list_keys()[1].id}"
    assert server.call("POST", f"/v1/review/{event}/reopen", "reviewer").status_code == 403
    reopened = server.call("POST", f"/v1/review/{event}/reopen", "admin", {"note": "second look"})
    assert reopened.status_code == 200 and reopened.json()["status"] == "pending"
    again = server.call("POST", f"/v1/review/{event}", "admin", {"status": "approved"})
    assert again.status_code == 200 and again.json()["status"] == "approved"
    ids = {role: server.store.authenticate(secret).id for role, secret in server.keys.items()}
    log = server.client.app.state.models.guard.audit.decisions(event)
    assert [(d["action"], d["key_id"]) for d in log] == [
        ("rejected", ids["reviewer"]), ("reopened", ids["admin"]), ("approved", ids["admin"])]
    assert log[1]["note"] == "second look"


def test_open_mode_on_loopback_is_the_local_admin(tmp_path):
    settings = echo_settings(tmp_path / "data", open_access=True)
    with TestClient(create_app(settings, models=echo_models(settings)), **LOOPBACK) as client:
        event = client.post("/v1/completions", json=BLOCKED).json()["choices"][0]["safety"]["decisions"][0][
            "audit_id"]
        assert client.post(f"/v1/review/{event}", json={"status": "approved"}).json()["reviewer"] == \
            "studio (open mode)"
        assert client.post(f"/v1/review/{event}/reopen").json()["status"] == "pending"


@pytest.mark.parametrize("event_id", ["999999", str(2**63), str(2**64 + 5), "0", "-1"])
def test_review_ids_that_name_nothing_are_404_without_paths(server: Server, event_id: str):
    for path, body in ((f"/v1/review/{event_id}", {"status": "approved"}), (f"/v1/review/{event_id}/reopen", None)):
        missing = server.call("POST", path, "admin", body)
        assert missing.status_code == 404, missing.text
        assert str(server.store.path.parent) not in missing.text and "luoxia.db" not in missing.text


def test_a_conversation_belongs_to_the_key_that_started_it(server: Server):
    body = {"model": "echo", "prompt": "hello", "max_tokens": 5}
    assert server.call("POST", "/v1/completions", "user", body, **{"X-Conversation-Id": "c1"}).status_code == 200
    assert server.call("POST", "/v1/completions", "user", body, **{"X-Conversation-Id": "c1"}).status_code == 200
    taken = server.call("POST", "/v1/completions", "other", body, **{"X-Conversation-Id": "c1"})
    assert taken.status_code == 403 and taken.json()["error"]["param"] == "X-Conversation-Id"
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    assert server.call("POST", "/v1/chat/completions", "other", chat, **{"X-Conversation-Id": "c1"}).status_code == 403
    rows = server.store.connection.execute("SELECT key_id, conversation_id FROM generations").fetchall()
    assert len(rows) == 2 and {row["key_id"] for row in rows} == {server.store.authenticate(server.keys["user"]).id}
