"""Continuous batching: one model step at a time for every active request, requests joining and
leaving between steps (the scheduling idea of Orca, Yu et al. 2022, and vLLM).

A worker thread owns the model. Each turn of its loop it admits waiting requests (reading each
prompt into its own KV cache, then joining it to the batch's), runs one decoding step for all
active sequences, samples each sequence's token with that request's own settings and seed, sends
each request its new text, and lets finished or cancelled requests leave. Luoxia's GPT joins and
leaves through `KVCache.join`/`reorder`; any other `CausalLMGenerator` (a Hugging Face model) is
served one request at a time through the same loop. A bounded queue refuses work beyond its size
(`QueueFull`), which a server turns into 503 + Retry-After.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from luoxia.errors import LuoxiaError
from luoxia.generate.interface import GenerationConfig, GenerationResult, LogitsProcessor
from luoxia.generate.sampling import apply_repetition_penalty, presence_mask, sample_rows
from luoxia.generate.text import CausalLMGenerator, Completion, GPTGenerator
from luoxia.models.gpt import GPT
from luoxia.models.kv_cache import KVCache

# (kind, payload): ("text", new text) … then ("done", GenerationResult) or ("error", message)
EventSink = Callable[[str, Any], None]


class QueueFull(LuoxiaError):
    """More requests are waiting than the batcher accepts."""


class GPTBatchDecoder:
    """Luoxia GPT sequences over one shared KV cache that rows join and leave between steps."""

    def __init__(self, model: GPT):
        self.model = model
        self.device = model.lm_head.weight.device
        self.cache: KVCache | None = None
        self.histories: list[list[int]] = []
        self.logits = torch.empty(0, model.config.vocab_size)

    @torch.no_grad()
    def add(self, ids: list[int]) -> None:
        """Read a prompt into a cache of its own, then join the batch as its last row."""
        own = self.model.new_cache(1)
        logits, _ = self.model(torch.tensor([ids], device=self.device), cache=own, last_only=True)
        if self.cache is None:
            self.cache = own
        else:
            self.cache.join(own)
        self.histories.append(list(ids))
        self.logits = torch.cat([self.logits.to(logits.device), logits[:, -1].float()])

    def remove(self, rows: Sequence[int]) -> None:
        keep = [i for i in range(len(self.histories)) if i not in set(rows)]
        self.histories = [self.histories[i] for i in keep]
        self.logits = self.logits[keep]
        if not keep:
            self.cache = None
        elif len(keep) < self.cache.seen.numel():
            self.cache.reorder(torch.tensor(keep, device=self.device))

    @torch.no_grad()
    def push(self, next_ids: torch.Tensor) -> torch.Tensor:
        for history, token in zip(self.histories, next_ids.tolist()):
            history.append(token)
        if self.cache.length >= self.cache.max_len:
            self.cache.compact()
        logits, _ = self.model(next_ids[:, None].to(self.device), cache=self.cache, last_only=True)
        self.logits = logits[:, -1].float()
        return self.logits


class SingleDecoder:
    """Any `CausalLMGenerator`'s own decoder, for one sequence at a time (no joining)."""

    def __init__(self, generator: CausalLMGenerator):
        self.generator = generator
        self.decoder = None
        self.histories: list[list[int]] = []
        self.logits = torch.empty(0)

    def add(self, ids: list[int]) -> None:
        if self.decoder is not None:
            raise RuntimeError("this model decodes one sequence at a time")
        self.decoder = self.generator.start_decoder([ids], True)
        self.histories, self.logits = self.decoder.histories, self.decoder.logits

    def remove(self, rows: Sequence[int]) -> None:
        if rows:
            self.decoder, self.histories, self.logits = None, [], torch.empty(0)

    def push(self, next_ids: torch.Tensor) -> torch.Tensor:
        self.logits = self.decoder.push(next_ids)
        return self.logits


@dataclass
class BatchRequest:
    """One submitted request and its progress."""

    prompt_ids: list[int]
    config: GenerationConfig
    processors: list[LogitsProcessor]
    sink: EventSink
    completion: Completion
    generator: torch.Generator | None
    emitted: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)

    def cancel(self) -> None:
        """Stop generating for this request (the client went away); it leaves at the next step."""
        self.cancelled.set()


