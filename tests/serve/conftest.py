"""A live server on tiny models, shared by the serving tests: a character GPT that knows ChatML's
characters, a tiny VAE, a database in a temporary directory, and an API key."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import TEXT, TINY_IMAGE, tiny_recipe
from tests.serve.browser import launch

CHAT = "<|im_start|>user\nTo be?<|im_end|>\n<|im_start|>assistant\nOr not to be.<|im_end|>\n"


@pytest.fixture(scope="session")
def chat_run(tmp_path_factory) -> Path:
    from luoxia.train.lm import train_lm

    base = tmp_path_factory.mktemp("serve-lm")
    corpus = base / "corpus.txt"
    corpus.write_text((TEXT + CHAT) * 20 + "0123456789 @", encoding="utf-8")
    train_lm(tiny_recipe(base / "tiny-chat", corpus, "max_steps=40", "eval_interval=20", "data.split=tail",
                         "model.block_size=256"))
    return base / "tiny-chat"


@pytest.fixture(scope="session")
def image_run(tmp_path_factory) -> Path:
    from luoxia.registry import load_recipe
    from luoxia.train.image import train_image

    run = tmp_path_factory.mktemp("serve-vae") / "tiny-vae"
    train_image(load_recipe("configs/image/vae.yaml", [f"out_dir={run}", *TINY_IMAGE]))
    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    key: str
    data_dir: Path
    app: object


@pytest.fixture(scope="session")
def settings_for(chat_run: Path, image_run: Path, tmp_path_factory):
    from luoxia.serve.settings import ServeSettings

    def make(**overrides) -> ServeSettings:
        values = dict(models=[str(chat_run)], image_models=[str(image_run)], device="cpu",
                      data_dir=tmp_path_factory.mktemp("data"), max_tokens_limit=64)
        return ServeSettings(**{**values, **overrides})

    return make


@pytest.fixture(scope="session")
def live_server(settings_for) -> LiveServer:
    with running_server(settings_for()) as server:
        yield server


@contextmanager
def running_server(settings, models=None) -> Iterator[LiveServer]:
    """A server in a thread on a free port, with a user key; ``models`` (loaded) as `create_app` takes them."""
    import uvicorn

    from luoxia.serve.app import create_app
    from luoxia.serve.store import Store

    _, key = Store(settings.data_dir).create_key("tests")
    app = create_app(settings, models=models)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert server.started, "the server did not start"
        yield LiveServer(f"http://127.0.0.1:{port}", key, settings.data_dir, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def client(live_server: LiveServer):
    from openai import OpenAI

    return OpenAI(base_url=live_server.url + "/v1", api_key=live_server.key, max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def browser():
    """One Chromium for every studio test of this worker (tests/serve/browser.py)."""
    yield from launch()
