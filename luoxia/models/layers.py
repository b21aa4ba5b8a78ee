"""Transformer layers shared by every Transformer family: norms, rotary positions, the MLPs,
multi-head self-attention and the pre-norm block.

Each layer takes plain sizes and options, not a model's config, so a causal decoder (`gpt.py`)
and a bidirectional encoder build the same modules; attention is causal or not by one argument.
Attribute names (``c_attn``, ``c_fc``, ``ln_1``…) are those of GPT-2, which saved runs and the
Hugging Face mapping in `luoxia/export.py` rely on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from luoxia.models.kv_cache import KVCache

NormKind = Literal["layernorm", "rmsnorm"]
MLPKind = Literal["gelu", "relu2", "swiglu"]
Rope = tuple[torch.Tensor, torch.Tensor]  # cos, sin, each (B, 1, T, hs)


def make_norm(kind: NormKind, dim: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """LayerNorm (GPT-2; ``bias`` optional) or RMSNorm (Zhang & Sennrich 2019; no bias, no centring)."""
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    return nn.LayerNorm(dim, eps=eps, bias=bias)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    """cos/sin tables for rotary positions (RoFormer, Su et al. 2021), in the half-split layout that
    Hugging Face's Llama uses: rotating q and k makes q·k depend on their positions' difference only."""

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, head_size: int, max_len: int, theta: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (max_len, hs/2)
        angles = torch.cat((angles, angles), dim=-1)  # (max_len, hs)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, positions: torch.Tensor) -> Rope:
        """(B, T) positions → cos, sin of shape (B, 1, T, hs), broadcast over heads."""
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, nh, T, hs) queries or keys by their positions' angles."""
    return x * cos + rotate_half(x) * sin


class SelfAttention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention`.

    ``causal``: each token sees only earlier ones (a decoder) or all of them (an encoder). A given
    ``mask`` — boolean, True where a query may see a key, broadcast to (B, nh, T, S) — replaces the
    built-in causal mask, so a causal caller with padding puts causality into it. ``qk_norm`` makes the
    norm applied per head to queries and keys (QK-norm, Dehghani et al. 2023). ``layer`` is this
    layer's index in a `KVCache`.
    """

    def __init__(self, dim: int, n_head: int, *, bias: bool = True, dropout: float = 0.0, causal: bool = True,
                 qk_norm: Callable[[int], nn.Module] | None = None, layer: int = 0):
        super().__init__()
        if dim % n_head:
            raise ValueError(f"width {dim} is not divisible by {n_head} heads")
        self.n_head, self.n_embd, self.dropout = n_head, dim, dropout
        self.causal, self.layer = causal, layer
        self.c_attn = nn.Linear(dim, 3 * dim, bias=bias)
        self.c_proj = nn.Linear(dim, dim, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        self.q_norm = qk_norm(dim // n_head) if qk_norm else None
        self.k_norm = qk_norm(dim // n_head) if qk_norm else None

    def forward(self, x: torch.Tensor, rope: Rope | None = None, mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, nh, S, hs) with S = cached + T
        # One query (T = 1) sees every cached key, so SDPA's own causal mask is needed only for T > 1.
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and mask is None and T > 1,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads side by side
        out: torch.Tensor = self.resid_dropout(self.c_proj(y))  # (B, T, C)
        return out


class MLP(nn.Module):
    """The position-wise MLP: GELU (GPT-2), ReLU² (modded-nanogpt speedruns) or SwiGLU (Shazeer 2020)."""

    def __init__(self, dim: int, hidden: int, kind: MLPKind = "gelu", *, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.kind = kind
        self.c_fc = nn.Linear(dim, hidden, bias=bias)
        self.c_gate = nn.Linear(dim, hidden, bias=bias) if kind == "swiglu" else None
        self.c_proj = nn.Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.c_gate is not None:
            h = F.silu(self.c_gate(x)) * self.c_fc(x)
        elif self.kind == "relu2":
            h = F.relu(self.c_fc(x)).square()
        else:
            h = F.gelu(self.c_fc(x), approximate="tanh")
        out: torch.Tensor = self.dropout(self.c_proj(h))  # (B, T, C)
        return out


class Block(nn.Module):
    """Transformer block. Pre-norm (GPT-2): x + attn(norm(x)), then x + mlp(norm(x)). Post-norm (the
    original Transformer and BERT): norm(x + attn(x)), then norm(x + mlp(x)). ``norm`` makes each of
    the two norms, so the block is built from its parts rather than from a config."""

    def __init__(self, attn: SelfAttention, mlp: MLP, norm: Callable[[], nn.Module], post_norm: bool = False):
        super().__init__()
        self.ln_1 = norm()
        self.attn = attn
        self.ln_2 = norm()
        self.mlp = mlp
        self.post_norm = post_norm

    def forward(self, x: torch.Tensor, rope: Rope | None = None, mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        if self.post_norm:
            x = self.ln_1(x + self.attn(x, rope, mask, cache))  # (B, T, C)
            post: torch.Tensor = self.ln_2(x + self.mlp(x))
            return post
        x = x + self.attn(self.ln_1(x), rope, mask, cache)  # (B, T, C)
        out: torch.Tensor = x + self.mlp(self.ln_2(x))
        return out
