"""Streams from a batcher to the event loop: no thread waits for a stream, the guard checks each
segment as `GuardedGenerator.stream` does, leaving early (or a client that leaves a non-streaming
request) cancels, a silent batcher times out."""

from __future__ import annotations

import asyncio
import threading
from contextlib import aclosing
from pathlib import Path

import pytest
from anyio import CapacityLimiter

from luoxia.generate.batching import RequestTimeout
from luoxia.generate.interface import GenerationConfig, GenerationResult
from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import WITHHELD, Guard, GuardedGenerator, GuardPolicy
from luoxia.safety.moderation import Moderator
from luoxia.safety.watermark import parse_key
from luoxia.serve.deps import Offload
from luoxia.serve.errors import APIError
from luoxia.serve.generation import collect_recorded
from luoxia.serve.models import ServedText
from luoxia.serve.streams import run_choices
from tests.safety.test_guard import ScriptedGenerator

KEY = parse_key("00112233445566778899aabbccddeeff", "test")


class Request:
    def __init__(self):
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


class HeldBatcher:
    """Answers no request until ``count`` are submitted, then each from its own thread (as the
    batcher's worker does) in 3-character pieces. ``count`` None: never answers."""

    def __init__(self, count: int | None, output: str = ""):
        self.count, self.output, self.submitted = count, output, []

    def submit(self, prompt: str, config: GenerationConfig, sink, processors=()) -> Request:
        request = Request()
        self.submitted.append((prompt, sink, request))
        if len(self.submitted) == self.count:
            for prompt, sink, request in self.submitted:
                threading.Thread(target=self._answer, args=(prompt, sink, request)).start()
        return request

    def _answer(self, prompt: str, sink, request: Request) -> None:
        text = self.output or prompt.upper()
        for i in range(0, len(text), 3):
            if request.cancelled.is_set():
                return
            sink("text", text[i:i + 3])
        sink("done", GenerationResult(text, [1] * len(text), "length", len(prompt)))


def served(batcher: HeldBatcher, guarded: GuardedGenerator | None = None) -> ServedText:
    return ServedText("held", guarded or ScriptedGenerator(""), None, batcher, guarded)  # type: ignore[arg-type]


async def events_of(text: ServedText, prompts: list[str], offload: Offload, timeout: float = 10.0) -> list:
    jobs = [(p, GenerationConfig()) for p in prompts]
    async with aclosing(run_choices(text, jobs, offload, timeout)) as batches:
        return [event async for batch in batches for event in batch]


def texts_and_results(events: list, count: int) -> tuple[list[str], list]:
    texts, results = [""] * count, [None] * count
    for index, kind, payload in events:
        assert kind != "error", payload
        if kind == "text":
            texts[index] += payload
        else:
            results[index] = payload
    return texts, results


def test_streams_hold_no_thread_while_they_wait():
    """One worker thread for eight streams that are answered only once all eight are submitted: a
    design that parks a thread per waiting stream would never submit the second."""
    prompts = [f"p{i}" for i in range(8)]

    async def run() -> list:
        return await asyncio.wait_for(events_of(served(HeldBatcher(8)), prompts, Offload(CapacityLimiter(1))), 30)

    texts, results = texts_and_results(asyncio.run(run()), 8)
    assert texts == [p.upper() for p in prompts] and [r.text for r in results] == texts


@pytest.fixture
def guard(tmp_path: Path) -> Guard:
    return Guard(GuardPolicy(pii="allow"), Moderator(classifier=None), AuditStore(tmp_path), KEY)


def without_audit_ids(safety: dict) -> dict:
    return {**safety, "decisions": [{k: v for k, v in d.items() if k != "audit_id"} for d in safety["decisions"]]}


def test_guarded_stream_releases_what_the_threaded_guard_releases(guard: Guard):
    output = "Hello there. I will kill you. Then more."
    threaded = GuardedGenerator(ScriptedGenerator(output), guard).stream("hi")
    pieces = []
    while True:
        try:
            pieces.append(next(threaded))
        except StopIteration as stop:
            expected = stop.value
            break
    batcher = HeldBatcher(1, output)
    guarded = GuardedGenerator(ScriptedGenerator(output), guard)
    texts, (result,) = texts_and_results(asyncio.run(events_of(served(batcher, guarded), ["hi"],
                                                                Offload(CapacityLimiter(2)))), 1)
    assert texts == ["".join(pieces)] and WITHHELD in texts[0] and "More" not in texts[0]
    assert (result.text, result.finish_reason) == (expected.text, "content_filter")
    assert without_audit_ids(result.safety) == without_audit_ids(expected.safety)  # each run writes its own event
    assert batcher.submitted[0][2].cancelled.is_set()  # withheld: the generation stops


def test_leaving_early_cancels_and_a_silent_batcher_times_out():
    batcher = HeldBatcher(None)

    async def leave_early() -> None:
        jobs = [("a", GenerationConfig()), ("b", GenerationConfig())]
        async with aclosing(run_choices(served(batcher), jobs, Offload(CapacityLimiter(2)), 60)) as batches:
            await asyncio.wait_for(anext(batches), 0.5)

    with pytest.raises(TimeoutError):
        asyncio.run(leave_early())
    assert len(batcher.submitted) == 2 and all(r.cancelled.is_set() for _, _, r in batcher.submitted)

    events = asyncio.run(events_of(served(HeldBatcher(None)), ["a"], Offload(CapacityLimiter(1)), timeout=0.2))
    assert [(kind, type(payload)) for _, kind, payload in events] == [("error", RequestTimeout)]


def test_a_model_without_a_batcher_streams_from_worker_threads():
    text = ServedText("plain", ScriptedGenerator("Plain text."), None)  # type: ignore[arg-type]
    texts, (result,) = texts_and_results(asyncio.run(events_of(text, ["hi"], Offload(CapacityLimiter(1)))), 1)
    assert texts == ["Plain text."] and (result.text, result.finish_reason) == ("Plain text.", "length")


class Recorded:
    """A stand-in for `Recording`: notes how the generation was finished."""

    def __init__(self):
        self.finished: list[str] = []

    async def finish(self, status: str, results) -> None:
        self.finished.append(status)


def test_a_non_streaming_request_whose_client_left_cancels_its_batcher_requests():
    batcher, recording = HeldBatcher(None), Recorded()  # never answers: only the disconnect can end it

    async def receive() -> dict:
        while len(batcher.submitted) < 2:
            await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    async def run() -> None:
        jobs = [("a", GenerationConfig()), ("b", GenerationConfig())]
        await asyncio.wait_for(collect_recorded(served(batcher), jobs, Offload(CapacityLimiter(2)), 60,
                                                recording, receive), 30)  # type: ignore[arg-type]

    with pytest.raises(APIError) as error:
        asyncio.run(run())
    assert error.value.status == 499 and recording.finished == ["cancelled"]
    assert all(request.cancelled.is_set() for _, _, request in batcher.submitted)
