import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import luoxia
from luoxia.data.tokenizer import train_char_tokenizer
from luoxia.errors import CheckpointError
from luoxia.generate.interface import GenerationConfig, TextGenerator
from luoxia.generate.text import GPTGenerator
from tests.helpers import tiny_gpt


@pytest.fixture(scope="module")
def generator(trained_run: Path) -> GPTGenerator:
    return luoxia.load(trained_run, device="cpu")


def test_load_gives_a_text_generator(generator: GPTGenerator):
    assert isinstance(generator, TextGenerator)
    assert generator.context_length == 64
    assert generator.count_tokens("To be") == 5


def test_load_errors(tmp_path: Path):
    with pytest.raises(CheckpointError, match="not a Luoxia run directory"):
        luoxia.load(tmp_path)


def test_same_seed_same_text(generator: GPTGenerator):
    config = GenerationConfig(max_new_tokens=40, temperature=1.0, top_p=0.95, seed=11)
    first = generator.generate(["To be"], config)[0].text
    assert generator.generate(["To be"], config)[0].text == first
    others = {generator.generate(["To be"], config.model_copy(update={"seed": s}))[0].text for s in range(5)}
    assert len(others) > 1


def test_batched_prompts_equal_one_by_one(generator: GPTGenerator):
    config = GenerationConfig(max_new_tokens=25, temperature=0)
    prompts = ["To be, or", "The", "And by opposing end"]
    batched = [r.text for r in generator.generate(prompts, config)]
    alone = [generator.generate([p], config)[0].text for p in prompts]
    assert batched == alone


def test_cache_and_no_cache_agree(generator: GPTGenerator):
    config = GenerationConfig(max_new_tokens=30, temperature=0)
    cached = generator.generate(["Whether"], config)[0]
    uncached = generator.generate(["Whether"], config.model_copy(update={"use_cache": False}))[0]
    assert cached.token_ids == uncached.token_ids


def test_generation_runs_past_the_context(generator: GPTGenerator):
    no_eos = lambda ids, logits: logits.index_fill(1, torch.tensor([generator.tokenizer.eos_id]), float("-inf"))  # noqa: E731
    config = GenerationConfig(max_new_tokens=150, temperature=1.0, seed=0)
    result = generator.generate([""], config, [no_eos])[0]  # 150 tokens > the 64-token context: refills
    assert result.completion_tokens == 150 and result.finish_reason == "length"


def test_stop_strings_trim_and_finish(generator: GPTGenerator):
    greedy = GenerationConfig(max_new_tokens=60, temperature=0)
    full = generator.generate(["To be"], greedy)[0].text
    stop = full[10:13]
    result = generator.generate(["To be"], greedy.model_copy(update={"stop": [stop]}))[0]
    assert result.finish_reason == "stop"
    assert result.text == full[: full.find(stop)]
    assert stop not in result.text


def test_stream_equals_generate(generator: GPTGenerator):
    config = GenerationConfig(max_new_tokens=50, temperature=0.9, seed=3, stop=["ing"])
    pieces = list(generator.stream("The", config))
    assert len(pieces) > 1
    assert "".join(pieces) == generator.generate(["The"], config)[0].text


def test_logits_processor_is_applied(generator: GPTGenerator):
    banned = generator.tokenizer.encode("e")[0]

    def forbid(input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        assert input_ids.shape[0] == logits.shape[0]
        return logits.index_fill(1, torch.tensor([banned]), float("-inf"))

    result = generator.generate(["The"], GenerationConfig(max_new_tokens=80, temperature=1.0, seed=0), [forbid])[0]
    assert banned not in result.token_ids and "e" not in result.text


def test_repetition_penalty_changes_greedy_output(generator: GPTGenerator):
    plain = generator.generate(["To"], GenerationConfig(max_new_tokens=60, temperature=0))[0]
    penalised = generator.generate(["To"], GenerationConfig(max_new_tokens=60, temperature=0,
                                                            repetition_penalty=3.0))[0]
    assert len(set(penalised.token_ids)) > len(set(plain.token_ids))


def test_logprobs_are_recorded(generator: GPTGenerator):
    result = generator.generate(["To"], GenerationConfig(max_new_tokens=10, temperature=0))[0]
    assert len(result.token_logprobs) == 10 and all(lp <= 0 for lp in result.token_logprobs)


def sequence_logprob(model, prompt: list[int], continuation: tuple[int, ...]) -> float:
    ids = torch.tensor([prompt + list(continuation)])
    logits, _ = model(ids)
    logprobs = F.log_softmax(logits[0, len(prompt) - 1 : -1], dim=-1)
    return logprobs.gather(1, torch.tensor(continuation)[:, None]).sum().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_finds_the_best_sequence_exhaustively(seed: int):
    tokenizer = train_char_tokenizer(["abcd"])  # four tokens, no end-of-text
    model = tiny_gpt(seed=seed, vocab_size=4)
    generator = GPTGenerator(model, tokenizer)
    prompt = tokenizer.encode("ab")
    length = 3
    scores = {seq: sequence_logprob(model, prompt, seq) for seq in itertools.product(range(4), repeat=length)}
    best = max(scores, key=scores.get)
    result = generator.generate(["ab"], GenerationConfig(max_new_tokens=length, num_beams=16))[0]
    assert tuple(result.token_ids) == best
    greedy = generator.generate(["ab"], GenerationConfig(max_new_tokens=length, temperature=0))[0]
    assert scores[best] >= scores[tuple(greedy.token_ids)]


def test_collapse_repeats_is_applied(generator: GPTGenerator):
    config = GenerationConfig(max_new_tokens=80, temperature=0, collapse_repeats=3)
    text = generator.generate(["the the the"], config)[0].text
    words = text.split()
    assert all(a != b for a, b in zip(words, words[1:], strict=False))


@pytest.mark.slow
def test_compiled_decode_step_gives_the_same_tokens(trained_run):
    """The compiled step is an optimisation only: same greedy tokens, same sampled tokens per seed,
    also once the cache fills and is refilled (the text outgrows the 64-token context)."""
    eager, compiled = luoxia.load(trained_run, device="cpu"), luoxia.load(trained_run, device="cpu", compile=True)
    for config in (GenerationConfig(max_new_tokens=100, temperature=0),
                   GenerationConfig(max_new_tokens=40, temperature=0.9, top_k=8, seed=3)):
        prompts = ["To be", "Whether 'tis nobler"]
        assert [r.token_ids for r in compiled.generate(prompts, config)] == \
            [r.token_ids for r in eager.generate(prompts, config)]
