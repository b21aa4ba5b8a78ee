import pytest
import torch

from luoxia.generate.decode import adjust_logits, row_generator, sample_step
from luoxia.generate.interface import GenerationConfig
from luoxia.generate.sampling import (
    apply_repetition_penalty,
    apply_temperature,
    presence_mask,
    sample_rows,
    top_k_filter,
    top_p_filter,
)


def draw(logits: torch.Tensor, config: GenerationConfig, seeds: list[int]) -> torch.Tensor:
    """One step of the one sampler: every row with ``config`` and its own generator."""
    tokens, _ = sample_step(logits, [config] * len(seeds), [row_generator(s, "cpu") for s in seeds])
    return tokens


@pytest.fixture
def logits() -> torch.Tensor:
    return torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 3


@pytest.mark.parametrize("k", [1, 5, 17, 50])
def test_top_k_keeps_exactly_k(logits: torch.Tensor, k: int):
    filtered = top_k_filter(logits, k)
    assert (torch.isfinite(filtered).sum(dim=-1) == k).all()
    kept = torch.isfinite(filtered)
    # every kept logit is at least as large as every dropped one
    lowest_kept = logits.masked_fill(~kept, float("inf")).min(-1).values
    assert (lowest_kept >= logits.masked_fill(kept, float("-inf")).max(-1).values).all()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.99])
def test_top_p_keeps_the_smallest_set_reaching_p(logits: torch.Tensor, p: float):
    probs = logits.softmax(-1)
    kept = torch.isfinite(top_p_filter(logits, p))
    mass = (probs * kept).sum(-1)
    assert (mass >= p - 1e-6).all()
    # dropping the least likely kept token would fall below p: the set is minimal
    smallest_kept = probs.masked_fill(~kept, float("inf")).min(-1).values
    assert (mass - smallest_kept < p + 1e-6).all()


def test_top_p_always_keeps_the_most_likely_token():
    logits = torch.tensor([[10.0, 0.0, 0.0]])
    assert torch.isfinite(top_p_filter(logits, 0.01)).tolist() == [[True, False, False]]


def test_transforms_are_pure(logits: torch.Tensor):
    original = logits.clone()
    top_k_filter(logits, 3), top_p_filter(logits, 0.5), apply_temperature(logits, 0.5)
    apply_repetition_penalty(logits, torch.ones_like(logits, dtype=torch.bool), 1.3)
    assert torch.equal(logits, original)


def test_temperature_towards_zero_equals_greedy(logits: torch.Tensor):
    greedy = draw(logits, GenerationConfig(temperature=0), [0, 1, 2, 3])
    assert torch.equal(greedy, logits.argmax(-1))
    for seed in range(20):
        assert torch.equal(draw(logits, GenerationConfig(temperature=1e-4), [seed] * 4), greedy)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(logits, 0)


def test_same_seed_same_draws(logits: torch.Tensor):
    config = GenerationConfig(temperature=1.0, top_k=10)
    assert torch.equal(draw(logits, config, [7] * 4), draw(logits, config, [7] * 4))
    assert any(not torch.equal(draw(logits, config, [7] * 4), draw(logits, config, [s] * 4)) for s in range(8, 14))


def test_samples_follow_the_filtered_support(logits: torch.Tensor):
    allowed = torch.isfinite(top_k_filter(logits, 3))
    for seed in range(50):
        ids = draw(logits, GenerationConfig(temperature=1.5, top_k=3), [seed, seed + 100, seed + 200, seed + 300])
        assert allowed.gather(1, ids[:, None]).all()


def test_top_p_samples_stay_in_the_nucleus(logits: torch.Tensor):
    allowed = torch.isfinite(top_p_filter(logits, 0.5))
    for seed in range(50):
        ids = draw(logits, GenerationConfig(temperature=1.0, top_p=0.5), [seed, seed + 100, seed + 200, seed + 300])
        assert allowed.gather(1, ids[:, None]).all()


