"""A decoder-only Transformer language model (GPT): its config and the model, built from the
shared layers of `luoxia.models.layers`.

The classic recipe is GPT-2's (learned positions, pre-LayerNorm blocks, GELU MLP, biases, tied
embeddings). The modern options are one config field each: rotary positions (RoFormer, Su et al.
2021), RMSNorm (Zhang & Sennrich 2019), QK-norm (Dehghani et al. 2023), bias-free linears, and
ReLU² or SwiGLU MLPs. Generation uses a pre-allocated `KVCache` (`luoxia.models.kv_cache`);
left-padded batches are handled with a key mask and per-sequence positions, so several prompts of
different lengths decode at once.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from luoxia.config import Config
from luoxia.models.kv_cache import KVCache
from luoxia.models.layers import MLP, Block, MLPKind, NormKind, Rotary, SelfAttention, make_norm


class GPTConfig(Config):
    """Shape and options of a GPT. ``vocab_size`` is filled from the tokenizer when left empty."""

    family: Literal["gpt"] = Field("gpt", description="model family (gpt: a decoder-only Transformer)")
    vocab_size: int | None = Field(None, description="tokens in the vocabulary (from the tokenizer if null)")
    block_size: int = Field(256, gt=0, description="longest context the model sees")
    n_layer: int = Field(4, gt=0, description="transformer blocks")
    n_head: int = Field(4, gt=0, description="attention heads")
    n_embd: int = Field(128, gt=0, description="width of the residual stream")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on attention, MLP and embeddings")
    bias: bool = Field(True, description="biases in linears and norms (GPT-2); false for the modern recipe")
    norm: NormKind = Field("layernorm", description="normalisation layer")
    norm_eps: float = Field(1e-5, gt=0, description="epsilon of the norms")
    position: Literal["learned", "rope"] = Field("learned", description="learned absolute or rotary positions")
    rope_theta: float = Field(10000.0, gt=0, description="rotary base frequency")
    qk_norm: bool = Field(False, description="normalise queries and keys per head before attention")
    mlp: MLPKind = Field("gelu", description="MLP activation")
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


def make_block(config: GPTConfig, layer: int) -> Block:
    """One causal pre-norm block with the config's norm, attention and MLP options."""
    attn = SelfAttention(config.n_embd, config.n_head, bias=config.bias, dropout=config.dropout, causal=True,
                         qk_norm=partial(_norm, config) if config.qk_norm else None, layer=layer)
    mlp = MLP(config.n_embd, config.hidden_size, config.mlp, bias=config.bias, dropout=config.dropout)
    return Block(attn, mlp, partial(_norm, config, config.n_embd))


def _norm(config: GPTConfig, dim: int) -> nn.Module:
    return make_norm(config.norm, dim, config.norm_eps, config.bias)


class GPT(nn.Module):
    """Token (and learned position) embeddings → ``n_layer`` causal blocks → final norm → LM head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("GPTConfig.vocab_size must be set (it comes from the tokenizer)")
        self.config = config
        wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.transformer = nn.ModuleDict(dict(
            wte=wte,
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(make_block(config, i) for i in range(config.n_layer)),
            ln_f=_norm(config, config.n_embd),
        ))
        if config.position == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
            self.rotary = None
        else:
            self.rotary = Rotary(config.head_size, config.block_size, config.rope_theta)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = wte.weight
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
            total -= cast(nn.Embedding, self.transformer["wpe"]).weight.numel()  # ModuleDict items are typed Module
        return total

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        weight = self.lm_head.weight
        config = self.config
        return KVCache(config.n_layer, batch_size, config.n_head, max_len or config.block_size, config.head_size,
                       weight.device, weight.dtype)

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
        x: torch.Tensor = self.transformer["wte"](idx)  # (B, T, C)
        if self.rotary is None:
            x = x + self.transformer["wpe"](positions)
        rope = self.rotary(positions) if self.rotary is not None else None
        x = self.transformer["drop"](x)
        for block in cast(nn.ModuleList, self.transformer["h"]):  # ModuleDict items are typed Module
            x = block(x, rope, mask, cache)
        if cache is not None:
            cache.length = end
        x = self.transformer["ln_f"](x)
        if last_only:
            x = x[:, -1:, :]
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss
