"""What the completions and chat routes share: a request's `GenerationConfig`, the context check,
the generation's record in the store, log-probabilities as the guard released them, and
server-sent events."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from fastapi.responses import StreamingResponse

from luoxia.generate.interface import GenerationConfig, GenerationResult
from luoxia.safety.guard import released_tokens
from luoxia.serve.deps import Caller, Offload
from luoxia.serve.errors import APIError, error_for
from luoxia.serve.metrics import Metrics
from luoxia.serve.models import ServedText
from luoxia.serve.schemas import SamplingRequest
from luoxia.serve.settings import ServeSettings
from luoxia.serve.store import ConversationTaken, Store
from luoxia.serve.streams import Job, run_choices

Chunk = Callable[[int, str, "str | None"], dict]  # (choice index, text, finish reason) → one SSE chunk
Receive = Callable[[], Awaitable[dict]]  # the request's ASGI ``receive`` (`Request.receive`), body already read


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def generation_config(max_tokens: int, body: SamplingRequest, settings: ServeSettings, extra_stops: Sequence[str] = (),
                      seed_offset: int = 0) -> GenerationConfig:
    """The request's sampling settings; choice ``seed_offset`` of ``n`` gets seed + offset."""
    if max_tokens > settings.max_tokens_limit:
        raise APIError(400, f"max_tokens is {max_tokens}; this server allows at most {settings.max_tokens_limit}",
                       param="max_tokens")
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if any(not s for s in stops) or len(stops) > 4:
        raise APIError(400, "stop: up to 4 non-empty strings", param="stop")
    seed = body.seed + seed_offset if body.seed is not None else None
    return GenerationConfig(max_new_tokens=max_tokens, temperature=body.temperature,
                            top_p=body.top_p if body.top_p < 1 else None, stop=[*extra_stops, *stops], seed=seed)


def check_context(served: ServedText, prompts: Sequence[str], max_tokens: int) -> int:
    """The prompts' tokens in all, each checked to fit the context with ``max_tokens``. CPU work on
    request data: run it through `Offload`."""
    total = 0
    for prompt in prompts:
        used = served.generator.count_tokens(prompt)
        if used + max_tokens > served.generator.context_length:
            raise APIError(400, f"this model's maximum context length is {served.generator.context_length} tokens; "
                                f"the prompt has {used} and max_tokens asks for {max_tokens}", param="max_tokens",
                           code="context_length_exceeded")
        total += used
    return total


def public_safety(safety: dict) -> dict:
    """A result's safety record as clients and the history see it: without the guard's ``edits``
    (offsets into text nobody else sees)."""
    return {k: v for k, v in safety.items() if k != "edits"}


def token_entries(served: ServedText, result: GenerationResult) -> list[tuple[str, float]]:
    """The result's tokens and log-probabilities as the guard released them (see
    `released_tokens`); none when they cannot be mapped onto the released text. CPU: offload it."""
    pieces, waiting = [], []
    for token_id in result.token_ids:  # a character split over tokens is decoded whole
        waiting.append(token_id)
        text = served.tokenizer.decode(waiting)
        if "\ufffd" not in text or len(waiting) >= 4:
            pieces.append((text, len(waiting)))
            waiting = []
    if waiting:
        pieces.append((served.tokenizer.decode(waiting), len(waiting)))
    tokens, logprobs, index = [], [], 0
    for text, count in pieces:
        if index + count > len(result.token_logprobs):
            break
        tokens.append(text)
        logprobs.append(sum(result.token_logprobs[index:index + count]))
        index += count
    return released_tokens(tokens, logprobs, result.text, result.safety.get("edits", [])) or []


def usage(results: Sequence[GenerationResult], prompt_tokens: int) -> dict:
    completion = sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


@dataclass
class Recording:
    """One request's generation in the store: written ``started`` before any text, finished after."""

    store: Store
    metrics: Metrics
    offload: Offload
    generation_id: str
    model: str
    started: float

    async def finish(self, status: str, results: Sequence[GenerationResult | None]) -> None:
        done = [r for r in results if r is not None]
        tokens = sum(r.completion_tokens for r in done)
        self.metrics.tokens.labels(self.model).inc(tokens)
        await self.offload(self._write, status, done, tokens, (time.perf_counter() - self.started) * 1000)

    def _write(self, status: str, done: list[GenerationResult], tokens: int, latency_ms: float) -> None:
        """In a worker thread: serialising the outputs is CPU work on request data."""
        self.store.finish_generation(self.generation_id, status, json.dumps([r.text for r in done], ensure_ascii=False),
                                     done[0].finish_reason if done else None,
                                     {"choices": [public_safety(r.safety) for r in done]},
                                     sum(r.prompt_tokens for r in done[:1]), tokens, latency_ms)


