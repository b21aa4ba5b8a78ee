"""Robustness: generated requests from the app's own OpenAPI schema (schemathesis), a bounded load
test with malformed requests, and a server killed with SIGKILL mid-stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.helpers import REPO
from tests.serve.conftest import free_port

pytestmark = pytest.mark.slow


def test_no_generated_request_gets_a_server_error(live_server):
    """Every operation of the app's own OpenAPI schema, with schema-conforming and schema-violating
    data (15 examples each, derandomised): no 5xx."""
    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {live_server.key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        check()


def test_load_with_malformed_requests_ends_healthy(live_server):
    from luoxia.serve.store import Store

    keys = [Store(live_server.data_dir).create_key(f"load-{i}")[1] for i in range(16)]
    good = {"model": "tiny-chat", "prompt": "To be", "max_tokens": 8, "temperature": 1.0}
    bad = [{"prompt": "To be", "max_tokens": -1}, {"model": "tiny-chat"}, {"prompt": 5, "max_tokens": "many"},
           {"prompt": "To be", "max_tokens": 100_000}]

    async def client(index: int) -> list[tuple[bool, int]]:
        outcomes = []
        async with httpx.AsyncClient(base_url=live_server.url, timeout=120,
                                     headers={"Authorization": f"Bearer {keys[index]}"}) as http:
            for number in range(index, 200, 16):  # 200 requests in all, every tenth malformed
                malformed = number % 10 == 0
                body = bad[number % len(bad)] if malformed else {**good, "seed": number}
                response = await http.post("/v1/completions", json=body)
                outcomes.append((malformed, response.status_code))
        return outcomes

    async def run() -> list[tuple[bool, int]]:
        return [o for per_client in await asyncio.gather(*(client(i) for i in range(16))) for o in per_client]

    outcomes = asyncio.run(run())
    assert len(outcomes) == 200 and sum(m for m, _ in outcomes) == 20
    assert all(status == 200 for malformed, status in outcomes if not malformed)
    assert all(400 <= status < 500 for malformed, status in outcomes if malformed)
    assert httpx.get(live_server.url + "/health").json()["status"] == "ok"


def _start(run: Path, data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "luoxia.cli", "serve", "--model", str(run), "--port", str(port),
                                "--data-dir", str(data_dir), "--device", "cpu"], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not start")


def test_sigkill_mid_stream_keeps_the_database_consistent(chat_run: Path, tmp_path: Path):
    from luoxia.serve.store import Store

    _, key = Store(tmp_path).create_key("crash")
    headers = {"Authorization": f"Bearer {key}"}
    process, url = _start(chat_run, tmp_path)
    try:
        for seed in range(3):
            body = {"model": "tiny-chat", "prompt": "To be", "max_tokens": 10, "seed": seed}
            assert httpx.post(url + "/v1/completions", json=body, headers=headers, timeout=60).status_code == 200
        before = httpx.get(url + "/v1/history", headers=headers).json()["data"]
        body = {"model": "tiny-chat", "prompt": "To be", "max_tokens": 200, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, headers=headers, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["text"]:
                    os.kill(process.pid, signal.SIGKILL)
                    break
        process.wait(timeout=30)
    finally:
        process.kill()
    with sqlite3.connect(tmp_path / "luoxia.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    process, url = _start(chat_run, tmp_path)
    try:
        after = httpx.get(url + "/v1/history", headers=headers).json()["data"]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert [r for r in after if r["id"] in {b["id"] for b in before}] == before
    interrupted = [r for r in after if r["id"] not in {b["id"] for b in before}]
    assert [r["status"] for r in interrupted] == ["started"]


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"model": "tiny-chat", "prompt": "To be", "seed": 18446744073709551616}', "seed"),  # 2**64: was a 500
    (b'{"model": "tiny-chat", "prompt": "To be", "max_tokens": 18446744073709551616}', "max_tokens"),
    (b'{"model": "tiny-chat", "prompt": "x\\ud800y"}', "surrogate"),
    (b'{"model": "tiny-chat", "messages": [{"role": "user", "content": "\\udfff"}], "stream": true}', "surrogate"),
])
def test_hostile_fields_on_the_real_model_are_400s(live_server, body, fragment):
    """Huge integers and lone surrogates through the real server and model: 400s, never a 500."""
    path = "/v1/chat/completions" if b"messages" in body else "/v1/completions"
    response = httpx.post(live_server.url + path, content=body, timeout=60,
                          headers={"Authorization": f"Bearer {live_server.key}", "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]["message"]
