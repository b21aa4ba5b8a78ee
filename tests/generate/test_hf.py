"""A local Hugging Face model behind the same TextGenerator: loading, greedy parity with
`transformers`, batching, cache, beam search, and the offline error for hub names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import luoxia
from luoxia.errors import CheckpointError
from luoxia.generate.hf import HFGenerator, load_hf_model
from luoxia.generate.interface import GenerationConfig
from tests.helpers import tiny_hf_model


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    return tiny_hf_model(tmp_path_factory.mktemp("hf") / "tiny-gpt2")


def test_load_accepts_a_hf_directory(hf_dir: Path):
    generator = luoxia.load(hf_dir, device="cpu")
    assert isinstance(generator, HFGenerator)
    assert generator.context_length == 32
    result = generator.generate("To be", GenerationConfig(max_new_tokens=10, temperature=0))[0]
    assert result.completion_tokens == 10 or result.finish_reason == "stop"


def test_greedy_equals_transformers_generate(hf_dir: Path):
    generator = luoxia.load(hf_dir, device="cpu")
    ids = generator.tokenizer.encode("Whether")
    reference = generator.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                         max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    ours = generator.generate("Whether", GenerationConfig(max_new_tokens=12, temperature=0))[0]
    assert ours.token_ids == reference[0, len(ids):].tolist()


def test_batched_left_padding_equals_one_by_one(hf_dir: Path):
    generator = luoxia.load(hf_dir, device="cpu")
    prompts = ["To", "The slings and", "Or to take arms"]
    config = GenerationConfig(max_new_tokens=8, temperature=0)
    batched = [r.token_ids for r in generator.generate(prompts, config)]
    single = [generator.generate(p, config)[0].token_ids for p in prompts]
    assert batched == single


def test_cache_and_no_cache_agree_past_the_context(hf_dir: Path):
    generator = luoxia.load(hf_dir, device="cpu")
    cached = generator.generate("No more", GenerationConfig(max_new_tokens=40, temperature=0))[0]
    uncached = generator.generate("No more", GenerationConfig(max_new_tokens=40, temperature=0, use_cache=False))[0]
    assert len(cached.token_ids) == 40  # ran past the 32-token context
    assert cached.token_ids[:25] == uncached.token_ids[:25]  # identical while the prompt and text fit


def sequence_logprob(model, prompt: list[int], completion: list[int]) -> float:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logprobs = model(ids).logits[0, :-1].log_softmax(-1)
    targets = ids[0, 1:]
    return logprobs[torch.arange(len(targets)), targets][len(prompt) - 1 :].sum().item()


def test_beam_search_and_stream(hf_dir: Path):
    generator = luoxia.load(hf_dir, device="cpu")
    prompt = generator.tokenizer.encode("And by")
    beam = generator.generate("And by", GenerationConfig(max_new_tokens=6, num_beams=4))[0]
    greedy = generator.generate("And by", GenerationConfig(max_new_tokens=6, temperature=0))[0]
    assert len(beam.token_ids) == len(greedy.token_ids) == 6
    assert sequence_logprob(generator.model, prompt, beam.token_ids) >= \
        sequence_logprob(generator.model, prompt, greedy.token_ids) - 1e-5
    config = GenerationConfig(max_new_tokens=15, temperature=0.9, seed=3)
    assert "".join(generator.stream("To be", config)) == generator.generate("To be", config)[0].text


def test_unknown_hub_name_says_it_is_not_local(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="never downloads"):
        load_hf_model("some-org/not-a-local-model")
    # `luoxia.load` takes paths: one that does not exist is a mistyped run, not a hub name to fetch
    with pytest.raises(CheckpointError, match="^no run at some-org/not-a-local-model; train one with") as error:
        luoxia.load("some-org/not-a-local-model")
    assert "hf download" not in str(error.value)
