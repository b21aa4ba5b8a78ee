"""A stand-in text model that echoes its prompt, behind Luoxia's real guard and server: the
attacker's view of the guard, since whatever personal data the prompt carries reaches the output.

One token per character (id = code point), log-probability -0.5 each, streamed in pieces of
``chunk`` characters so that a value is split across stream chunks.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np
import yaml

from luoxia.apps.interface import AppReply, Message, last_user_message, record_handoff, turn_guard
from luoxia.apps.registry import APPS, AppContext
from luoxia.generate.interface import GenerationConfig, GenerationResult, LogitsProcessor
from luoxia.retrieval.interface import Hit
from luoxia.runs import APP_FILE
from luoxia.serve.models import Models, serve_text
from luoxia.serve.settings import ServeSettings

LOGPROB = -0.5


class CharTokenizer:
    """``encode``/``decode`` by code point: what the server's logprobs and watermark detection use."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(map(chr, ids))


class EchoGenerator:
    """A `TextGenerator` whose completion is its prompt (cut at ``max_new_tokens`` characters and at
    the first stop string); chat echoes the last user message."""

    def __init__(self, name: str = "echo", chunk: int = 3, context_length: int = 100_000):
        self.name, self.chunk, self.context_length = name, chunk, context_length

    def count_tokens(self, text: str) -> int:
        return len(text)

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        users = [m["content"] for m in messages if m["role"] == "user"]
        return (users[-1] if users else ""), []

    def _completion(self, prompt: str, config: GenerationConfig) -> tuple[str, str]:
        text = prompt[:config.max_new_tokens]
        reason = "length" if len(prompt) > config.max_new_tokens else "stop"
        for stop in config.stop:
            if stop in text:
                text, reason = text[:text.index(stop)], "stop"
        return text, reason

    def generate(self, prompts: Sequence[str], config: GenerationConfig | None = None,
                 logits_processors: Sequence[LogitsProcessor] = ()) -> list[GenerationResult]:
        config = config or GenerationConfig()
        results = []
        for prompt in prompts:
            text, reason = self._completion(prompt, config)
            results.append(GenerationResult(text, [ord(c) for c in text], reason,  # type: ignore[arg-type]
                                            len(prompt), [LOGPROB] * len(text)))
        return results

    def stream(self, prompt: str, config: GenerationConfig | None = None,
               logits_processors: Sequence[LogitsProcessor] = ()) -> Generator[str, None, GenerationResult]:
        (result,) = self.generate([prompt], config, logits_processors)
        for start in range(0, len(result.text), self.chunk):
            yield result.text[start:start + self.chunk]
        return result


def echo_models(settings: ServeSettings, chunk: int = 3) -> Models:
    """The server's models: one echo text model (named ``echo``) behind the guard when
    ``settings.safety`` is on. Pass to ``create_app(settings, models=...)``."""
    models = Models(settings)
    serve_text(models, "echo", EchoGenerator(chunk=chunk), CharTokenizer())
    return models


def echo_settings(data_dir: Path, **overrides: object) -> ServeSettings:
    """Settings for an echo server: a temporary data directory, no model paths to load."""
    values: dict[str, object] = dict(models=["echo"], device="cpu", data_dir=data_dir, max_tokens_limit=4096)
    return ServeSettings(**{**values, **overrides})  # type: ignore[arg-type]


# A TestClient's default addresses ("testclient", "testserver") are not loopback, and open mode
# answers only requests from and to a loopback address: ``TestClient(app, **LOOPBACK)``.
LOOPBACK: dict = dict(base_url="http://127.0.0.1", client=("127.0.0.1", 50000))


class ParrotApp:
    """A stand-in application (`ChatApp`) with the real guard and review queue: it answers "You said:
    <the last user message>" citing one made-up source, and hands off when the message asks for a
    human. Register it with `parrot_app_dir` (kind ``parrot``)."""

    kind = "parrot"

    def __init__(self, name: str, context: AppContext):
        self.name, self.guard = name, context.guard

    def reply(self, messages: Sequence[Message], conversation_id: str | None = None) -> AppReply:
        question = last_user_message(messages)
        answer, safety, blocked = turn_guard(self.guard, question, lambda: f"You said: {question}")
        reply = AppReply(answer, [Hit("faq-1", 0.9, "What do parrots say?", {"answer": "What you say."})],
                         intent="repeat", confidence=0.9, safety=safety)
        if "human" in question and not blocked:
            reply.handoff, reply.reason = True, "asked_for_human"
            if self.guard is not None and self.guard.audit is not None:
                reply.review_id = record_handoff(self.guard.audit, self.name, "asked_for_human", messages, 0.9,
                                                 self.guard.redactor)
        return reply


def parrot_app_dir(path: Path, monkeypatch, name: str = "parrot") -> Path:
    """An application directory of kind ``parrot`` (registered in `APPS` for this test)."""
    monkeypatch.setitem(APPS, "parrot", lambda folder, context: ParrotApp(yaml.safe_load(
        (folder / APP_FILE).read_text(encoding="utf-8"))["name"], context))
    path.mkdir(parents=True, exist_ok=True)
    (path / APP_FILE).write_text(yaml.safe_dump({"kind": "parrot", "name": name}), encoding="utf-8")
    return path


class WordHashEncoder:
    """Bag-of-words hashed into ``dim`` buckets: an encoder with no weights, so tests need no model."""

    name = "hash"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.zeros((len(texts), self.dim), np.float32)
        for row, text in zip(rows, texts, strict=True):
            for word in re.findall(r"\w+", text.lower()):
                row[sum(map(ord, word)) % self.dim] += 1
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-6)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class ScriptedWriter:
    """A writer model that says what it is told to (``text``)."""

    name, context_length = "writer", 512

    def __init__(self, text: str) -> None:
        self.text = text

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        return "\n".join(m["content"] for m in messages), []

    def generate(self, prompts, config=None, logits_processors=()):
        return [GenerationResult(self.text, [], "stop", 0) for _ in prompts]
