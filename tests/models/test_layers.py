"""Shared Transformer layers: attention against the textbook formula, causal versus bidirectional,
the rotary relative-position property, the MLP formulas, and GPT built from these layers with the
parameter names saved runs rely on."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from luoxia.models.layers import MLP, Block, Rotary, SelfAttention, apply_rotary, make_norm
from tests.helpers import tiny_gpt

B, T, C, NH = 2, 7, 16, 4


def attention(causal: bool, seed: int = 0) -> SelfAttention:
    torch.manual_seed(seed)
    return SelfAttention(C, NH, causal=causal).eval()


def textbook(attn: SelfAttention, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√hs) v over the allowed (T, S) or (B, 1, T, S) pairs, written out."""
    q, k, v = attn.c_attn(x).split(C, dim=2)
    q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // NH)  # (B, nh, T, T)
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    return attn.c_proj((weights @ v).transpose(1, 2).reshape(B, T, C))


def test_attention_equals_the_textbook_formula_causal_and_bidirectional():
    x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(1))
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    # SDPA's fused kernel and the written-out softmax round differently: equal to float32 precision
    torch.testing.assert_close(attention(True)(x), textbook(attention(True), x, causal), atol=1e-6, rtol=1e-5)
    everything = torch.ones(T, T, dtype=torch.bool)
    torch.testing.assert_close(attention(False)(x), textbook(attention(False), x, everything), atol=1e-6, rtol=1e-5)
    keys = torch.ones(B, 1, 1, T, dtype=torch.bool)
    keys[0, ..., 5:] = False  # row 0's last two tokens are padding: an encoder's key mask
    torch.testing.assert_close(attention(False)(x, mask=keys), textbook(attention(False), x, keys),
                               atol=1e-6, rtol=1e-5)


def test_bidirectional_attention_sees_later_tokens_and_causal_does_not():
    x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(2))
    later = x.clone()
    later[:, -1] += 1.0  # change only the last token
    causal, bidirectional = attention(True), attention(False)
    assert torch.equal(causal(x)[:, :-1], causal(later)[:, :-1])  # same kernel, same inputs: bit-identical
    assert not torch.allclose(bidirectional(x)[:, :-1], bidirectional(later)[:, :-1], atol=1e-4)


def test_rotary_scores_depend_only_on_the_distance_between_positions():
    rotary = Rotary(head_size=8, max_len=64)
    q, k = torch.randn(2, 1, 1, 1, 8, generator=torch.Generator().manual_seed(3)).unbind(0)  # (B, nh, T, hs)

    def score(m: int, n: int) -> torch.Tensor:
        qm = apply_rotary(q, *rotary(torch.tensor([[m]])))
        kn = apply_rotary(k, *rotary(torch.tensor([[n]])))
        return (qm * kn).sum()

    # cos/sin tables of different angles: equal to float32 rounding, not bitwise
    for shift in (1, 9, 40):
        torch.testing.assert_close(score(5 + shift, 2 + shift), score(5, 2), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(score(5, 2), score(5, 4), atol=1e-3)
    torch.testing.assert_close(apply_rotary(q, *rotary(torch.tensor([[0]]))), q)  # position 0 turns nothing


@pytest.mark.parametrize("kind", ["gelu", "relu2", "swiglu"])
def test_mlp_variants_compute_their_formula(kind: str):
    torch.manual_seed(4)
    mlp = MLP(C, 24, kind).eval()
    x = torch.randn(B, T, C)
    if kind == "swiglu":
        hidden = F.silu(mlp.c_gate(x)) * mlp.c_fc(x)
    elif kind == "relu2":
        hidden = F.relu(mlp.c_fc(x)) ** 2
    else:
        hidden = F.gelu(mlp.c_fc(x), approximate="tanh")
    torch.testing.assert_close(mlp(x), mlp.c_proj(hidden))  # the same ops: float32 default tolerance
    assert (mlp.c_gate is not None) == (kind == "swiglu")


def test_gpt_is_built_from_these_layers_with_the_saved_parameter_names():
    model = tiny_gpt(position="rope", norm="rmsnorm", qk_norm=True, bias=False, mlp="swiglu")
    block = model.transformer.h[1]
    assert isinstance(block, Block) and isinstance(block.attn, SelfAttention) and block.attn.causal
    # the names in saved runs' model.safetensors and in the Hugging Face mapping of export.py
    assert [name for name, _ in block.named_parameters()] == [
        "ln_1.weight", "attn.c_attn.weight", "attn.c_proj.weight", "attn.q_norm.weight", "attn.k_norm.weight",
        "ln_2.weight", "mlp.c_fc.weight", "mlp.c_gate.weight", "mlp.c_proj.weight"]
    assert [name for name, _ in tiny_gpt().transformer.h[0].named_parameters()] == [
        "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
        "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
        "mlp.c_proj.bias"]


def test_gpt_logits_equal_its_layers_applied_by_hand():
    model = tiny_gpt(position="rope", norm="rmsnorm", qk_norm=True, mlp="relu2")
    idx = torch.randint(0, 32, (B, T), generator=torch.Generator().manual_seed(5))
    positions = torch.arange(T).expand(B, T)
    config = model.config
    x = model.transformer.wte(idx)  # (B, T, C)
    for block in model.transformer.h:  # a fresh causal block from the layers module, loaded with GPT's weights
        fresh = Block(SelfAttention(config.n_embd, config.n_head, causal=True,
                                    qk_norm=lambda d: make_norm("rmsnorm", d)),
                      MLP(config.n_embd, config.hidden_size, "relu2"), lambda: make_norm("rmsnorm", config.n_embd))
        fresh.load_state_dict(block.state_dict())
        x = fresh.eval()(x, model.rotary(positions))
    logits = model.lm_head(model.transformer.ln_f(x))
    assert torch.equal(logits, model(idx)[0])  # the same modules and kernels in the same order: bit-identical