def test_a_row_does_not_depend_on_its_neighbours(logits: torch.Tensor):
    """Row 0's draws are the same alone and beside rows with other settings, logits and seeds."""
    mine = GenerationConfig(temperature=0.9, top_k=20, top_p=0.9)
    others = [GenerationConfig(temperature=0), GenerationConfig(temperature=2.0), GenerationConfig(top_p=0.2)]
    alone, crowd = row_generator(5, "cpu"), row_generator(5, "cpu")
    neighbours = [row_generator(s, "cpu") for s in (1, 2, 3)]
    for _ in range(30):
        tokens_alone, logprob_alone = sample_step(logits[:1], [mine], [alone])
        tokens_crowd, logprob_crowd = sample_step(logits, [mine, *others], [crowd, *neighbours])
        assert tokens_alone[0] == tokens_crowd[0]
        # same row, same kernels, but a different batch size: allow rounding
        torch.testing.assert_close(logprob_alone[0], logprob_crowd[0], rtol=1e-6, atol=1e-6)


def test_logprobs_are_those_of_the_adjusted_logits(logits: torch.Tensor):
    tokens, logprobs = sample_step(logits, [GenerationConfig(temperature=0)] * 4, [row_generator(0, "cpu")] * 4)
    expected = torch.log_softmax(logits, -1).gather(1, tokens[:, None]).squeeze(1)
    torch.testing.assert_close(logprobs, expected)  # same computation: default tolerances


def test_adjust_logits_touches_only_rows_that_ask(logits: torch.Tensor):
    histories = [[1, 2], [3], [4, 5, 6], [7]]
    boost = lambda ids, row: row + 100.0 * (torch.arange(row.size(-1)) == ids[0, -1])  # noqa: E731
    adjusted = adjust_logits(logits, histories, [1.0, 1.5, 1.0, 1.0], [[], [], [boost], []])
    assert torch.equal(adjusted[0], logits[0]) and torch.equal(adjusted[3], logits[3])
    assert adjusted[1, 3] < logits[1, 3] or logits[1, 3] == 0  # penalised: token 3 is in row 1's history
    assert adjusted[2, 6] == logits[2, 6] + 100.0  # the processor saw row 2's own history only


def test_repetition_penalty_lowers_present_tokens():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    present = torch.tensor([[True, True, False]])
    penalised = apply_repetition_penalty(logits, present, 2.0)
    assert penalised.tolist() == [[1.0, -2.0, 0.5]]


def test_presence_mask_ignores_padding():
    ids = torch.tensor([[0, 0, 3], [1, 2, 2]])
    valid = torch.tensor([[False, False, True], [True, True, True]])
    mask = presence_mask(ids, valid, 5)
    assert mask.tolist() == [[False, False, False, True, False], [False, True, True, False, False]]


def test_sample_rows_gives_each_row_its_own_settings():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]] * 4))
    temperature = torch.tensor([0.0, 1.0, 1.0, 1.0])
    top_k = torch.tensor([4, 1, 4, 4])
    top_p = torch.tensor([1.0, 1.0, 1.0, 0.35])
    uniform = torch.tensor([0.99, 0.99, 0.05, 0.99])
    tokens = sample_rows(logits, temperature, top_k, top_p, uniform)
    # greedy; top-1; the draw 0.05 falls in the most likely token's 0.4 (sorted first); the nucleus
    # of mass 0.35 is the most likely token alone
    assert tokens.tolist() == [3, 3, 3, 3]
    uniform = torch.tensor([0.0, 0.0, 0.95, 0.0])
    assert sample_rows(logits, temperature, top_k, top_p, uniform)[2].item() == 0  # the tail of the CDF


def test_sample_rows_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]])).expand(20_000, 4)
    ones = torch.ones(20_000)
    draws = torch.rand(20_000, generator=torch.Generator().manual_seed(0))
    tokens = sample_rows(logits, ones, torch.full((20_000,), 4), ones, draws)
    shares = torch.bincount(tokens, minlength=4).float() / 20_000
    assert torch.allclose(shares, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015)