async def start_recording(store: Store, metrics: Metrics, offload: Offload, who: Caller, model: str,
                          endpoint: str, prompt: object, parameters: dict, conversation: str | None) -> Recording:
    """The request's record for ``model`` (a model's or an application's name); 403 when
    ``conversation`` is another key's."""
    try:
        generation_id = await offload(store.start_generation, who.key_id, endpoint, model, prompt, parameters,
                                      conversation)
    except ConversationTaken as error:
        raise APIError(403, str(error), "permission_error", param="X-Conversation-Id",
                       code="conversation_not_yours") from None
    return Recording(store, metrics, offload, generation_id, model, time.perf_counter())


async def collect_recorded(served: ServedText, jobs: Sequence[Job], offload: Offload, timeout: float,
                           recording: Recording, receive: Receive | None = None) -> list[GenerationResult]:
    """Every choice's result, recorded as complete (or as an error, then raised). A client that
    leaves (its disconnect arrives through ``receive``) cancels every choice, recorded as ``cancelled``."""
    results: list[GenerationResult | None] = [None] * len(jobs)
    status = "error"
    collecting = asyncio.ensure_future(_collect(served, jobs, offload, timeout, results))
    watching = asyncio.ensure_future(_watch(receive)) if receive is not None else None
    try:
        await asyncio.wait([t for t in (collecting, watching) if t is not None], return_when=asyncio.FIRST_COMPLETED)
        if not collecting.done():
            status = "cancelled"
            raise APIError(499, "the client closed the request", "client_closed_request")
        collecting.result()
        status = "complete"
    finally:
        for task in (collecting, watching):
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in (collecting, watching) if t is not None], return_exceptions=True)
        await asyncio.shield(recording.finish(status, results if status == "complete" else []))
    return results  # type: ignore[return-value]


async def _collect(served: ServedText, jobs: Sequence[Job], offload: Offload, timeout: float,
                   results: list[GenerationResult | None]) -> None:
    async with aclosing(run_choices(served, jobs, offload, timeout)) as batches:  # closing it cancels the choices
        async for batch in batches:
            for index, kind, payload in batch:
                if kind == "error":
                    raise error_for(payload)
                if kind == "done":
                    results[index] = payload


async def _watch(receive: Receive) -> None:
    """Returns once the client has gone. Waits on ``receive`` rather than polling
    `Request.is_disconnected`, which never sees the disconnect through Starlette's HTTP middleware."""
    while (await receive()).get("type") != "http.disconnect":
        await asyncio.sleep(0.1)  # a server that answers with something else must not make this spin


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def stream_response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def stream_events(served: ServedText, jobs: Sequence[Job], offload: Offload, timeout: float,
                        recording: Recording, chunk: Chunk) -> AsyncIterator[str]:
    """Server-sent events: ``chunk(index, text, finish_reason)`` per piece, then ``[DONE]``; the
    record is finished whatever happens (complete, error, or cancelled by a client that left)."""
    results: list[GenerationResult | None] = [None] * len(jobs)
    status, first = "cancelled", True
    try:
        async with aclosing(run_choices(served, jobs, offload, timeout)) as batches:
            async for batch in batches:
                events = []
                for index, kind, payload in _merge_text(batch):
                    if kind == "error":
                        error = error_for(payload)
                        yield "".join(events) + sse({"error": {"message": error.message, "type": error.type}})
                        status = "error"
                        return
                    if kind == "text":
                        if first:
                            recording.metrics.first_token.observe(time.perf_counter() - recording.started)
                            first = False
                        events.append(sse(chunk(index, payload, None)))
                    else:
                        results[index] = payload
                        events.append(sse(chunk(index, "", payload.finish_reason)))
                yield "".join(events)
        yield sse("[DONE]")
        status = "complete"
    finally:
        await asyncio.shield(recording.finish(status, results))


def _merge_text(batch: list[tuple[int, str, object]]) -> list[tuple[int, str, object]]:
    """Consecutive text events of the same choice as one."""
    merged: list[tuple[int, str, object]] = []
    for index, kind, payload in batch:
        if merged and kind == "text" and merged[-1][:2] == (index, "text"):
            merged[-1] = (index, "text", merged[-1][2] + payload)  # type: ignore[operator]
        else:
            merged.append((index, kind, payload))
    return merged
