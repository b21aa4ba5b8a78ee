"""Seed parity: the same seeded request gives the same text through the library, the CLI and the
server (batching on, off, and with other requests decoding beside it). Row k of a request (prompt
major, then choice) draws with seed + k on every path."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import luoxia
from luoxia.generate.interface import GenerationConfig
from tests.helpers import luoxia as luoxia_cli

PROMPTS = ["To be", "Whether 'tis"]
N, MAX_TOKENS, TEMPERATURE, TOP_P, SEED = 2, 24, 1.0, 0.9, 123
ROWS = [p for p in PROMPTS for _ in range(N)]  # the choices, prompt-major


@pytest.fixture(scope="module")
def library_texts(chat_run: Path) -> list[str]:
    config = GenerationConfig(max_new_tokens=MAX_TOKENS, temperature=TEMPERATURE, top_p=TOP_P, seed=SEED)
    texts = [r.text for r in luoxia.load(chat_run, device="cpu").generate(ROWS, config)]
    assert len(set(texts)) > 1, "the rows should differ (each has its own seed), or the test proves little"
    return texts


def served_texts(settings_for, others: int = 0, **settings) -> list[str]:
    """The texts of one /v1/completions request (prompts × n), with ``others`` requests of other
    prompts, seeds and lengths sent from threads just before it."""
    from fastapi.testclient import TestClient

    from luoxia.serve.app import create_app

    body = {"prompt": PROMPTS, "n": N, "max_tokens": MAX_TOKENS, "temperature": TEMPERATURE, "top_p": TOP_P,
            "seed": SEED}
    config = settings_for(image_models=[], open_access=True, safety=False, **settings)
    with TestClient(create_app(config), base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        crowd = [threading.Thread(target=client.post, args=("/v1/completions",), kwargs={"json": {
            "prompt": f"And by opposing {i}", "max_tokens": 64, "temperature": 0.7, "seed": i}})
            for i in range(others)]
        for thread in crowd:
            thread.start()
        response = client.post("/v1/completions", json=body)
        for thread in crowd:
            thread.join(timeout=120)
    assert response.status_code == 200, response.text
    return [choice["text"] for choice in sorted(response.json()["choices"], key=lambda c: c["index"])]


def test_the_cli_gives_the_library_text(chat_run: Path, library_texts: list[str]):
    prompts = [arg for p in ROWS for arg in ("--prompt", p)]
    result = luoxia_cli("generate", "--model", str(chat_run), *prompts, "--json", "--device", "cpu",
                        "--max-new-tokens", str(MAX_TOKENS), "--temperature", str(TEMPERATURE),
                        "--top-p", str(TOP_P), "--seed", str(SEED))
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == library_texts


@pytest.mark.parametrize("settings", [{"batching": True}, {"batching": False}], ids=["batching", "no-batching"])
def test_the_server_gives_the_library_text(settings_for, library_texts: list[str], settings: dict):
    assert served_texts(settings_for, **settings) == library_texts


def test_other_requests_in_the_batch_change_nothing(settings_for, library_texts: list[str]):
    assert served_texts(settings_for, others=4, batching=True) == library_texts


def test_a_different_seed_gives_different_text(settings_for, chat_run: Path, library_texts: list[str]):
    """The parity above is not vacuous: the seed reaches every path."""
    config = GenerationConfig(max_new_tokens=MAX_TOKENS, temperature=TEMPERATURE, top_p=TOP_P, seed=SEED + 100)
    assert [r.text for r in luoxia.load(chat_run, device="cpu").generate(ROWS, config)] != library_texts
