"""Lexically constrained decoding: the keyword boost (a stateless logits processor) and the
coverage-first beam search, on a tiny random character GPT."""

from __future__ import annotations

import pytest
import torch

from luoxia.data.tokenizer import train_char_tokenizer
from luoxia.errors import ConfigError
from luoxia.generate.batching import BatchedGenerator, ContinuousBatcher
from luoxia.generate.constraints import KeywordBeamGenerator, KeywordBoost, keyword_boost, partial_length
from luoxia.generate.interface import GenerationConfig
from luoxia.generate.text import GPTGenerator
from tests.helpers import TEXT, tiny_gpt

KEYWORDS = ["sea", "fortune"]


@pytest.fixture(scope="module")
def generator() -> GPTGenerator:
    tokenizer = train_char_tokenizer([TEXT], special_tokens=["<|endoftext|>"])
    return GPTGenerator(tiny_gpt(seed=3, vocab_size=tokenizer.vocab_size, block_size=64), tokenizer)


def test_the_boost_targets_first_tokens_then_the_next_token_of_a_partial_keyword():
    boost = KeywordBoost(((( 1, 2, 3),), ((7,), (8, 9))), start=2, bias=5.0)
    assert boost.next_tokens([1, 2]) == {1, 7, 8}  # the prompt's 1, 2 is not a started keyword
    assert boost.next_tokens([0, 0, 1, 2]) == {3, 7, 8}  # keyword 1 under way: only its next token
    assert boost.next_tokens([0, 0, 1, 2, 3, 8]) == {9}  # keyword 1 written; 8 started keyword 2
    assert boost.next_tokens([0, 0, 1, 2, 3, 7]) == set()  # both written: nothing boosted
    assert partial_length([5, 1, 2], (1, 2, 3)) == 2


def test_the_boost_keeps_the_shape_and_adds_the_bias_only_to_boosted_tokens():
    boost = KeywordBoost((((4,),),), start=0, bias=2.5)
    for logits in (torch.zeros(1, 10), torch.zeros(10)):  # (1, V) from the engine, (V,) from HF-style callers
        out = boost(torch.tensor([[1, 2]]), logits)
        assert out.shape == logits.shape and out.reshape(-1)[4] == 2.5 and out.sum() == 2.5


def test_a_keyword_the_tokenizer_cannot_spell_is_a_clear_error(generator: GPTGenerator):
    with pytest.raises(ConfigError, match="cannot spell"):
        keyword_boost(generator.tokenizer, ["月"], 0)


def coverage(texts: list[str]) -> float:
    return sum(all(k in t for k in KEYWORDS) for t in texts) / len(texts)


def test_boost_and_beam_make_keywords_appear_where_sampling_does_not(generator: GPTGenerator):
    config = GenerationConfig(max_new_tokens=40, temperature=1.0, seed=5)
    prompts = ["To be"] * 6
    plain = [r.text for r in generator.generate(prompts, config)]
    start = generator.count_tokens("To be")
    boost = keyword_boost(generator.tokenizer, KEYWORDS, start, bias=12.0)
    boosted = [r.text for r in generator.generate(prompts, config, [boost])]
    beams = KeywordBeamGenerator(generator, width=4).generate(prompts[:3], config, [boost])
    assert coverage(plain) == 0.0  # a random model does not write both words by chance
    assert coverage(boosted) == 1.0 and coverage([r.text for r in beams]) == 1.0
    assert len({r.text for r in beams}) == 3  # the copies of one prompt get the 3 best distinct beams
    assert all(r.token_ids for r in beams)  # never the empty text, whatever its score


def test_the_boost_gives_the_same_text_through_the_continuous_batcher(generator: GPTGenerator):
    config = GenerationConfig(max_new_tokens=30, temperature=1.0, seed=9)
    boost = keyword_boost(generator.tokenizer, KEYWORDS, generator.count_tokens("To be"), bias=6.0)
    expected = [r.text for r in generator.generate(["To be"] * 3, config, [boost])]
    batcher = ContinuousBatcher(generator, max_batch=4)
    try:
        served = [r.text for r in BatchedGenerator(batcher).generate(["To be"] * 3, config, [boost])]
    finally:
        batcher.close()
    assert served == expected  # the processor reads only the row's ids: bit-identical on both paths
