"""Any OpenAI-compatible server as a `TextGenerator`: vLLM, llama.cpp's server, Ollama, a hosted
API, or `luoxia serve` itself, through the official `openai` client.

``luoxia.load("openai:http://127.0.0.1:8000/v1#demo-pydoc")`` or `OpenAIBackendConfig` (a YAML block:
``base_url``, ``model``, ``api_key_env`` …). The key is read from the environment variable the config
names and is never logged, printed or put in an error message.

What maps onto the API, and what does not:
- ``max_new_tokens`` → ``max_tokens``; ``temperature`` (0 = greedy), ``top_p``, ``stop`` (also trimmed
  here, so a server that ignores stop strings still honours them; the first `MAX_REMOTE_STOPS` are
  sent) and ``seed`` (prompt *i* of a batch is sent ``seed + i``, as `GenerationConfig` documents; the
  same seed gives the same text only where the server honours seeds — `luoxia serve`, vLLM and
  llama.cpp do).
- ``collapse_repeats`` is applied here, to the text that comes back.
- ``use_cache`` and ``length_penalty`` (beam search only) do not apply to a remote model and are ignored.
- ``top_k``, ``repetition_penalty`` ≠ 1 and ``num_beams`` > 1 change the text and the OpenAI API has
  no such settings: they are refused in one line, as are logits processors (the watermark), which
  only run inside a local decode loop (a guard skips its watermark for a remote model; see
  `runs_logits_processors`).
- Token ids are not returned by the API: a result's ``token_ids`` holds one `REMOTE_TOKEN` (-1) per
  completion token the server counted (its ``usage``; `count_tokens`'s estimate when it reports none),
  so ``completion_tokens`` is right and nothing mistakes them for a vocabulary's ids.
- `count_tokens` is an estimate (the API has no tokenizer endpoint): one token per CJK character plus
  one per four other characters, and four per chat message for its framing; prompt token counts
  in results are the server's own when it reports usage.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from luoxia.config import Config, build_config
from luoxia.errors import ConfigError, RemoteError
from luoxia.generate.interface import FinishReason, GenerationConfig, GenerationResult, LogitsProcessor
from luoxia.generate.postprocess import collapse_repeats, stop_prefix_length, trim_at_stop
from luoxia.generate.templates import render_chat

if TYPE_CHECKING:  # the client is imported when first built: `import openai` costs the CLI a second at startup
    from openai import OpenAI

SPEC_PREFIX = "openai:"
CHAT_PREFIX = "<|luoxia-chat|>"  # a conversation encoded by `render_chat` for the chat endpoint
MAX_REMOTE_STOPS = 4  # the OpenAI API's limit on stop strings; the rest are trimmed here only
REMOTE_TOKEN = -1  # the placeholder id of a token the server generated
MESSAGE_OVERHEAD = 4  # estimated tokens of a chat message's framing (role, separators)
NO_KEY = "no-key"  # sent when the key's variable is unset: local servers (vLLM, llama.cpp, Ollama) need none
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")


class OpenAIBackendConfig(Config):
    """An OpenAI-compatible server and model: the ``writer:`` block of an application, or what
    ``openai:BASE_URL#MODEL`` stands for."""

    base_url: str = Field(description="the server's API root, e.g. http://127.0.0.1:8000/v1")
    model: str = Field(min_length=1, description="the model name the server knows")
    api_key_env: str = Field("OPENAI_API_KEY", min_length=1,
                             description="environment variable holding the API key (unset: none is sent)")
    endpoint: Literal["chat", "completions"] = Field("chat", description="chat: /chat/completions, a prompt "
                                                     "sent as one user message; completions: /completions, plain "
                                                     "prompts (a conversation rendered as ChatML)")
    timeout_s: float = Field(60.0, gt=0, description="seconds to wait for each request")
    max_retries: int = Field(2, ge=0, description="retries of a refused connection, a timeout, 429 or 5xx, "
                                                  "with the client's exponential back-off")
    context_length: int = Field(4096, ge=1, description="the model's context window in tokens (the API does not "
                                                       "say): what callers budget prompts against")
    stream_usage: bool = Field(True, description="ask for token usage at the end of a stream "
                                                 "(stream_options.include_usage); off for a server that refuses it")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://[^/\s]+", value):
            raise ValueError(f"base_url must start with http:// or https:// and name a host, not '{value}'")
        return value.rstrip("/")


def is_openai_spec(spec: object) -> bool:
    """Whether ``spec`` is an ``openai:BASE_URL#MODEL`` string."""
    return isinstance(spec, str) and spec.startswith(SPEC_PREFIX)


def parse_openai_spec(spec: str) -> OpenAIBackendConfig:
    """``openai:http://host:port/v1#model-name`` → its config (other settings at their defaults)."""
    url, sep, model = spec.removeprefix(SPEC_PREFIX).rpartition("#")
    if not sep or not url or not model:
        raise ConfigError(f"'{spec}' is not of the form openai:BASE_URL#MODEL, e.g. "
                          f"openai:http://127.0.0.1:8000/v1#demo-pydoc")
    return build_config(OpenAIBackendConfig, {"base_url": url, "model": model}, source=f"'{spec}'")


