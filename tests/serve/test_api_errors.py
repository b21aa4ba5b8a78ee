"""Authentication, rate limits, bounds and error shapes, history isolation, metrics, keys."""

from __future__ import annotations

import httpx
import pytest

from luoxia.serve.store import Store
from tests.helpers import luoxia

pytestmark = pytest.mark.slow
CHAT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "To be?"}], "max_tokens": 8}


def post(server, path: str, body=None, key: str | None = "default", **kwargs) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if key is not None:
        headers["Authorization"] = f"Bearer {server.key if key == 'default' else key}"
    return httpx.post(server.url + path, json=body, headers=headers, timeout=60, **kwargs)


def assert_openai_error(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert fragment in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text


def test_keys_are_required_checked_and_revocable(live_server):
    assert_openai_error(post(live_server, "/v1/chat/completions", CHAT, key=None), 401, "missing API key")
    assert_openai_error(post(live_server, "/v1/chat/completions", CHAT, key="lx-wrong"), 401, "invalid")
    store = Store(live_server.data_dir)
    record, secret = store.create_key("short-lived")
    assert post(live_server, "/v1/chat/completions", CHAT, key=secret).status_code == 200
    store.revoke_key(record.id)
    assert_openai_error(post(live_server, "/v1/chat/completions", CHAT, key=secret), 401, "revoked")
    assert secret not in (live_server.data_dir / "luoxia.db").read_bytes().decode("latin-1")


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({**CHAT, "max_tokens": 10_000}, 400, "at most 64"),
    ({**CHAT, "messages": []}, 400, "messages"),
    ({"model": "tiny-chat"}, 400, "messages"),
    ({**CHAT, "temperature": -1}, 400, "temperature"),
    ({**CHAT, "n": 100}, 400, "at most"),
    ({**CHAT, "stop": ["", "x"]}, 400, "stop"),
    ({**CHAT, "model": "gpt-9"}, 404, "unknown model 'gpt-9'"),
    ({**CHAT, "messages": [{"role": "user", "content": "To be " * 50}]}, 400, "context length"),
    ({**CHAT, "messages": [{"role": "user", "content": "zebra"}]}, 400, "never seen"),
])
def test_bad_chat_requests_are_4xx_with_openai_errors(live_server, body, status, fragment):
    assert_openai_error(post(live_server, "/v1/chat/completions", body), status, fragment)


def test_malformed_and_oversized_bodies(live_server):
    response = httpx.post(live_server.url + "/v1/completions", content=b"{not json",
                          headers={"Authorization": f"Bearer {live_server.key}", "Content-Type": "application/json"})
    assert response.status_code == 400 and "error" in response.json()
    huge = post(live_server, "/v1/moderations", {"input": "x" * 1_100_000})
    assert_openai_error(huge, 413, "larger than")
    assert_openai_error(post(live_server, "/v1/moderations", {"input": []}), 400, "input")
    assert_openai_error(post(live_server, "/v1/watermark/detect", {"text": "   "}), 400, "empty")


def test_watermark_detection_endpoint(live_server):
    reply = post(live_server, "/v1/completions", {"model": "tiny-chat", "prompt": "To be", "max_tokens": 60,
                                                  "temperature": 1.0, "seed": 1}).json()
    detection = post(live_server, "/v1/watermark/detect", {"text": reply["choices"][0]["text"]}).json()
    assert set(detection) >= {"z", "p_value", "green_fraction", "tokens_scored", "watermarked"}
    assert detection["key_id"] == reply["choices"][0]["safety"]["watermark"]["key_id"]


def test_guard_blocks_harmful_prompts_and_says_so(live_server):
    body = {**CHAT, "messages": [{"role": "user", "content": "we will kill you"}]}
    reply = post(live_server, "/v1/chat/completions", body).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["safety"]["blocked"] == "input"


def test_history_shows_only_the_callers_own_records(live_server):
    _, other = Store(live_server.data_dir).create_key("other")
    post(live_server, "/v1/completions", {"model": "tiny-chat", "prompt": "mine", "max_tokens": 4}, key=other)
    theirs = httpx.get(live_server.url + "/v1/history", headers={"Authorization": f"Bearer {other}"}).json()["data"]
    assert [r["prompt"] for r in theirs] == ["mine"] and theirs[0]["status"] == "complete"
    ours = httpx.get(live_server.url + "/v1/history?limit=500",
                     headers={"Authorization": f"Bearer {live_server.key}"}).json()["data"]
    assert ours and all(r["prompt"] != "mine" for r in ours)


def test_health_and_metrics(live_server):
    health = httpx.get(live_server.url + "/health").json()
    assert health["status"] == "ok" and health["models"] == ["tiny-chat"]
    post(live_server, "/v1/moderations", {"input": "hello"})
    metrics = httpx.get(live_server.url + "/metrics").text
    assert 'luoxia_requests_total{path="/v1/moderations",status="200"}' in metrics
    assert "luoxia_request_seconds_bucket" in metrics and "luoxia_queue_depth" in metrics


def test_rate_limit_answers_429_with_retry_after(settings_for):
    from fastapi.testclient import TestClient

    from luoxia.serve.app import create_app

    settings = settings_for(rate_limit_per_minute=2, image_models=[])
    _, key = Store(settings.data_dir).create_key("limited")
    with TestClient(create_app(settings)) as test_client:
        headers = {"Authorization": f"Bearer {key}"}
        codes = [test_client.get("/v1/models", headers=headers).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = test_client.get("/v1/models", headers=headers)
        assert int(limited.headers["Retry-After"]) >= 1 and limited.json()["error"]["type"] == "rate_limit_error"


def test_open_access_only_on_loopback(settings_for):
    from pydantic import ValidationError

    assert settings_for(open_access=True).open_access
    with pytest.raises(ValidationError, match="loopback"):
        settings_for(open_access=True, host="0.0.0.0")


def test_keys_cli_prints_the_key_last_and_lists_it_hashed(tmp_path):
    created = luoxia("keys", "create", "--name", "ci", "--data-dir", str(tmp_path))
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("lx-") and len(secret) > 40
    listed = luoxia("keys", "list", "--data-dir", str(tmp_path)).stdout
    assert "ci" in listed and secret not in listed
    luoxia("keys", "revoke", "1", "--data-dir", str(tmp_path))
    assert Store(tmp_path).authenticate(secret) is None


def test_busy_and_slow_generations_map_to_503_and_504():
    from luoxia.generate.batching import QueueFull, RequestTimeout
    from luoxia.serve.errors import error_for

    busy = error_for(QueueFull("64 requests are already waiting")).response()
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert error_for(RequestTimeout("no result within 120 s")).status == 504
    assert error_for(RuntimeError("boom")).response().status_code == 500
    assert "boom" not in error_for(RuntimeError("boom")).message


def test_without_models_the_server_asks_for_make_demo(settings_for, image_run, tmp_path, monkeypatch):
    from luoxia.errors import ConfigError
    from luoxia.serve.models import load_models

    monkeypatch.chdir(tmp_path)  # no runs/demo-pydoc here
    with pytest.raises(ConfigError, match="make demo"):
        load_models(settings_for(models=[], image_models=[]))
    images_only = load_models(settings_for(models=[], image_models=[str(image_run)]))
    assert list(images_only.text) == [] and list(images_only.images) == ["tiny-vae"]
    images_only.close()
