"""Continuous batching: the batcher's results against plain generation (the KV cache's join /
reorder / compact are tested in tests/models/test_kv_cache.py)."""

from __future__ import annotations

import queue
import threading

import pytest
import torch

from luoxia.data.tokenizer import train_char_tokenizer
from luoxia.errors import LuoxiaError
from luoxia.generate.batching import BatchedGenerator, ContinuousBatcher, QueueFull, RequestTimeout
from luoxia.generate.interface import GenerationConfig
from luoxia.generate.text import GPTGenerator
from tests.helpers import TEXT, tiny_gpt

PROMPTS = ["To be", "Whether 'tis nobler in the mind", "The", "And by opposing end them. To die"]


@pytest.fixture(scope="module")
def generator() -> GPTGenerator:
    tokenizer = train_char_tokenizer([TEXT], special_tokens=["<|endoftext|>"])
    return GPTGenerator(tiny_gpt(seed=2, vocab_size=tokenizer.vocab_size, block_size=64), tokenizer)


def test_batched_greedy_results_equal_plain_generation(generator: GPTGenerator):
    config = GenerationConfig(max_new_tokens=20, temperature=0)
    batcher = ContinuousBatcher(generator, max_batch=4)
    try:
        results = BatchedGenerator(batcher).generate(PROMPTS, config)
    finally:
        batcher.close()
    for prompt, result in zip(PROMPTS, results, strict=True):
        expected = generator.generate(prompt, config)[0]
        assert result.token_ids == expected.token_ids and result.text == expected.text


def test_seeded_sampling_does_not_depend_on_the_company(generator: GPTGenerator):
    config = GenerationConfig(max_new_tokens=15, temperature=1.0, seed=7)
    alone = ContinuousBatcher(generator, max_batch=1)
    crowd = ContinuousBatcher(generator, max_batch=8)
    try:
        expected = BatchedGenerator(alone).generate("To be", config)[0]
        others = [crowd.submit(p, GenerationConfig(max_new_tokens=30, seed=i), lambda *a: None)
                  for i, p in enumerate(PROMPTS)]
        assert BatchedGenerator(crowd).generate("To be", config)[0].token_ids == expected.token_ids
        assert all(not r.cancelled.is_set() for r in others)
    finally:
        alone.close(), crowd.close()


def test_stream_events_concatenate_to_the_result_and_cancel_stops(generator: GPTGenerator):
    batcher = ContinuousBatcher(generator, max_batch=2)
    events: queue.Queue = queue.Queue()
    try:
        batcher.submit("To be", GenerationConfig(max_new_tokens=25, temperature=0), lambda k, p: events.put((k, p)))
        pieces, result = [], None
        while result is None:
            kind, payload = events.get(timeout=30)
            pieces.append(payload) if kind == "text" else None
            result = payload if kind == "done" else None
        assert "".join(pieces) == result.text
        cancelled = batcher.submit("The", GenerationConfig(max_new_tokens=40), lambda k, p: events.put((k, p)))
        cancelled.cancel()
        BatchedGenerator(batcher, timeout=30).generate("To", GenerationConfig(max_new_tokens=3))
        assert batcher.active_count == 0
    finally:
        batcher.close()


def test_full_queue_and_oversized_requests_are_refused(generator: GPTGenerator):
    batcher = ContinuousBatcher(generator, max_batch=1, max_queue=1)
    try:
        with pytest.raises(LuoxiaError, match="context is 64 tokens"):
            batcher.submit("To be", GenerationConfig(max_new_tokens=100), lambda *a: None)
        batcher.submit("To", GenerationConfig(max_new_tokens=60, temperature=0), lambda *a: None)
        with pytest.raises(QueueFull):
            for _ in range(3):  # the first may already have moved from the queue to the batch
                batcher.submit("To", GenerationConfig(max_new_tokens=60), lambda *a: None)
    finally:
        batcher.close()


def test_closing_a_stream_cancels_and_a_timeout_is_an_error(generator: GPTGenerator):
    batcher = ContinuousBatcher(generator, max_batch=2)
    try:
        stream = BatchedGenerator(batcher).stream("To be", GenerationConfig(max_new_tokens=40))
        next(stream), next(stream)
        stream.close()  # the client disconnected
        BatchedGenerator(batcher).generate("To", GenerationConfig(max_new_tokens=2))
        assert batcher.active_count == 0
        # The row cannot finish before the caller looks (it could, by sampling end-of-text early while
        # the test thread waits for a core): its logits processor holds the worker until the timeout.
        gate = threading.Event()
        held = lambda ids, logits: (gate.wait(10), logits)[1]  # noqa: E731
        with pytest.raises(RequestTimeout):
            BatchedGenerator(batcher, timeout=0).generate("To", GenerationConfig(max_new_tokens=40), [held])
        gate.set()
    finally:
        batcher.close()


def test_a_row_running_past_the_context_refills_without_changing_its_neighbours(generator: GPTGenerator):
    """Row 0 fills the 64-token cache and re-reads its last half-context alone; row 1, shorter, keeps
    stepping. Each row's tokens equal those it gets decoding alone."""
    no_eos = lambda ids, logits: logits.index_fill(1, torch.tensor([generator.tokenizer.eos_id]), float("-inf"))  # noqa: E731
    config = GenerationConfig(max_new_tokens=50, temperature=0.8, seed=5)
    prompts = [PROMPTS[3] * 2, PROMPTS[0]]  # 64 tokens of prompt: full from the first step
    together = generator.generate(prompts, config, [no_eos])
    for i, (prompt, result) in enumerate(zip(prompts, together, strict=True)):
        alone = generator.generate([prompt], config.model_copy(update={"seed": config.seed + i}), [no_eos])[0]
        assert result.token_ids == alone.token_ids and result.completion_tokens == 50