def estimate_tokens(text: str) -> int:
    """One token per CJK character, one per four other characters (rounded up)."""
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 4)


def encode_messages(messages: Sequence[dict[str, str]]) -> str:
    """A conversation as one prompt string that `decode_messages` turns back into messages."""
    return CHAT_PREFIX + json.dumps([{"role": m.get("role", "user"), "content": m.get("content", "")}
                                     for m in messages], ensure_ascii=False)


def decode_messages(prompt: str) -> list[dict[str, str]]:
    """The messages of an encoded conversation; a plain prompt is one user message."""
    if not prompt.startswith(CHAT_PREFIX):
        return [{"role": "user", "content": prompt}]
    try:
        messages = json.loads(prompt.removeprefix(CHAT_PREFIX))
    except json.JSONDecodeError:
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def refused_settings(config: GenerationConfig, processors: Sequence[LogitsProcessor]) -> list[str]:
    """The settings of a request that a remote model cannot honour and that would change its text."""
    return [what for what, asked in [
        ("top_k", config.top_k is not None), ("repetition_penalty", config.repetition_penalty != 1.0),
        ("beam search (num_beams > 1)", config.num_beams > 1),
        ("logits processors (the watermark)", bool(processors))] if asked]


def _finish(reason: str | None) -> FinishReason:
    return reason if reason in ("stop", "length", "content_filter") else "stop"  # type: ignore[return-value]


