"""Issue 13 through a server whose model echoes its prompt behind Luoxia's own guard: personal data
reaches the output on demand, and no field of any answer may carry it (text, deltas, logprobs,
history, audit). Also: one audit event per blocked prompt, request CPU work off the event loop, and
a client that leaves cancels its generation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from luoxia.safety.audit import AuditStore
from luoxia.serve.app import create_app
from luoxia.serve.models import Models, serve_text
from luoxia.serve.store import Store
from tests.echo import LOOPBACK, CharTokenizer, EchoGenerator, echo_models, echo_settings
from tests.helpers import on_event_loop

# The three reproductions: each value was checked in halves at a "." and passed.
LEAKS = [("Contact amy@example.org today.", "amy@example.org", "Contact [EMAIL] today."),
         ("Server 192.168.1.23 is up.", "192.168.1.23", "Server [IP] is up."),
         ("Log in at https://amy:s3cr.et@host.example.com/x today.", "s3cr.et", "Log in at [URL_CREDENTIALS] today.")]
PHONE, CN_ID = "13812345678", "11010519491231002X"
NUMBERS = f"电话{PHONE}，身份证{CN_ID}。"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[TestClient, Path]]:
    data_dir = tmp_path_factory.mktemp("echo")
    settings = echo_settings(data_dir, open_access=True)
    with TestClient(create_app(settings, models=echo_models(settings)), **LOOPBACK) as client:
        yield client, data_dir


def ask(client: TestClient, endpoint: str, text: str, stream: bool, **extra) -> tuple[str, str]:
    """The answer's text and its whole body (every SSE event when streamed)."""
    body = ({"prompt": text} if endpoint == "completions" else {"messages": [{"role": "user", "content": text}]})
    response = client.post(f"/v1/{'chat/' if endpoint == 'chat' else ''}completions",
                           json={**body, "max_tokens": 400, "stream": stream, **extra})
    assert response.status_code == 200, response.text
    if not stream:
        choice = response.json()["choices"][0]
        return (choice["text"] if endpoint == "completions" else choice["message"]["content"]), response.text
    events = [json.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    pieces = [e["choices"][0].get("text") or e["choices"][0].get("delta", {}).get("content") or "" for e in events]
    return "".join(pieces), response.text


def windows(value: str, size: int = 6) -> list[str]:
    """Every ``size``-character piece of ``value``: none may appear anywhere."""
    return [value[i:i + size] for i in range(len(value) - size + 1)]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("endpoint", ["completions", "chat"])
@pytest.mark.parametrize(("prompt", "value", "expected"), LEAKS)
def test_emails_ips_and_url_credentials_never_pass(server, endpoint: str, stream: bool, prompt: str, value: str,
                                                   expected: str):
    client, _ = server
    text, raw = ask(client, endpoint, prompt, stream)
    assert value not in text and value not in raw  # nor split across deltas: ``text`` joins them
    assert text == expected


def strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_logprobs_history_and_audit_carry_no_digit_of_a_redacted_value(server):
    client, data_dir = server
    completion = client.post("/v1/completions", json={"prompt": NUMBERS, "max_tokens": 400, "logprobs": 0}).json()
    chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": NUMBERS}],
                                                     "max_tokens": 400, "logprobs": True}).json()
    (choice,), (chat_choice,) = completion["choices"], chat["choices"]
    assert choice["text"] == chat_choice["message"]["content"] == "电话[PHONE]，身份证[CN_ID]。"
    for answer in (choice, chat_choice):  # no string of the choice holds a digit (nor its safety record a value)
        assert not [s for s in strings({**answer, "safety": None}) if any(c.isdigit() for c in s)]
        assert not [w for w in windows(PHONE) + windows(CN_ID) if w in json.dumps(answer["safety"])]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"] and "[PHONE]" in logprobs["tokens"]
    assert logprobs["text_offset"][logprobs["tokens"].index("[PHONE]")] == 2
    assert logprobs["tokens"][:2] == ["电", "话"] and logprobs["token_logprobs"][:2] == [-0.5, -0.5]  # unchanged
    entries = chat_choice["logprobs"]["content"]
    assert "".join(e["token"] for e in entries) == choice["text"]
    assert not [b for e in entries for b in e["bytes"] if 48 <= b <= 57]
    history = client.get("/v1/history", params={"limit": 5}).json()["data"]
    stored = json.dumps([{k: v for k, v in r.items() if k != "prompt"} for r in history], ensure_ascii=False)
    assert "[PHONE]" in stored and not [w for w in windows(PHONE) + windows(CN_ID) if w in stored]
    excerpts = " ".join(e.excerpt for e in AuditStore(data_dir).list(limit=500))
    assert "[CN_ID]" in excerpts and not [w for w in windows(PHONE) + windows(CN_ID) if w in excerpts]


