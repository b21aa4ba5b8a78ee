"""`OpenAIGenerator` against a live `luoxia serve` on loopback: a real OpenAI-compatible server
(the serving tests' tiny chat GPT, tests/serve/conftest.py), reached through the official `openai` client."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from luoxia import cli
from luoxia.errors import ConfigError, RemoteError
from luoxia.generate.interface import GenerationConfig, TextGenerator
from luoxia.generate.openai_backend import (
    CHAT_PREFIX,
    OpenAIBackendConfig,
    OpenAIGenerator,
    decode_messages,
    estimate_tokens,
    parse_openai_spec,
)
from luoxia.registry import load, load_writer
from luoxia.safety.guard import WATERMARK_SKIPPED, Guard, GuardedGenerator
from tests.serve.conftest import LiveServer, free_port

pytestmark = pytest.mark.slow
KEY_ENV = "LUOXIA_TEST_REMOTE_KEY"


@pytest.fixture(scope="module")
def server(live_server: LiveServer) -> tuple[str, str]:
    """The serving tests' live server (tests/serve/conftest.py) and a key of this module's own
    (rate limits are per key): (base URL, key)."""
    from luoxia.serve.store import Store

    _, key = Store(live_server.data_dir).create_key("remote-writer")
    return live_server.url + "/v1", key


@pytest.fixture
def remote(server, monkeypatch) -> OpenAIGenerator:
    url, key = server
    monkeypatch.setenv(KEY_ENV, key)
    return OpenAIGenerator(OpenAIBackendConfig(base_url=url, model="tiny-chat", api_key_env=KEY_ENV, max_retries=0,
                                               timeout_s=60))


def test_spec_and_config_block_load_the_same_generator():
    spec = load("openai:http://127.0.0.1:8000/v1/#demo-pydoc")
    assert isinstance(spec, OpenAIGenerator) and isinstance(spec, TextGenerator)
    assert (spec.config.base_url, spec.name) == ("http://127.0.0.1:8000/v1", "demo-pydoc")
    block = load_writer({"base_url": "http://127.0.0.1:8000/v1", "model": "demo-pydoc", "endpoint": "completions"})
    assert isinstance(block, OpenAIGenerator) and block.config.endpoint == "completions"
    for bad in ("openai:http://127.0.0.1:8000/v1", "openai:ftp://host#m"):
        with pytest.raises(ConfigError, match="openai:|base_url"):
            parse_openai_spec(bad)
    with pytest.raises(ConfigError, match="unknown config key 'api_key'"):
        load_writer({"base_url": "http://h/v1", "model": "m", "api_key": "sk-secret"})  # keys only by variable


def test_chat_is_passed_through_as_messages_and_counted_roughly():
    generator = OpenAIGenerator(OpenAIBackendConfig(base_url="http://h/v1", model="m"))
    messages = [{"role": "system", "content": "简短回答"}, {"role": "user", "content": "To be?"}]
    prompt, stops = generator.render_chat(messages)
    assert prompt.startswith(CHAT_PREFIX) and stops == [] and decode_messages(prompt) == messages
    assert decode_messages("plain") == [{"role": "user", "content": "plain"}]
    assert estimate_tokens("你好 abcd") == 2 + 2 and generator.count_tokens(prompt) == 4 + 4 + 4 + 2
    completions = OpenAIGenerator(OpenAIBackendConfig(base_url="http://h/v1", model="m", endpoint="completions"))
    assert completions.render_chat(messages)[0].endswith("<|im_start|>assistant\n")


def test_generate_stream_and_seeds(remote: OpenAIGenerator):
    config = GenerationConfig(max_new_tokens=24, temperature=0.9, seed=3)
    first = remote.generate(["To be", "To be"], config)
    assert first[0].text and first[0].finish_reason in ("stop", "length") and first[0].prompt_tokens > 0
    assert 0 < first[0].completion_tokens <= 24
    assert [r.text for r in remote.generate(["To be", "To be"], config)] == [r.text for r in first]  # same seed
    # row i is sent seed + i, as GenerationConfig documents
    assert remote.generate(["To be"], config.model_copy(update={"seed": 4}))[0].text == first[1].text
    pieces = remote.stream("To be", config)
    streamed = []
    while True:
        try:
            streamed.append(next(pieces))
        except StopIteration as stop:
            result = stop.value
            break
    assert "".join(streamed) == result.text == first[0].text


def test_stop_strings_cut_on_the_server_and_here(remote: OpenAIGenerator):
    greedy = GenerationConfig(max_new_tokens=30, temperature=0)
    text = remote.generate(["To be"], greedy)[0].text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    cut = text[:text.index(stop)]
    for stops in ([stop], ["@@1", "@@2", "@@3", "@@4", stop]):  # the fifth is never sent: trimmed here
        config = greedy.model_copy(update={"stop": stops})
        result = remote.generate(["To be"], config)[0]
        assert (result.text, result.finish_reason) == (cut, "stop")
        assert "".join(remote.stream("To be", config)) == cut


def test_settings_a_remote_model_cannot_honour_are_refused(remote: OpenAIGenerator):
    for update in ({"top_k": 5}, {"repetition_penalty": 1.3}, {"num_beams": 2}):
        with pytest.raises(ConfigError, match=f"cannot honour {next(iter(update))}|cannot honour beam"):
            remote.generate(["To be"], GenerationConfig(**update))
    with pytest.raises(ConfigError, match="logits processors"):
        list(remote.stream("To be", None, [lambda ids, logits: logits]))


def test_a_guarded_remote_writer_skips_the_watermark_and_says_so(remote: OpenAIGenerator, tmp_path):
    guarded = GuardedGenerator(remote, Guard(model_name=remote.name))
    assert guarded.watermark is None and guarded.processors() == []
    result = guarded.generate(["To be"], GenerationConfig(max_new_tokens=12, seed=0))[0]
    assert result.safety["watermark"] == {"skipped": WATERMARK_SKIPPED}
    assert result.safety["decisions"][0]["stage"] == "input"


def test_errors_are_one_line(server, remote: OpenAIGenerator, monkeypatch):
    url, _ = server
    config = GenerationConfig(max_new_tokens=4)

    def generator(**options) -> OpenAIGenerator:
        return OpenAIGenerator(OpenAIBackendConfig(**{"base_url": url, "model": "tiny-chat", "api_key_env": KEY_ENV,
                                                      "max_retries": 0, **options}))

    with pytest.raises(RemoteError, match="cannot reach .* is the server running"):
        generator(base_url=f"http://127.0.0.1:{free_port()}/v1").generate(["x"], config)
    with pytest.raises(ConfigError, match="404.*it serves: tiny-chat"):
        generator(model="no-such-model").generate(["x"], config)
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-123")
    with pytest.raises(ConfigError, match=f"401.*{KEY_ENV} holds a key the server refuses") as refused:
        generator().generate(["x"], config)
    assert "sk-wrong-key-123" not in str(refused.value)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=f"{KEY_ENV} is unset"):
        list(generator().stream("x", config))


def test_a_server_that_never_answers_times_out():
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        generator = OpenAIGenerator(OpenAIBackendConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m",
                                                        timeout_s=0.2, max_retries=0))
        with pytest.raises(RemoteError, match=r"did not answer within 0\.2 s"):
            generator.generate(["x"], GenerationConfig(max_new_tokens=4))


def luoxia_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``luoxia ARGS`` in this process, through the entry point: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["luoxia", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_generates_through_a_remote_model(server, monkeypatch, capsys):
    url, key = server
    monkeypatch.setenv("OPENAI_API_KEY", key)
    model = f"openai:{url}#tiny-chat"
    code, out, _ = luoxia_main(monkeypatch, capsys, "generate", "--model", model, "-p", "To be", "-p", "To be",
                               "--max-new-tokens", "8", "--seed", "1", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 2 and all(0 < r["completion_tokens"] <= 8 for r in rows)
    code, _, err = luoxia_main(monkeypatch, capsys, "generate", "--model", model, "-p", "x", "--watermark")
    assert code == 2 and "logits processors" in err and len(err.strip().splitlines()) == 1 and key not in err


def test_the_server_answers_a_remote_writers_failure_with_502_and_refuses_to_serve_one(tmp_path):
    from luoxia.serve.errors import error_for
    from luoxia.serve.models import load_models
    from luoxia.serve.settings import ServeSettings

    assert error_for(RemoteError("cannot reach http://h/v1")).status == 502
    with pytest.raises(ConfigError, match="serves local runs"):
        load_models(ServeSettings(models=["openai:http://127.0.0.1:9/v1#m"], data_dir=tmp_path))