class OpenAIGenerator:
    """A `TextGenerator` whose text comes from an OpenAI-compatible server (see the module notes)."""

    runs_logits_processors = False  # a guard reads this: no watermark can be added to a remote model's tokens

    def __init__(self, config: OpenAIBackendConfig):
        self.config = config
        self.name, self.context_length = config.model, config.context_length
        self._client: OpenAI | None = None

    @property
    def client(self) -> OpenAI:
        """The `openai` client, built on first use (the key read from the environment then)."""
        if self._client is None:
            import openai  # noqa: PLC0415 - a third-party import, deferred: see TYPE_CHECKING above

            self._client = openai.OpenAI(base_url=self.config.base_url, api_key=self._key() or NO_KEY,
                                         timeout=self.config.timeout_s, max_retries=self.config.max_retries)
        return self._client

    def _key(self) -> str:
        return os.environ.get(self.config.api_key_env, "")

    def __repr__(self) -> str:  # never the key
        return f"OpenAIGenerator({self.config.base_url}#{self.config.model}, endpoint={self.config.endpoint})"

    def count_tokens(self, text: str) -> int:
        if text.startswith(CHAT_PREFIX):
            return sum(MESSAGE_OVERHEAD + estimate_tokens(m["content"]) for m in decode_messages(text))
        return estimate_tokens(text)

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        """Chat endpoint: the messages themselves, encoded (the server applies the model's template;
        no stop strings needed). Completions endpoint: ChatML, ending at ``<|im_end|>``."""
        if self.config.endpoint == "completions":
            return render_chat(None, messages)
        return encode_messages(messages), []

    def generate(self, prompts: Sequence[str], config: GenerationConfig | None = None,
                 logits_processors: Sequence[LogitsProcessor] = ()) -> list[GenerationResult]:
        """One request per prompt, prompt *i* seeded ``seed + i``."""
        config = self._checked(config, logits_processors)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        results = []
        for i, prompt in enumerate(prompts):
            seed = None if config.seed is None else config.seed + i
            text, reason, usage = self._complete(prompt, config, seed)
            results.append(self._result(prompt, text, reason, usage, config))
        return results

    def stream(self, prompt: str, config: GenerationConfig | None = None,
               logits_processors: Sequence[LogitsProcessor] = ()) -> Generator[str, None, GenerationResult]:
        """Text as the server sends it, less what could still grow into a stop string."""
        config = self._checked(config, logits_processors)
        if config.collapse_repeats:  # collapsing needs the whole text
            result = self.generate([prompt], config)[0]
            yield result.text
            return result
        text, emitted, reason, usage = "", 0, "length", None
        with self._errors():
            events = self._request(prompt, config, config.seed, stream=True)
            try:
                for piece, finish, counted in events:
                    text += piece
                    usage = counted or usage
                    reason = finish or reason
                    settled, stopped = trim_at_stop(text, config.stop)
                    if stopped:
                        text, reason = settled, "stop"
                        break
                    ready = len(settled) - stop_prefix_length(settled, config.stop)
                    if ready > emitted:
                        yield settled[emitted:ready]
                        emitted = ready
            finally:
                events.close()
        if len(text) > emitted:
            yield text[emitted:]
        return self._result(prompt, text, reason, usage, config)

    def _checked(self, config: GenerationConfig | None, processors: Sequence[LogitsProcessor]) -> GenerationConfig:
        config = config or GenerationConfig()
        refused = refused_settings(config, processors)
        if refused:
            raise ConfigError(f"the remote model {self.name} ({self.config.base_url}) cannot honour "
                              f"{', '.join(refused)}: the OpenAI API has no such settings; leave them unset "
                              f"or use a local model")
        return config

    def _complete(self, prompt: str, config: GenerationConfig, seed: int | None
                  ) -> tuple[str, str, tuple[int, int] | None]:
        """(text trimmed at a stop string, finish reason, (prompt, completion) tokens or None)."""
        text, reason, usage = "", "length", None
        with self._errors():
            for piece, finish, counted in self._request(prompt, config, seed, stream=False):
                text, reason, usage = text + piece, finish or reason, counted or usage
        trimmed, stopped = trim_at_stop(text, config.stop)
        return trimmed, "stop" if stopped else reason, usage

    def _result(self, prompt: str, text: str, reason: str, usage: tuple[int, int] | None,
                config: GenerationConfig) -> GenerationResult:
        prompt_tokens, completion = usage or (self.count_tokens(prompt), estimate_tokens(text))
        if config.collapse_repeats:
            text = collapse_repeats(text, config.collapse_repeats)
        return GenerationResult(text, [REMOTE_TOKEN] * completion, _finish(reason), prompt_tokens)

    def _request(self, prompt: str, config: GenerationConfig, seed: int | None, stream: bool
                 ) -> Generator[tuple[str, str | None, tuple[int, int] | None], None, None]:
        """(text piece, finish reason, usage) events of one request, streamed or whole."""
        options: dict[str, Any] = {"model": self.config.model, "max_tokens": config.max_new_tokens,
                                   "temperature": config.temperature}
        if config.top_p is not None:
            options["top_p"] = config.top_p
        if config.stop:
            options["stop"] = config.stop[:MAX_REMOTE_STOPS]
        if seed is not None:
            options["seed"] = seed
        if stream:
            options["stream"] = True
            if self.config.stream_usage:
                options["stream_options"] = {"include_usage": True}
        reply: Any  # a ChatCompletion, a Completion, or a stream of their chunks
        if self.config.endpoint == "chat":
            messages: list[Any] = decode_messages(prompt)  # OpenAI's message dicts: role and content
            reply = self.client.chat.completions.create(messages=messages, **options)
        else:
            reply = self.client.completions.create(prompt=prompt, **options)
        try:
            yield from _events(reply, self.config.endpoint, stream)
        finally:
            if stream:  # a stream left early (a stop string) frees its connection
                reply.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The client's exceptions as one-line `RemoteError`s (a bad key or model: `ConfigError`)."""
        import openai  # noqa: PLC0415 - deferred, as in `client`

        where = f"{self.config.base_url} (model {self.config.model})"
        try:
            yield
        except openai.APITimeoutError:
            raise RemoteError(f"{where} did not answer within {self.config.timeout_s:g} s "
                              f"(timeout_s; {self.config.max_retries} retries)") from None
        except openai.APIConnectionError as error:
            cause = error.__cause__ or error
            raise RemoteError(f"cannot reach {where}: {self._scrub(str(cause))}; is the server running "
                              f"there?") from None
        except openai.AuthenticationError:
            state = "is unset" if not self._key() else "holds a key the server refuses"
            raise ConfigError(f"{where} refused the API key (401): ${self.config.api_key_env} {state}") from None
        except openai.NotFoundError as error:
            raise ConfigError(f"{where}: not found (404): {self._scrub(_message(error))}{self._served()}") from None
        except openai.APIStatusError as error:
            raise RemoteError(f"{where} refused the request ({error.status_code}): "
                              f"{self._scrub(_message(error))}") from None

    def _served(self) -> str:
        """``; it serves: a, b`` when the server lists its models, else nothing."""
        import openai  # noqa: PLC0415 - deferred, as in `client`

        try:
            names = [m.id for m in self.client.models.list().data]
        except openai.OpenAIError:
            return ""
        return f"; it serves: {', '.join(names)}" if names else ""

    def _scrub(self, text: str) -> str:
        """``text`` without the API key, should a server echo it."""
        key = self._key()
        return text.replace(key, "***") if key else text


def _message(error: Exception) -> str:
    """The server's own error message (OpenAI's ``{"error": {"message"}}``), on one line."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
        if message:
            return " ".join(str(message).split())
    return " ".join(str(error).split())


def _events(reply: Any, endpoint: str, stream: bool
            ) -> Generator[tuple[str, str | None, tuple[int, int] | None], None, None]:
    """(piece, finish reason, usage) from a chat or completions reply, streamed or not."""
    for chunk in (reply if stream else [reply]):
        usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens) if chunk.usage else None
        if not chunk.choices:  # the usage-only chunk that ends a stream
            yield "", None, usage
            continue
        choice = chunk.choices[0]
        if endpoint == "completions":
            piece = choice.text or ""
        else:
            piece = (choice.delta.content if stream else choice.message.content) or ""
        yield piece, choice.finish_reason, usage