class ContinuousBatcher:
    """Serves `submit`ted requests of one generator from a worker thread.

    ``max_batch`` sequences decode together (1 turns batching off: requests run one after the other
    through the same code); ``max_queue`` requests may wait beyond those.
    """

    def __init__(self, generator: CausalLMGenerator, max_batch: int = 16, max_queue: int = 64):
        if not isinstance(generator, CausalLMGenerator):
            raise LuoxiaError(f"{type(generator).__name__} cannot be batched: it is not a CausalLMGenerator")
        self.generator = generator
        joinable = isinstance(generator, GPTGenerator)
        self.max_batch = max_batch if joinable else 1
        self.decoder = GPTBatchDecoder(generator.model) if joinable else SingleDecoder(generator)
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
        """Queue a request; its text arrives through ``sink``. Raises `QueueFull` when the queue is
        full and `LuoxiaError` when prompt plus ``max_new_tokens`` exceed the model's context."""
        ids = self.prompt_ids(prompt) if isinstance(prompt, str) else list(prompt)
        context = self.generator.context_length
        if len(ids) + config.max_new_tokens > context:
            raise LuoxiaError(f"this model's context is {context} tokens; the prompt has {len(ids)} and "
                              f"max_tokens asks for {config.max_new_tokens} more")
        seeded = torch.Generator(self.generator.device).manual_seed(config.seed) if config.seed is not None else None
        request = BatchRequest(ids, config, list(processors), sink, Completion(len(ids)), seeded)
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
        while len(self.active) < self.max_batch:
            try:
                request = self.waiting.get(timeout=0.05) if block else self.waiting.get_nowait()
            except queue.Empty:
                return
            block = False
            if request.cancelled.is_set():
                continue
            self.decoder.add(request.prompt_ids)
            self.active.append(request)

    def _step(self) -> None:
        logits = self._adjusted_logits()
        tokens = sample_rows(logits, *self._sampling_settings(logits))
        logprobs = F.log_softmax(logits, dim=-1).gather(1, tokens[:, None]).squeeze(1).tolist()
        next_ids = tokens.tolist()
        for request, token, logprob in zip(self.active, next_ids, logprobs):
            request.completion.append(token, logprob, self.generator.tokenizer, request.config)
            self._emit_text(request)
        leaving = {row for row, r in enumerate(self.active) if r.completion.finished or r.cancelled.is_set()}
        if leaving:
            finished = [self.active[row] for row in sorted(leaving)]
            self.decoder.remove(sorted(leaving))
            self.active = [r for row, r in enumerate(self.active) if row not in leaving]
            next_ids = [t for row, t in enumerate(next_ids) if row not in leaving]
            for request in finished:  # after leaving, so a client that sees "done" sees it gone
                if not request.cancelled.is_set():
                    request.sink("done", request.completion.result(self.generator.tokenizer, request.config))
        if self.active:
            self.decoder.push(torch.tensor(next_ids, device=self.generator.device))

    def _adjusted_logits(self) -> torch.Tensor:
        """The batch's logits after each request's repetition penalty and logits processors (the
        rows without any are left as they are)."""
        logits = self.decoder.logits
        rows = [row for row, r in enumerate(self.active) if r.config.repetition_penalty != 1.0 or r.processors]
        if not rows:
            return logits
        logits = logits.clone()
        for row in rows:
            request = self.active[row]
            ids = torch.tensor([self.decoder.histories[row]], device=logits.device)
            adjusted = logits[row : row + 1]
            if request.config.repetition_penalty != 1.0:
                present = presence_mask(ids, torch.ones_like(ids, dtype=torch.bool), logits.size(-1))
                adjusted = apply_repetition_penalty(adjusted, present, request.config.repetition_penalty)
            for processor in request.processors:
                adjusted = processor(ids, adjusted)
            logits[row] = adjusted[0]
        return logits

    def _sampling_settings(self, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-row temperature, top-k, top-p and one uniform draw from each request's generator."""
        configs = [r.config for r in self.active]
        vocab, device = logits.size(-1), logits.device
        temperature = torch.tensor([c.temperature for c in configs], device=device)
        top_k = torch.tensor([c.top_k or vocab for c in configs], device=device)
        top_p = torch.tensor([c.top_p or 1.0 for c in configs], device=device)
        uniform = torch.cat([torch.rand(1, generator=r.generator, device=device) for r in self.active])
        return temperature, top_k, top_p, uniform

    def _emit_text(self, request: BatchRequest) -> None:
        text = request.completion.settled_text(self.generator.tokenizer, request.config)
        if len(text) > request.emitted:
            request.sink("text", text[request.emitted:])
            request.emitted = len(text)

    def _fail_all(self, message: str) -> None:
        for request in self.active:
            request.sink("error", message)
        self.decoder.remove(list(range(len(self.active))))
        self.active = []


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
        streams = [self.stream(p, config, logits_processors) for p in prompts]
        for stream in streams:  # submit all first, so that they decode together
            next(stream)
        return [_drain(stream) for stream in streams]

    def stream(self, prompt: str, config: GenerationConfig | None = None,
               logits_processors: Sequence[LogitsProcessor] = ()) -> Generator[str, None, GenerationResult]:
        """Text pieces as the batcher sends them (pieces that queued up while the caller was busy come
        as one); closing the generator cancels the request."""
        events: queue.Queue = queue.Queue()
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
                    return payload
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
            return stop.value
