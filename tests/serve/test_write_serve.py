"""``POST /v1/write`` and ``luoxia write``: a seeded request gives the same candidates through the
library, the CLI and the server; the server's output passes its guard; bad requests are 400s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import luoxia
from luoxia.apps.write import WriteRequest, write, writer_for
from luoxia.serve.app import create_app
from tests.helpers import luoxia as luoxia_cli

BODY = {"genre": "prose", "keywords": ["sea", "be"], "title": "To be", "n": 3, "seed": 7, "max_new_tokens": 40}


def texts(result: dict) -> list[str]:
    return [c["text"] for c in result["candidates"]]


@pytest.fixture(scope="module")
def library(chat_run: Path) -> dict:
    return write(writer_for(luoxia.load(chat_run, device="cpu")), WriteRequest(**BODY)).to_json()


def client_for(settings_for, **settings) -> TestClient:
    config = settings_for(image_models=[], open_access=True, **settings)
    return TestClient(create_app(config), base_url="http://127.0.0.1", client=("127.0.0.1", 50000))


@pytest.fixture(scope="module")
def plain_client(settings_for):
    with client_for(settings_for, safety=False) as client:
        yield client


def test_library_cli_and_server_give_the_same_candidates(chat_run: Path, library: dict, plain_client: TestClient):
    assert len(set(texts(library))) == 3 and all(c["keywords"] for c in library["candidates"])
    cli = luoxia_cli("write", str(chat_run), "prose", "-k", "sea", "-k", "be", "--title", "To be", "-n", "3",
                     "--seed", "7", "--max-new-tokens", "40", "--device", "cpu", "--json")
    assert texts(json.loads(cli.stdout)) == texts(library)
    for constraint in ("boost", "beam"):
        expected = library if constraint == "boost" else write(
            writer_for(luoxia.load(chat_run, device="cpu")), WriteRequest(**BODY, constraint="beam")).to_json()
        response = plain_client.post("/v1/write", json={**BODY, "constraint": constraint})
        assert response.status_code == 200, response.text
        assert texts(response.json()) == texts(expected), constraint


def test_the_server_releases_candidates_through_its_guard(settings_for):
    with client_for(settings_for, safety=True) as client:
        for constraint in ("boost", "beam"):
            response = client.post("/v1/write", json={**BODY, "constraint": constraint, "n": 2})
            assert response.status_code == 200, response.text
            assert all("decisions" in c["safety"] for c in response.json()["candidates"]), constraint


def test_a_draft_s_personal_data_reaches_no_field(settings_for):
    """The prompt and the diffs echo the draft: with the guard on they carry it redacted, like the text."""
    draft = "To be or not. mail ann@hotmail.org or phone 13812345678. The sea."  # the tiny model's characters
    with client_for(settings_for, safety=True) as client:
        for mode in ("polish", "rewrite", "continue"):
            response = client.post("/v1/write", json={**BODY, "mode": mode, "draft": draft, "n": 1})
            assert response.status_code == 200, response.text
            body = response.text
            assert "13812345678" not in body and "ann@hotmail.org" not in body, mode


@pytest.mark.parametrize(("body", "message"), [
    ({"genre": "sonnet"}, "unknown genre 'sonnet'"),
    ({"genre": "prose", "max_new_tokens": 500}, "over this server's limit"),
    ({"genre": "prose"}, "max_new_tokens: 320 is over"),  # the genre's own length, over the tests' limit of 64
    ({"mode": "polish"}, "works on a draft"),
    ({"mode": "improve"}, "mode"),
    ({"n": 99}, "n: "),
    ({"keyword": ["a"]}, "keyword"),
    ({"keywords": ["月"], "max_new_tokens": 8}, "cannot spell"),
])
def test_bad_write_requests_are_400s(plain_client: TestClient, body: dict, message: str):
    response = plain_client.post("/v1/write", json=body)
    assert response.status_code == 400 and message in response.json()["error"]["message"], response.text


def test_a_cli_error_is_one_line(chat_run: Path):
    result = luoxia_cli("write", str(chat_run), "sonnet", check=False)
    assert result.returncode != 0 and "unknown genre 'sonnet'" in result.stderr and "Traceback" not in result.stderr


def test_odd_values_are_400s_not_500s(plain_client: TestClient):
    for body in ({"title": "x\ud800y"}, {"keywords": ["\ud800"]}, {"seed": 2**63}, {"top_k": 2**70},
                 {"keywords": ["x" * 41]}, {"keywords": ["a"] * 9}, {"draft": "x" * 5000}):
        raw = json.dumps(body)  # ASCII-escaped: a lone surrogate travels as \ud800, as a client could send it
        response = plain_client.post("/v1/write", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (body, response.text)
