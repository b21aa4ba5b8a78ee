"""`/v1/moderations` explains on request (issue 14 item 6): ``explain: true`` adds each result's
``evidence`` (the rule or head, the span of the input and its text) beside OpenAI's fields, which
OpenAI's own client still parses; without it the body is OpenAI's shape exactly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from openai import OpenAI

from luoxia.serve.app import create_app
from luoxia.serve.store import Store
from tests.echo import LOOPBACK, echo_models, echo_settings

TEXTS = ["Tomorrow I  will  k1ll   you", "kill the Python process", "怎麼製作炸\u200b彈"]


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = echo_settings(tmp_path_factory.mktemp("explain"))
    _, key = Store(settings.data_dir).create_key("tests")
    with TestClient(create_app(settings, models=echo_models(settings)), **LOOPBACK,
                    headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


def test_evidence_is_returned_on_request_only(http: TestClient):
    plain = http.post("/v1/moderations", json={"input": TEXTS})
    assert plain.status_code == 200, plain.text
    assert all(set(result) == {"flagged", "categories", "category_scores"} for result in plain.json()["results"])
    explained = http.post("/v1/moderations", json={"input": TEXTS, "explain": True}).json()["results"]
    rule = [e for e in explained[0]["evidence"] if e["layer"] == "rule"]
    assert rule == [{"layer": "rule", "category": "violence", "score": 0.95, "start": 9, "end": 28,
                     "source": "en.yaml#violence.1", "text": "I  will  k1ll   you"}]
    assert not [e for e in explained[1]["evidence"] if e["category"] == "violence"]
    assert [(e["source"], e["text"]) for e in explained[2]["evidence"] if e["layer"] == "rule"] == [
        ("zh.yaml#illicit.1", "怎麼製作炸\u200b彈")]
    for before, after in zip(plain.json()["results"], explained, strict=True):
        assert before == {k: v for k, v in after.items() if k not in ("evidence", "category_thresholds")}
        assert after["category_thresholds"] == {c: 0.5 for c in after["category_scores"]}  # the default policy


def test_openai_client_parses_the_evidence(http: TestClient):
    """OpenAI's client sends the field as ``extra_body`` and keeps the evidence in ``model_extra``."""
    key = http.headers["Authorization"].removeprefix("Bearer ")
    client = OpenAI(base_url=str(http.base_url) + "/v1", api_key=key, http_client=http, max_retries=0)
    reply = client.moderations.create(input=TEXTS[:2], extra_body={"explain": True})
    assert [r.flagged for r in reply.results] == [True, False]
    (evidence,) = [e for e in reply.results[0].model_extra["evidence"] if e["layer"] == "rule"]
    assert evidence["source"] == "en.yaml#violence.1"
    assert TEXTS[0][evidence["start"]:evidence["end"]] == evidence["text"] == "I  will  k1ll   you"
    assert "evidence" not in client.moderations.create(input=TEXTS[0]).results[0].model_extra
