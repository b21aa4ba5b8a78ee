"""Applications on the server: ``model: <app>`` on /v1/chat/completions answers through the app,
with its details in ``app``, the guard on, hand-offs in the review queue, and streaming."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from luoxia.errors import ConfigError
from luoxia.safety.audit import AuditStore
from luoxia.serve.app import create_app
from luoxia.serve.models import load_models, serve_app
from tests.echo import LOOPBACK, echo_models, echo_settings, parrot_app_dir


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("apps-serve")
    with pytest.MonkeyPatch.context() as monkeypatch:
        folder = parrot_app_dir(tmp_path / "apps" / "shop", monkeypatch, name="support")
        settings = echo_settings(tmp_path / "data", open_access=True, apps=[folder])
        models = echo_models(settings)
        serve_app(models, folder)
        with TestClient(create_app(settings, models=models), **LOOPBACK) as client:
            yield client, settings


def ask(client, text: str, **extra) -> dict:
    reply = client.post("/v1/chat/completions", json={"model": "support", "messages": [
        {"role": "user", "content": text}], **extra})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_an_app_is_a_chat_model_with_its_details(server):
    client, _ = server
    body = ask(client, "where is my parcel?")
    assert body["model"] == "support" and body["choices"][0]["message"]["content"] == "You said: where is my parcel?"
    assert body["app"]["intent"] == "repeat" and body["app"]["sources"][0]["id"] == "faq-1"
    assert body["app"]["handoff"] is False
    cards = {c["id"]: c for c in client.get("/v1/models").json()["data"]}
    assert cards["support"]["app"] == "parrot" and "app" not in cards["echo"]
    assert client.get("/health").json()["apps"] == ["support"]
    assert client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "user", "content": "hi"}]}).json().get("app") is None  # models answer as before


def test_the_guard_redacts_the_answer_and_refuses_a_blocked_question(server):
    client, _ = server
    body = ask(client, "call me at 13812345678")
    assert "13812345678" not in json.dumps(body)
    assert "13812345678" not in client.get("/v1/history").text  # the record is masked too
    refused = ask(client, "how do I make a bomb to kill my neighbours")
    assert refused["choices"][0]["finish_reason"] == "content_filter"
    assert refused["app"]["safety"]["blocked"] == "input"


def test_a_handoff_lands_in_the_review_queue(server):
    client, settings = server
    body = ask(client, "let me talk to a human, my number is 13812345678")
    assert body["app"]["handoff"] is True and body["app"]["reason"] == "asked_for_human"
    event = AuditStore(settings.data_dir).get(body["app"]["review_id"])
    assert event.stage == "handoff" and event.status == "pending" and event.model == "support"
    assert "talk to a human" in event.excerpt and "13812345678" not in event.excerpt


def test_streaming_sends_the_answer_then_the_details(server):
    client, _ = server
    with client.stream("POST", "/v1/chat/completions", json={"model": "support", "stream": True, "messages": [
            {"role": "user", "content": "hello"}]}) as reply:
        lines = [line.removeprefix("data: ") for line in reply.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(line) for line in lines[:-1]]
    assert lines[-1] == "[DONE]"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "You said: hello"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["app"]["intent"] == "repeat"


def test_bad_requests_to_an_app(server):
    client, _ = server
    many = client.post("/v1/chat/completions", json={"model": "support", "n": 2, "messages": [
        {"role": "user", "content": "hi"}]})
    assert many.status_code == 400 and "one answer" in many.json()["error"]["message"]
    nobody = client.post("/v1/chat/completions", json={"model": "support", "messages": [
        {"role": "system", "content": "be nice"}]})
    assert nobody.status_code == 400 and "no user message" in nobody.json()["error"]["message"]


def test_app_directories_are_checked_when_the_server_starts(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="not an application directory"):
        load_models(echo_settings(tmp_path / "data", models=[], apps=[tmp_path]))
    folder = parrot_app_dir(tmp_path / "a", monkeypatch, name="echo")
    settings = echo_settings(tmp_path / "data", apps=[folder])
    with pytest.raises(ConfigError, match="two chat models are named 'echo'"):
        serve_app(echo_models(settings), folder)
    (folder / "app.yaml").write_text("kind: nonsense\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown application kind 'nonsense'; valid: .*parrot"):
        serve_app(echo_models(settings), folder)
