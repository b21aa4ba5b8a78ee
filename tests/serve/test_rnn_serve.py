"""An LSTM run served by `luoxia serve` through the same server code as the GPT: completions, chat,
streaming, seeds (the library's text, batched or not, whoever shares the batch), logprobs, the
context check and the guard. The server sees the model only through the registry and the
generation interface."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import luoxia
from luoxia.data.tokenizer import EOS_TOKEN, train_char_tokenizer
from luoxia.generate.interface import GenerationConfig
from luoxia.generate.rnn import STATEFUL_CONTEXT, RNNBatchDecoder
from luoxia.serve.app import create_app
from luoxia.serve.settings import ServeSettings
from tests.helpers import TEXT, save_rnn_run, tiny_rnn
from tests.serve.conftest import CHAT

PROMPTS = ["To be", "Whether 'tis"]
N, MAX_TOKENS, SEED = 2, 24, 123
ROWS = [p for p in PROMPTS for _ in range(N)]  # the choices, prompt-major


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory) -> Path:
    tokenizer = train_char_tokenizer([TEXT + CHAT], special_tokens=[EOS_TOKEN])
    model = tiny_rnn("lstm", tokenizer.vocab_size, seed=2)  # trained statefully: served with STATEFUL_CONTEXT
    return save_rnn_run(tmp_path_factory.mktemp("serve-rnn") / "tiny-lstm", model, tokenizer)


def client_for(run: Path, data_dir: Path, **settings) -> Iterator[TestClient]:
    values = dict(models=[str(run)], image_models=[], device="cpu", data_dir=data_dir, max_tokens_limit=64,
                  open_access=True, safety=False)
    app = create_app(ServeSettings(**{**values, **settings}))
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        yield client


@pytest.fixture(scope="module")
def client(rnn_run: Path, tmp_path_factory) -> Iterator[TestClient]:
    yield from client_for(rnn_run, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def library_texts(rnn_run: Path) -> list[str]:
    config = GenerationConfig(max_new_tokens=MAX_TOKENS, temperature=1.0, seed=SEED)
    texts = [r.text for r in luoxia.load(rnn_run, device="cpu").generate(ROWS, config)]
    assert len(set(texts)) > 1, "the rows should differ (each has its own seed), or the test proves little"
    return texts


def completions(client: TestClient, others: int = 0, **extra) -> dict:
    """One /v1/completions request (prompts × n), with ``others`` requests of other prompts, seeds
    and lengths sent from threads just before it."""
    crowd = [threading.Thread(target=client.post, args=("/v1/completions",), kwargs={"json": {
        "prompt": f"And by opposing {i}", "max_tokens": 40 + i, "temperature": 0.7, "seed": i}})
        for i in range(others)]
    for thread in crowd:
        thread.start()
    response = client.post("/v1/completions", json={"prompt": PROMPTS, "n": N, "max_tokens": MAX_TOKENS,
                                                    "temperature": 1.0, "seed": SEED, **extra})
    for thread in crowd:
        thread.join(timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def texts_of(answer: dict) -> list[str]:
    return [choice["text"] for choice in sorted(answer["choices"], key=lambda c: c["index"])]


def test_the_server_gives_the_library_text_whoever_shares_the_batch(client: TestClient, library_texts: list[str]):
    batcher = client.app.state.models.text["tiny-lstm"].batcher  # continuous batching, many rows at once
    assert isinstance(batcher.engine.decoder, RNNBatchDecoder) and batcher.max_batch > 1
    assert texts_of(completions(client)) == library_texts
    assert texts_of(completions(client, others=3)) == library_texts


def test_without_batching_too(rnn_run: Path, tmp_path: Path, library_texts: list[str]):
    for unbatched in client_for(rnn_run, tmp_path, batching=False):
        assert texts_of(completions(unbatched)) == library_texts


def test_stream_deltas_make_the_text_and_logprobs_its_tokens(client: TestClient, library_texts: list[str]):
    body = {"prompt": PROMPTS[0], "max_tokens": MAX_TOKENS, "temperature": 1.0, "seed": SEED}
    response = client.post("/v1/completions", json={**body, "stream": True})
    assert response.status_code == 200, response.text
    events = [json.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert "".join(e["choices"][0].get("text") or "" for e in events) == library_texts[0]
    (choice,) = client.post("/v1/completions", json={**body, "logprobs": 1}).json()["choices"]
    assert "".join(choice["logprobs"]["tokens"]) == choice["text"] == library_texts[0]
    assert all(p <= 0 for p in choice["logprobs"]["token_logprobs"])


def test_chat_and_the_context_check(client: TestClient):
    messages = [{"role": "user", "content": "To be?"}]
    reply = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 16, "seed": 1})
    assert reply.status_code == 200, reply.text
    assert isinstance(reply.json()["choices"][0]["message"]["content"], str)
    long = "To be " * (STATEFUL_CONTEXT // 6)  # more than the 16-token training window: served
    assert client.post("/v1/completions", json={"prompt": long[: -6 * 11], "max_tokens": 64}).status_code == 200
    too_long = client.post("/v1/completions", json={"prompt": long, "max_tokens": 64})
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"
    assert f"context length is {STATEFUL_CONTEXT}" in too_long.json()["error"]["message"]


def test_the_guard_refuses_and_watermarks(rnn_run: Path, tmp_path: Path):
    for guarded in client_for(rnn_run, tmp_path, safety=True):
        blocked = guarded.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "we will kill you"}], "max_tokens": 8}).json()
        assert blocked["choices"][0]["finish_reason"] == "content_filter"
        answer = guarded.post("/v1/completions", json={"prompt": "To be", "max_tokens": 16, "seed": 1}).json()
        assert "key_id" in answer["choices"][0]["safety"]["watermark"]
