"""From the batcher to the event loop: a request's choices as events, without a thread per stream.

The batcher's worker thread hands each event to the event loop (``loop.call_soon_threadsafe`` into
an `asyncio.Queue`), where the choice's coroutine reads it. The guard's checks cost CPU, so they
run in worker threads (`Offload`, sized by `ServeSettings.worker_threads`), and only when a
segment may be released (`OutputFilter.feed` says so): a choice holds a thread while it is being
checked, never while it waits. Each distinct prompt of a request is screened (and audited) once.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from contextlib import aclosing
from typing import Any

from luoxia.errors import LuoxiaError
from luoxia.generate.batching import ContinuousBatcher, RequestTimeout
from luoxia.generate.interface import GenerationConfig, GenerationResult, LogitsProcessor, TextGenerator
from luoxia.safety.guard import REFUSAL, GuardedGenerator
from luoxia.serve.deps import Offload
from luoxia.serve.models import ServedText

Event = tuple[int, str, Any]  # (choice index, "text" | "done" | "error", str | GenerationResult | Exception)
Job = tuple[str, GenerationConfig]  # one choice: its prompt and settings
Screen = Callable[[str], Awaitable[tuple[list[dict], GenerationResult | None]]]  # prompt → inputs, refusal


async def run_choices(served: ServedText, jobs: Sequence[Job], offload: Offload, timeout: float
                      ) -> AsyncIterator[list[Event]]:
    """Generate every job's choice at once; yield their events as they come, in lists of all that
    are waiting (under load, one write carries many). Leaving early (the client disconnected)
    cancels every choice, which cancels its batcher request."""
    events: asyncio.Queue[Event] = asyncio.Queue()
    screen = _screens(served.guarded, offload) if served.guarded is not None else None
    tasks = [asyncio.create_task(_choice(served, index, job, offload, timeout, events.put_nowait, screen))
             for index, job in enumerate(jobs)]
    remaining = len(jobs)
    try:
        while remaining:
            batch = [await events.get()]
            while not events.empty():
                batch.append(events.get_nowait())
            remaining -= sum(kind in ("done", "error") for _, kind, _ in batch)
            yield batch
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _screens(guarded: GuardedGenerator, offload: Offload) -> Screen:
    """A request's prompt screening: each distinct prompt moderated (and audited) once, however
    many choices share it; each choice gets its own copy of the outcome."""
    screened: dict[str, asyncio.Future] = {}

    async def screen(prompt: str) -> tuple[list[dict], GenerationResult | None]:
        if prompt not in screened:
            screened[prompt] = asyncio.ensure_future(offload(guarded.screen_prompt, prompt))
        return copy.deepcopy(await asyncio.shield(screened[prompt]))

    return screen


async def _choice(served: ServedText, index: int, job: Job, offload: Offload, timeout: float,
                  emit: Callable[[Event], None], screen: Screen | None) -> None:
    try:
        result = await _generate(served, job, offload, timeout, lambda text: emit((index, "text", text)), screen)
    except Exception as error:  # handed to the request's coroutine, which answers it
        emit((index, "error", error))
    else:
        emit((index, "done", result))


async def _generate(served: ServedText, job: Job, offload: Offload, timeout: float,
                    emit: Callable[[str], None], screen: Screen | None) -> GenerationResult:
    """One choice: its text emitted piece by piece, then its result."""
    if served.guarded is None or screen is None:
        return await _unguarded(served, job, offload, timeout, emit)
    return await _guarded(served, served.guarded, job, offload, timeout, emit, screen)


async def _unguarded(served: ServedText, job: Job, offload: Offload, timeout: float,
                     emit: Callable[[str], None]) -> GenerationResult:
    pieces = _pieces(served, served.generator, *job, (), offload, timeout)
    async with aclosing(pieces):
        async for piece in pieces:
            if isinstance(piece, GenerationResult):
                return piece
            if piece:
                emit(piece)
    raise LuoxiaError("generation ended without a result")


async def _guarded(served: ServedText, guarded: GuardedGenerator, job: Job, offload: Offload, timeout: float,
                   emit: Callable[[str], None], screen: Screen) -> GenerationResult:
    """Prompt screened, then text released segment by segment, each checked in a worker thread
    (what `GuardedGenerator.stream` does in one thread)."""
    prompt, config = job
    inputs, refusal = await screen(prompt)
    if refusal is not None:
        emit(REFUSAL)
        return refusal
    released, inner = guarded.output_filter(inputs), None
    pieces = _pieces(served, guarded.inner, prompt, config, guarded.processors(), offload, timeout)
    async with aclosing(pieces):  # leaving early (withheld) cancels the generation
        async for piece in pieces:
            if isinstance(piece, GenerationResult):
                inner = piece
                break
            if released.feed(piece):
                for text in await offload(released.release):
                    emit(text) if text else None
                if released.withheld:
                    break
    if not released.withheld:
        for text in await offload(released.finish):
            emit(text) if text else None
    return released.result(inner or GenerationResult("", [], "stop", await offload(guarded.prompt_tokens, prompt)))


def _pieces(served: ServedText, generator: TextGenerator, prompt: str, config: GenerationConfig,
            processors: Sequence[LogitsProcessor], offload: Offload, timeout: float
            ) -> AsyncIterator[str | GenerationResult]:
    """The model's text pieces, then its result: from the batcher when there is one, else from the
    generator's own stream stepped in worker threads (a model that cannot be batched)."""
    if served.batcher is not None:
        return _from_batcher(served.batcher, prompt, config, processors, offload, timeout)
    return _from_thread(generator.stream(prompt, config, processors), offload)


async def _from_batcher(batcher: ContinuousBatcher, prompt: str, config: GenerationConfig,
                        processors: Sequence[LogitsProcessor], offload: Offload, timeout: float
                        ) -> AsyncIterator[str | GenerationResult]:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def sink(kind: str, payload: Any) -> None:  # on the batcher's thread
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, (kind, payload))
        except RuntimeError:  # the event loop has closed: nobody is listening any more
            pass

    request = await offload(batcher.submit, prompt, config, sink, processors)  # tokenizes: CPU
    deadline = loop.time() + timeout
    try:
        while True:
            try:
                kind, payload = await asyncio.wait_for(inbox.get(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise RequestTimeout(f"no result within {timeout} s") from None
            if kind == "error":
                raise LuoxiaError(payload)
            yield payload
            if kind == "done":
                return
    finally:
        request.cancel()  # a no-op once it is done; otherwise the client has gone, timed out or was withheld


async def _from_thread(stream: Generator[str, None, GenerationResult], offload: Offload
                       ) -> AsyncIterator[str | GenerationResult]:
    """``stream`` stepped in worker threads; closed when left, once a step still running in its
    thread has returned (a generator cannot be closed while it runs)."""
    step: asyncio.Future | None = None
    try:
        while True:
            step = asyncio.ensure_future(offload(_step, stream))
            done, value = await asyncio.shield(step)
            yield value
            if done:
                return
    finally:
        if step is not None and not step.done():
            await asyncio.gather(step, return_exceptions=True)
        stream.close()


def _step(stream: Generator[str, None, GenerationResult]) -> tuple[bool, str | GenerationResult]:
    """One piece of ``stream``, or its result (a StopIteration cannot cross into a coroutine)."""
    try:
        return False, next(stream)
    except StopIteration as stop:
        return True, stop.value
