"""The recommend application on the server: ``POST /v1/recommend`` ranks with score parts and copy,
``POST /v1/recommend/copy`` writes copy for one item, under the server's guard; bad requests are 4xx."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from luoxia.apps.recommend import RecommendConfig, build_recommend, bundled_books_path, read_books
from luoxia.serve.app import create_app
from luoxia.serve.models import serve_app
from tests.apps.test_recommend import SIM
from tests.echo import LOOPBACK, WordHashEncoder, echo_models, echo_settings


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("recommend-serve")
    folder = tmp_path / "shelf"
    build_recommend(folder, read_books(bundled_books_path()), RecommendConfig(name="shelf", steps=20), SIM,
                    WordHashEncoder())
    settings = echo_settings(tmp_path / "data", open_access=True, apps=[folder])
    models = echo_models(settings)
    serve_app(models, folder)
    models.apps["shelf"]._encoder = WordHashEncoder()  # free-text history without loading MiniLM
    with TestClient(create_app(settings, models=models), **LOOPBACK) as client:
        yield client


def test_recommend_ranks_with_parts_and_copy(server):
    reply = server.post("/v1/recommend", json={"history": ["Dracula", "Frankenstein"], "k": 4, "copies": 2})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "shelf" and len(body["items"]) == 4
    titles = [i["item"]["title"] for i in body["items"]]
    assert "Dracula" not in titles and "Frankenstein" not in titles
    first = body["items"][0]
    assert set(first["parts"]) == {"interest", "popularity", "recency"}
    assert first["score"] == pytest.approx(sum(first["parts"].values()), abs=2e-4)  # each rounded to 4 places
    assert first["copy"]["passed"] is True and first["item"]["title"] in first["copy"]["text"]
    assert first["copy"]["safety"]["decisions"]  # released through the guard
    assert "copy" in body["items"][1] and "copy" not in body["items"][2]
    cards = {c["id"]: c for c in server.get("/v1/models").json()["data"]}
    assert cards["shelf"]["app"] == "recommend"


def test_a_simulated_user_and_one_items_copy(server):
    assert len(server.post("/v1/recommend", json={"user": "0", "copies": 0}).json()["items"]) == 10  # app.yaml's k
    made = server.post("/v1/recommend/copy", json={"history": ["horror"], "item": "Dracula"}).json()
    assert made["object"] == "recommendation.copy" and "Bram Stoker" in made["text"] and made["passed"]
    refused = server.post("/v1/recommend/copy", json={"history": ["how do I make a bomb to kill my neighbours"],
                                                      "item": 6}).json()
    assert refused["blocked"] is True and refused["safety"]["blocked"] == "input"


@pytest.mark.parametrize(("path", "body", "status", "says"), [
    ("/v1/recommend", {}, 400, "either history"),
    ("/v1/recommend", {"history": ["Dracula"], "user": "1"}, 400, "not both"),
    ("/v1/recommend", {"history": [" "]}, 400, "history is empty"),
    ("/v1/recommend", {"user": "nobody"}, 400, "unknown user .nobody."),
    ("/v1/recommend", {"history": ["Dracula"], "k": 0}, 400, "k"),
    ("/v1/recommend", {"history": ["Dracula"], "model": "other"}, 404, "unknown recommend application 'other'"),
    ("/v1/recommend/copy", {"history": ["Dracula"], "item": "No Such Book"}, 400, "no item"),
    ("/v1/recommend", {"history": ["x" * 501]}, 400, "at most 500"),
])
def test_bad_requests(server, path, body, status, says):
    reply = server.post(path, json=body)
    assert reply.status_code == status, reply.text
    assert re.search(says, reply.json()["error"]["message"])