def test_a_blocked_prompt_with_n_choices_is_audited_once(server):
    client, data_dir = server
    before = len(AuditStore(data_dir).list(limit=500))
    answer = client.post("/v1/completions", json={"prompt": "I will kill you", "n": 8}).json()
    assert [c["finish_reason"] for c in answer["choices"]] == ["content_filter"] * 8
    assert len(AuditStore(data_dir).list(limit=500)) == before + 1


class LoopSpy(EchoGenerator):
    """An echo model that notes whether each tokenization or chat rendering ran on the event loop."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, bool]] = []

    def count_tokens(self, text: str) -> int:
        self.calls.append(("count_tokens", on_event_loop()))
        return super().count_tokens(text)

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        self.calls.append(("render_chat", on_event_loop()))
        return super().render_chat(messages)


def test_tokenizing_and_chat_rendering_run_off_the_event_loop(tmp_path: Path):
    settings = echo_settings(tmp_path, open_access=True, safety=False)
    spy, models = LoopSpy(), Models(settings)
    serve_text(models, "echo", spy, CharTokenizer())
    with TestClient(create_app(settings, models=models), **LOOPBACK) as client:
        assert client.post("/v1/completions", json={"prompt": "a" * 1000}).status_code == 200
        assert client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
                           ).status_code == 200
    assert {name for name, _ in spy.calls} == {"count_tokens", "render_chat"}
    assert [call for call in spy.calls if call[1]] == []


class SlowEcho(EchoGenerator):
    """An echo model that takes 20 ms a piece and counts the pieces it made."""

    def __init__(self):
        super().__init__()
        self.made, self.closed = 0, False

    def stream(self, prompt, config=None, logits_processors=()) -> Generator[str, None, object]:
        inner = super().stream(prompt, config, logits_processors)
        try:
            while True:
                time.sleep(0.02)
                self.made += 1
                yield next(inner)
        except StopIteration as stop:
            return stop.value
        finally:
            self.closed = True


def test_a_client_that_leaves_cancels_its_non_streaming_generation(tmp_path: Path):
    settings = echo_settings(tmp_path, open_access=True, safety=False)
    slow, models = SlowEcho(), Models(settings)
    serve_text(models, "echo", slow, CharTokenizer())
    body = json.dumps({"prompt": "x" * 600, "max_tokens": 600}).encode()  # 200 pieces: 4 s if it runs to the end
    sent: list[dict] = []

    async def receive() -> dict:
        if not sent and not receive.read:  # type: ignore[attr-defined]
            receive.read = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": body, "more_body": False}
        while slow.made < 3:
            await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    receive.read = False  # type: ignore[attr-defined]

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/completions", "raw_path": b"/v1/completions", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    app = create_app(settings, models=models)
    with TestClient(app, **LOOPBACK) as client:
        client.portal.call(app, scope, receive, send)
    (record,) = Store(tmp_path).history(None)
    assert record["status"] == "cancelled" and slow.closed
    assert slow.made < 100  # the work stopped: far fewer pieces than the 200 of the whole answer
