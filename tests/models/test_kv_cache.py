"""The KV cache's continuous-batching operations: sequences join (right-aligned), leave or are
re-ranked (reorder), and unused leading slots are dropped (compact) — and the next logits of every
row stay those of the row read alone."""

from __future__ import annotations

import pytest
import torch

from luoxia.models.gpt import GPT
from luoxia.models.kv_cache import KVCache
from tests.helpers import tiny_gpt


@pytest.fixture(scope="module")
def model() -> GPT:
    return tiny_gpt(seed=2, block_size=64)


def next_logits_alone(model: GPT, ids: list[int]) -> torch.Tensor:
    return model(torch.tensor([ids]), last_only=True)[0][0, -1]  # (V,)


def test_new_cache_has_one_buffer_per_layer_of_the_model_shape(model: GPT):
    cache = model.new_cache(3, max_len=20)
    assert isinstance(cache, KVCache) and len(cache.k) == len(cache.v) == model.config.n_layer
    assert cache.k[0].shape == (3, model.config.n_head, 20, model.config.head_size) and cache.max_len == 20


def test_joined_cache_gives_the_same_logits_as_reading_each_sequence_alone(model: GPT):
    first, second = [[3, 4, 5, 6, 7], [8, 9]]
    batch = model.new_cache(1)
    model(torch.tensor([first]), cache=batch)
    own = model.new_cache(1)
    model(torch.tensor([second]), cache=own)
    batch.join(own)
    logits, _ = model(torch.tensor([[10], [11]]), cache=batch, last_only=True)
    for row, ids in enumerate((first + [10], second + [11])):
        # masked padding slots change the reduction's length, not its value: equal to float32 rounding
        torch.testing.assert_close(logits[row, -1], next_logits_alone(model, ids), atol=1e-5, rtol=1e-5)


def test_a_longer_newcomer_shifts_the_batch_and_compaction_frees_slots(model: GPT):
    batch = model.new_cache(1)
    model(torch.tensor([[1, 2]]), cache=batch)
    own = model.new_cache(1)
    model(torch.tensor([[3, 4, 5, 6, 7, 8]]), cache=own)
    batch.join(own)
    assert batch.length == 6 and batch.key_valid.sum(1).tolist() == [2, 6]
    batch.reorder(torch.tensor([0]))  # the long one leaves
    batch.compact()
    assert batch.length == 2
    logits, _ = model(torch.tensor([[9]]), cache=batch, last_only=True)
    torch.testing.assert_close(logits[0, -1], next_logits_alone(model, [1, 2, 9]), atol=1e-5, rtol=1e-5)


def test_reorder_keeps_and_permutes_rows(model: GPT):
    prompts = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    cache = model.new_cache(3)
    model(prompts, cache=cache)
    cache.reorder(torch.tensor([2, 0]))  # row 1 leaves, rows 2 and 0 swap places
    assert cache.seen.tolist() == [3, 3] and cache.k[0].size(0) == 2
    logits, _ = model(torch.tensor([[10], [11]]), cache=cache, last_only=True)
    torch.testing.assert_close(logits[0, -1], next_logits_alone(model, [7, 8, 9, 10]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1, -1], next_logits_alone(model, [1, 2, 3, 11]), atol=1e-5, rtol=1e-5)


def test_caches_of_different_sizes_do_not_join(model: GPT):
    with pytest.raises(ValueError, match="cannot be joined"):
        model.new_cache(1, max_len=16).join(model.new_cache(1, max_len=32))
