"""``POST /v1/summarize``: extractive without a model, a served model's summary with its length
token, the guard's redaction of personal data, and one-line 4xx errors."""

from __future__ import annotations

import io
import json

import pytest
from fastapi.testclient import TestClient

from luoxia import cli
from luoxia.apps.abstractive import AbstractiveConfig, text_length
from luoxia.apps.summarize import summarize
from luoxia.registry import load_writer
from luoxia.serve.app import create_app
from tests.echo import LOOPBACK, echo_models, echo_settings
from tests.serve.conftest import running_server

TEXT = ("Solar panels turn light into power. Wind turbines turn moving air into power. "
        "Solar panels and wind turbines both turn light and moving air into cheap clean power for homes. "
        "Call 13812345678 about solar panels and wind turbines turning light and air into clean power. "
        "The cat slept.")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = echo_settings(tmp_path_factory.mktemp("summarize-serve"), open_access=True)
    with TestClient(create_app(settings, models=echo_models(settings)), **LOOPBACK) as client:
        yield client


def test_extractive_needs_no_model_and_matches_the_library(client):
    body = client.post("/v1/summarize", json={"text": TEXT, "method": "lead", "k": 2}).json()
    assert body["indices"] == [0, 1] and body["model"] is None
    assert body["text"] == summarize(TEXT, "lead", k=2).text
    ranked = client.post("/v1/summarize", json={"text": TEXT, "length": 20}).json()
    assert ranked["method"] == "textrank" and ranked["target_length"] == 20


def test_the_guard_masks_a_phone_number_in_the_summary(client):
    body = client.post("/v1/summarize", json={"text": TEXT, "method": "lead", "k": 4}).json()
    assert "13812345678" not in body["text"] and body["indices"] == [0, 1, 2, 3]
    assert "13812345678" not in json.dumps(body, ensure_ascii=False)  # nor in the sentences, or any field
    assert body["safety"]  # the guard's record


def test_a_served_model_writes_with_the_length_token(client):
    # the echo model returns its prompt: the length token, then the document
    body = client.post("/v1/summarize", json={"text": TEXT, "method": "model", "model": "echo", "length": 12,
                                              "max_new_tokens": 400}).json()
    assert body["model"] == "echo" and body["text"] == "summarize <len=10>:"  # its first line
    assert body["target_source"] == "length" and body["length"] == 2


@pytest.mark.parametrize("payload, param", [
    ({"text": TEXT, "method": "bogus"}, "method"),
    ({"text": TEXT, "k": 0}, "k"),
    ({"text": TEXT, "ratio": 2}, "ratio"),
    ({"text": TEXT, "method": "model", "model": "nope"}, "nope"),
    ({"text": TEXT, "length": 5, "ratio": 0.5}, "not both"),
    ({}, "text"),
])
def test_bad_requests_are_4xx_in_one_line(client, payload, param):
    reply = client.post("/v1/summarize", json=payload)
    assert 400 <= reply.status_code < 500 and param in reply.text, reply.text


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """A live OpenAI-compatible server (Luoxia's own, serving the echo model: a reply shows the prompt
    it was sent), started outside any test's captured output (uvicorn's log handlers keep the stream)."""
    settings = echo_settings(tmp_path_factory.mktemp("summarize-remote"), max_tokens_limit=64)
    with running_server(settings, echo_models(settings)) as server:
        yield server


@pytest.mark.slow
def test_zero_shot_through_an_openai_writer(remote, monkeypatch, capsys):
    """The reference option: ``--model openai:BASE_URL#MODEL``, from the library and the CLI."""
    monkeypatch.setenv("OPENAI_API_KEY", remote.key)
    spec = f"openai:{remote.url}/v1#echo"
    summary = summarize(TEXT, "model", length=12, writer=load_writer(spec), config=AbstractiveConfig(max_new_tokens=30))
    assert summary.text == "summarize <len=10>:" and summary.target_length == 12
    monkeypatch.setattr("sys.argv", ["luoxia", "summarize", "--method", "model", "--model", spec, "--ratio", "0.2",
                                     "--max-new-tokens", "9", "--json"])
    monkeypatch.setattr("sys.stdin", io.StringIO(TEXT))
    with pytest.raises(SystemExit) as exit_:  # typer's standalone mode exits 0 after a command
        cli.main()
    assert exit_.value.code == 0
    body = json.loads(capsys.readouterr().out)
    assert body["text"] == "summarize" and body["target_source"] == "ratio"
    assert body["target_length"] == round(0.2 * text_length(TEXT))
