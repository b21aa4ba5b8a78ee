"""Continuous batching: one model step at a time for every active request, requests joining and
leaving between steps (the scheduling idea of Orca, Yu et al. 2022, and vLLM).

A worker thread owns the model. Each turn of its loop it admits waiting requests (reading each
prompt into its own KV cache, then joining it to the batch's), runs one decoding step for all
active sequences, samples each sequence's token with that request's own settings and seed, sends
each request its new text, and lets finished or cancelled requests leave. Luoxia's GPT joins and
leaves through `KVCache.join`/`reorder`, an LSTM/GRU through its fixed-size recurrent state
(`luoxia.generate.rnn`); any other `CausalLMGenerator` (a Hugging Face model) is served one
request at a time through the same loop. The loop itself is `luoxia.generate.decode`'s
`DecodeEngine`, which library generation runs too. A bounded queue refuses work beyond its size
(`QueueFull`), which a server turns into 503 + Retry-After.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from luoxia.errors import LuoxiaError
from luoxia.generate.decode import DecodeEngine, Row, row_seed
from luoxia.generate.interface import GenerationConfig, GenerationResult, LogitsProcessor
from luoxia.generate.text import CausalLMGenerator

# (kind, payload): ("text", new text) … then ("done", GenerationResult) or ("error", message)
EventSink = Callable[[str, Any], None]


class QueueFull(LuoxiaError):
    """More requests are waiting than the batcher accepts."""


@dataclass
class BatchRequest:
    """One submitted request: its engine row and where its text goes."""

    row: Row
    sink: EventSink
    emitted: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)

    def cancel(self) -> None:
        """Stop generating for this request (the client went away); it leaves before the next step."""
        self.cancelled.set()


class ContinuousBatcher:
    """Serves `submit`ted requests of one generator from a worker thread that drives the generator's
    `DecodeEngine` (the same engine `CausalLMGenerator.generate` runs, so a seeded request gives the
    same text here as there).

    ``max_batch`` sequences decode together (1 turns batching off: requests run one after the other
    through the same code); ``max_queue`` requests may wait beyond those. Requests decode with the
    KV cache whatever their ``use_cache``.
    """

    def __init__(self, generator: CausalLMGenerator, max_batch: int = 16, max_queue: int = 64):
        if not isinstance(generator, CausalLMGenerator):
            raise LuoxiaError(f"{type(generator).__name__} cannot be batched: it is not a CausalLMGenerator")
        self.generator = generator
        self.max_batch = min(max_batch, generator.max_rows or max_batch)
        self.engine = DecodeEngine(generator.batch_decoder(), generator.tokenizer, self.max_batch)
        self.waiting: queue.Queue[BatchRequest] = queue.Queue(maxsize=max_queue)
        self.active: list[BatchRequest] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"batcher-{generator.name}", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return self.waiting.qsize()

    @property
    def active_count(self) -> int:
        return len(self.active)

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.generator.prompt_ids(prompt)

    def submit(self, prompt: str | list[int], config: GenerationConfig, sink: EventSink,
               processors: Sequence[LogitsProcessor] = ()) -> BatchRequest:
        """Queue one row; its text arrives through ``sink``. ``config.seed`` seeds this row as it is
        (a caller with several rows gives row i ``row_seed(seed, i)``). Raises `QueueFull` when the
        queue is full and `LuoxiaError` when prompt plus ``max_new_tokens`` exceed the context."""
        row = self.generator.new_row(prompt, config, processors, config.seed)
        context, length = self.generator.context_length, len(row.prompt_ids)
        if length + config.max_new_tokens > context:
            raise LuoxiaError(f"this model's context is {context} tokens; the prompt has {length} and "
                              f"max_tokens asks for {config.max_new_tokens} more")
        request = BatchRequest(row, sink)
        try:
            self.waiting.put_nowait(request)
        except queue.Full:
            raise QueueFull(f"{self.waiting.maxsize} requests are already waiting") from None
        return request

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # The worker thread.

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._admit()
                if self.active:
                    self._step()
            except Exception as error:  # a bug or an out-of-memory: fail the requests, keep serving
                self._fail_all(f"generation failed: {type(error).__name__}")

    def _admit(self) -> None:
        block = not self.active
        while self.engine.has_room:
            try:
                request = self.waiting.get(timeout=0.05) if block else self.waiting.get_nowait()
            except queue.Empty:
                return
            block = False
            if request.cancelled.is_set():
                continue
            self.engine.add(request.row)
            self.active.append(request)

    def _step(self) -> None:
        cancelled = [r for r in self.active if r.cancelled.is_set()]
        if cancelled:
            self._leave(cancelled)
            if not self.active:
                return
        finished = self.engine.step()
        for request in self.active:
            self._emit_text(request)
        done = [r for r in self.active if any(r.row is row for row in finished)]
        self._leave(done)
        for request in done:  # after leaving, so a client that sees "done" sees it gone
            if not request.cancelled.is_set():
                request.sink("done", request.row.completion.result(self.generator.tokenizer, request.row.config))

    def _leave(self, requests: list[BatchRequest]) -> None:
        self.engine.remove([r.row for r in requests])
        self.active = [r for r in self.active if all(r is not x for x in requests)]

    def _emit_text(self, request: BatchRequest) -> None:
        text = request.row.completion.settled_text(self.generator.tokenizer, request.row.config)
        if len(text) > request.emitted:
            request.sink("text", text[request.emitted:])
            request.emitted = len(text)

    def _fail_all(self, message: str) -> None:
        for request in self.active:
            request.sink("error", message)
        self.active = []  # a fresh engine: the failed step may have left the old one half-updated
        self.engine = DecodeEngine(self.generator.batch_decoder(), self.generator.tokenizer, self.max_batch)


class BatchedGenerator:
    """A `TextGenerator` whose every request goes through a `ContinuousBatcher`: concurrent callers
    (a server's requests) share decoding steps. ``timeout`` bounds each request in seconds."""

    def __init__(self, batcher: ContinuousBatcher, timeout: float | None = None):
        self.batcher, self.timeout = batcher, timeout
        self.name, self.context_length = batcher.generator.name, batcher.generator.context_length

    def count_tokens(self, text: str) -> int:
        return self.batcher.generator.count_tokens(text)

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        return self.batcher.generator.render_chat(messages)

    def generate(self, prompts: str | Sequence[str], config: GenerationConfig | None = None,
                 logits_processors: Sequence[LogitsProcessor] = ()) -> list[GenerationResult]:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        config = config or GenerationConfig()
        streams = [self.stream(p, config.model_copy(update={"seed": row_seed(config.seed, i)}), logits_processors)
                   for i, p in enumerate(prompts)]  # row i seeded seed + i, as CausalLMGenerator.generate
        for stream in streams:  # submit all first, so that they decode together
            next(stream)
        return [_drain(stream) for stream in streams]

    def stream(self, prompt: str, config: GenerationConfig | None = None,
               logits_processors: Sequence[LogitsProcessor] = ()) -> Generator[str, None, GenerationResult]:
        """Text pieces as the batcher sends them (pieces that queued up while the caller was busy come
        as one); closing the generator cancels the request."""
        events: queue.Queue[tuple[str, Any]] = queue.Queue()  # (kind, payload), as above
        request = self.batcher.submit(prompt, config or GenerationConfig(),
                                      lambda kind, payload: events.put((kind, payload)), logits_processors)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            yield ""  # submitted: lets `generate` start every request before waiting on any
            while True:
                remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
                try:
                    kind, payload = events.get(timeout=remaining)
                except queue.Empty:
                    raise RequestTimeout(f"no result within {self.timeout} s") from None
                while kind == "text" and not events.empty():  # catch up in one piece
                    next_kind, next_payload = events.get_nowait()
                    if next_kind != "text":
                        yield payload
                        kind, payload = next_kind, next_payload
                        break
                    payload += next_payload
                if kind == "text":
                    yield payload
                elif kind == "done":
                    result: GenerationResult = payload
                    return result
                else:
                    raise LuoxiaError(payload)
        finally:
            request.cancel()  # a no-op once it is done; otherwise the client has gone or timed out


class RequestTimeout(LuoxiaError):
    """A request ran past its time limit."""


def _drain(stream: Generator[str, None, GenerationResult]) -> GenerationResult:
    while True:
        try:
            next(stream)
        except StopIteration as stop:
            result: GenerationResult = stop.value
            return result
