"""A decoder-only Transformer language model (GPT), in one readable file.

The classic recipe is GPT-2's (learned positions, pre-LayerNorm blocks, GELU MLP, biases, tied
embeddings). The modern options are one config field each: rotary positions (RoFormer, Su et al.
2021), RMSNorm (Zhang & Sennrich 2019), QK-norm (Dehghani et al. 2023), bias-free linears, and
ReLU² or SwiGLU MLPs. Generation uses a pre-allocated `KVCache`; left-padded batches are handled
with a key mask and per-sequence positions, so several prompts of different lengths decode at once.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from luoxia.config import Config


class GPTConfig(Config):
    """Shape and options of a GPT. ``vocab_size`` is filled from the tokenizer when left empty."""

    vocab_size: int | None = Field(None, description="tokens in the vocabulary (from the tokenizer if null)")
    block_size: int = Field(256, gt=0, description="longest context the model sees")
    n_layer: int = Field(4, gt=0, description="transformer blocks")
    n_head: int = Field(4, gt=0, description="attention heads")
    n_embd: int = Field(128, gt=0, description="width of the residual stream")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on attention, MLP and embeddings")
    bias: bool = Field(True, description="biases in linears and norms (GPT-2); false for the modern recipe")
    norm: Literal["layernorm", "rmsnorm"] = Field("layernorm", description="normalisation layer")
    norm_eps: float = Field(1e-5, gt=0, description="epsilon of the norms")
    position: Literal["learned", "rope"] = Field("learned", description="learned absolute or rotary positions")
    rope_theta: float = Field(10000.0, gt=0, description="rotary base frequency")
    qk_norm: bool = Field(False, description="normalise queries and keys per head before attention")
    mlp: Literal["gelu", "relu2", "swiglu"] = Field("gelu", description="MLP activation")
    mlp_hidden: int | None = Field(None, description="MLP width (default 4·n_embd, or 8/3·n_embd for swiglu)")
    tie_embeddings: bool = Field(True, description="share the token embedding with the output head")

    @model_validator(mode="after")
    def _check_shapes(self) -> GPTConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.position == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError("rotary positions need an even head size (n_embd / n_head)")
        return self

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden_size(self) -> int:
        if self.mlp_hidden:
            return self.mlp_hidden
        if self.mlp == "swiglu":  # keeps the parameter count of a 4x MLP with two matrices
            return 64 * math.ceil(8 * self.n_embd / 3 / 64)
        return 4 * self.n_embd


def make_norm(config: GPTConfig, dim: int | None = None) -> nn.Module:
    dim = dim or config.n_embd
    if config.norm == "rmsnorm":
        return nn.RMSNorm(dim, eps=config.norm_eps)
    return nn.LayerNorm(dim, eps=config.norm_eps, bias=config.bias)


class KVCache:
    """Keys and values of every layer for a batch of sequences, pre-allocated to ``max_len`` slots.

    ``key_valid`` marks the slots that hold real tokens (left padding is False) and ``seen`` counts
    each sequence's real tokens, which gives the position of the next one.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        shape = (batch_size, config.n_head, max_len, config.head_size)
        # One buffer per layer (not one stacked tensor): a compiled decode step then writes each
        # new key in place instead of copying a whole stacked buffer back.
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.key_valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.seen = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.length = 0
        self.padded = False

    @property
    def max_len(self) -> int:
        return self.key_valid.size(1)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's (B, nh, T, hs) keys/values; return every key/value so far."""
        end = self.length + k.size(2)
        slots = torch.arange(self.length, end, device=k.device)
        self.k[layer].index_copy_(2, slots, k)
        self.v[layer].index_copy_(2, slots, v)
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the sequences at ``index`` (in that order): beam search's re-ranking, and
        continuous batching's finished sequences leaving."""
        self.k, self.v = [k[index] for k in self.k], [v[index] for v in self.v]
        self.key_valid, self.seen = self.key_valid[index], self.seen[index]

    def _roll(self, shift: int) -> None:
        """Move every slot ``shift`` places right (left if negative). Only empty slots wrap around,
        because callers keep the filled span inside the buffer."""
        self.k = [k.roll(shift, dims=2) for k in self.k]
        self.v = [v.roll(shift, dims=2) for v in self.v]
        self.key_valid = self.key_valid.roll(shift, dims=1)
        self.length += shift

    def compact(self) -> None:
        """Drop the leading slots that no sequence uses any more (sequences that started early
        have left), so the batch can keep growing."""
        used = self.key_valid[:, : self.length].any(0).nonzero()
        first = int(used[0]) if len(used) else self.length
        if first:
            self._roll(-first)

    def join(self, other: KVCache) -> None:
        """Append the sequences of ``other`` (same shape, e.g. a freshly read prompt) as new rows,
        right-aligned so that every row's next token goes into the same slot."""
        if other.max_len != self.max_len:
            raise ValueError(f"caches of {other.max_len} and {self.max_len} slots cannot be joined")
        if other.length > self.length:  # make room on the left; each row's span fits the buffer
            self.compact()
            self._roll(other.length - self.length)
        offset = self.length - other.length
        self.k = [torch.cat([k, o.roll(offset, dims=2)]) for k, o in zip(self.k, other.k)]
        self.v = [torch.cat([v, o.roll(offset, dims=2)]) for v, o in zip(self.v, other.v)]
        self.key_valid = torch.cat([self.key_valid, other.key_valid.roll(offset, dims=1)])
        self.seen = torch.cat([self.seen, other.seen])
        self.padded = True


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    """cos/sin tables for rotary positions, in the half-split layout that Hugging Face's Llama uses."""

    def __init__(self, head_size: int, max_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (max_len, hs/2)
        angles = torch.cat((angles, angles), dim=-1)  # (max_len, hs)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) positions → cos, sin of shape (B, 1, T, hs), broadcast over heads."""
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.q_norm = make_norm(config, config.head_size) if config.qk_norm else None
        self.k_norm = make_norm(config, config.head_size) if config.qk_norm else None

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                mask: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, nh, S, hs) with S = cached + T
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=mask is None and T > 1,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = config.hidden_size
        self.kind = config.mlp
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_gate = nn.Linear(config.n_embd, hidden, bias=config.bias) if config.mlp == "swiglu" else None
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            h = F.silu(self.c_gate(x)) * self.c_fc(x)
        elif self.kind == "relu2":  # ReLU squared, from the modded-nanogpt speedruns
            h = F.relu(self.c_fc(x)).square()
        else:
            h = F.gelu(self.c_fc(x), approximate="tanh")
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, rope, mask, cache):
        x = x + self.attn(self.ln_1(x), rope, mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("GPTConfig.vocab_size must be set (it comes from the tokenizer)")
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
            ln_f=make_norm(config),
        ))
        if config.position == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
            self.rotary = None
        else:
            self.rotary = Rotary(config.head_size, config.block_size, config.rope_theta)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2·n_layer) so the stream's variance
        # does not grow with depth.
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        total = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            total -= self.transformer.wpe.weight.numel()
        return total

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        weight = self.lm_head.weight
        return KVCache(self.config, batch_size, max_len or self.config.block_size, weight.device, weight.dtype)

    def _positions_and_mask(self, idx: torch.Tensor, cache: KVCache | None,
                            padding_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token positions (B, T) and the boolean attention mask, or None when no padding is
        involved and SDPA's own causal mask is exact: nothing cached before, or one new token."""
        B, T = idx.size()
        start = cache.length if cache is not None else 0
        valid = padding_mask if padding_mask is not None else torch.ones(B, T, dtype=torch.bool, device=idx.device)
        if cache is not None:
            if padding_mask is not None:
                cache.padded = True
            cache.key_valid[:, start : start + T] = valid
            positions = cache.seen[:, None] + valid.long().cumsum(1) - 1
            cache.seen += valid.long().sum(1)
        else:
            positions = valid.long().cumsum(1) - 1
        positions = positions.clamp(min=0)
        padded = padding_mask is not None or (cache is not None and cache.padded)
        if not padded and (start == 0 or T == 1):
            return positions, None
        q_slots = torch.arange(start, start + T, device=idx.device)
        k_slots = torch.arange(start + T, device=idx.device)
        allowed = k_slots[None, :] <= q_slots[:, None]  # (T, S) causal
        key_valid = cache.key_valid[:, : start + T] if cache is not None else valid
        # Every query also sees itself, so a padding row is never fully masked (which gives NaN).
        allowed = (allowed & key_valid[:, None, :]) | (k_slots[None, :] == q_slots[:, None])
        return positions, allowed.unsqueeze(1)  # (B, 1, T, S)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, cache: KVCache | None = None,
                padding_mask: torch.Tensor | None = None, last_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) — (B, 1, V) with ``last_only`` — and the mean cross-entropy if ``targets``.

        ``padding_mask`` (B, T) is True for real tokens; with a ``cache`` the new keys and values are
        appended to it and attention covers everything cached so far.
        """
        B, T = idx.size()
        end = (cache.length if cache is not None else 0) + T
        if end > (cache.max_len if cache is not None else self.config.block_size):
            raise ValueError(f"sequence of {end} tokens exceeds the context of {self.config.block_size}")
        positions, mask = self._positions_and_mask(idx, cache, padding_mask)
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.rotary is None:
            x = x + self.transformer.wpe(positions)
        rope = self.rotary(positions) if self.rotary is not None else None
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, rope, mask, cache)
        if cache is not None:
            cache.length = end
        x = self.transformer.ln_f(x)
        if last_only:
            x = x[:, -1:, :]
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss
