import pytest
import torch
from pydantic import ValidationError

from luoxia.models.gpt import GPT, GPTConfig
from tests.helpers import tiny_gpt

VARIANTS = {
    "gpt2": {},
    "modern": dict(position="rope", norm="rmsnorm", qk_norm=True, bias=False, mlp="swiglu"),
    "relu2-untied": dict(mlp="relu2", tie_embeddings=False),
}


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def model(request) -> GPT:
    return tiny_gpt(**VARIANTS[request.param])


def test_logits_shape_and_loss(model: GPT):
    idx = torch.randint(0, 32, (3, 10))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 10, 32)
    assert loss.ndim == 0 and 2.0 < loss.item() < 5.0  # near ln(32) = 3.47 at initialisation
    last, _ = model(idx, last_only=True)
    assert torch.allclose(last[:, 0], logits[:, -1], atol=1e-6)


def test_causality_future_tokens_do_not_change_past_logits(model: GPT):
    idx = torch.randint(0, 32, (2, 16))
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 7) % 32
    before, _ = model(idx)
    after, _ = model(changed)
    assert torch.allclose(before[:, :10], after[:, :10], atol=1e-6)
    assert not torch.allclose(before[:, 10:], after[:, 10:], atol=1e-3)


def test_kv_cache_logits_equal_full_forward(model: GPT):
    idx = torch.randint(0, 32, (3, 20))
    full, _ = model(idx)
    cache = model.new_cache(3)
    pieces = [model(idx[:, :7], cache=cache)[0], model(idx[:, 7:12], cache=cache)[0]]
    pieces += [model(idx[:, t : t + 1], cache=cache)[0] for t in range(12, 20)]
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_left_padding_gives_the_unpadded_logits(model: GPT):
    idx = torch.randint(0, 32, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[0, :5] = False  # row 0 is a 7-token prompt padded on the left
    padded, _ = model(idx, padding_mask=mask)
    alone, _ = model(idx[:1, 5:])
    assert not torch.isnan(padded).any()
    assert torch.allclose(padded[0, 5:], alone[0], atol=1e-5)
    cache = model.new_cache(2)
    model(idx, cache=cache, padding_mask=mask)
    step, _ = model(torch.tensor([[3], [4]]), cache=cache)
    reference, _ = model(torch.cat([idx[:1, 5:], torch.tensor([[3]])], dim=1))
    assert torch.allclose(step[0, 0], reference[0, -1], atol=1e-5)


def test_tied_embeddings_share_storage():
    model = tiny_gpt()
    assert model.lm_head.weight is model.transformer.wte.weight
    assert tiny_gpt(tie_embeddings=False).lm_head.weight is not tiny_gpt().transformer.wte.weight


def test_context_overflow_is_an_error():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="exceeds the context"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_config_validation():
    with pytest.raises(ValidationError, match="divisible"):
        GPTConfig(vocab_size=10, n_embd=30, n_head=4)
    with pytest.raises(ValidationError, match="even head size"):
        GPTConfig(vocab_size=10, n_embd=12, n_head=4, position="rope")
    with pytest.raises(ValueError, match="vocab_size"):
        GPT(GPTConfig())


def test_same_seed_same_initialisation():
    a, b = tiny_gpt(seed=5), tiny_gpt(seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tiny_model_overfits_one_batch(variant: str):
    model = tiny_gpt(seed=1, **VARIANTS[variant]).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 32, (4, 16), generator=generator)
    y = torch.randint(0, 32, (4, 16), generator=generator)
    first = None
    for _ in range(150):
        _, loss = model(x, y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 3.0 and loss.item() < 0.2  # random targets memorised
