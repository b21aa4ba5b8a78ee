"""A BERT-style bidirectional encoder trained by masked-token prediction (Devlin et al. 2019).

Built from the shared layers of `luoxia.models.layers` with attention that sees the whole sequence
(no causal mask). Word, position and segment embeddings are summed and normalised; the blocks are
post-norm by default, as BERT's are, so a run maps exactly onto Hugging Face's `BertForMaskedLM`
(pre-norm is an option: it trains more stably at high learning rates, and has no BERT counterpart).
The masked-LM head is BERT's (dense → GELU → norm → decoder tied to the word embedding, plus a
bias); with ``nsp`` a pooler (dense → tanh on ``[CLS]``) feeds a two-way next-sentence head.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from luoxia.config import Config
from luoxia.models.layers import MLP, Block, SelfAttention


class MLMConfig(Config):
    """Shape of a masked language model. ``vocab_size`` is filled from the tokenizer when left empty."""

    family: Literal["bert"] = Field("bert", description="model family (bert: a bidirectional Transformer encoder)")
    vocab_size: int | None = Field(None, description="tokens in the vocabulary (from the tokenizer if null)")
    block_size: int = Field(128, gt=0, description="longest input in tokens, [CLS] and [SEP] included")
    n_layer: int = Field(4, gt=0, description="transformer blocks")
    n_head: int = Field(4, gt=0, description="attention heads")
    n_embd: int = Field(128, gt=0, description="width of the hidden states")
    mlp_hidden: int | None = Field(None, description="MLP width (default 4·n_embd)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on embeddings, attention and MLP")
    norm_eps: float = Field(1e-12, gt=0, description="epsilon of the LayerNorms (BERT's 1e-12)")
    norm_position: Literal["post", "pre"] = Field(
        "post", description="post (BERT's; exports to BertForMaskedLM) or pre (no Hugging Face counterpart)")
    type_vocab_size: int = Field(2, gt=0, description="segment ids (sentence A / B)")
    nsp: bool = Field(False, description="a [CLS] head for next-sentence prediction")

    @model_validator(mode="after")
    def _check_shapes(self) -> MLMConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class MaskedLM(nn.Module):
    """Embeddings (word + position + segment, norm, dropout) → ``n_layer`` bidirectional blocks
    (→ final norm when pre-norm) → the masked-LM head; and, with ``nsp``, pooler → next-sentence head."""

    def __init__(self, config: MLMConfig):
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("MLMConfig.vocab_size must be set (it comes from the tokenizer)")
        self.config = config
        C = config.n_embd
        post = config.norm_position == "post"

        def norm() -> nn.Module:
            return nn.LayerNorm(C, eps=config.norm_eps)

        self.wte = nn.Embedding(config.vocab_size, C)
        self.wpe = nn.Embedding(config.block_size, C)
        self.wtt = nn.Embedding(config.type_vocab_size, C)
        self.ln_e = norm()
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(
            Block(SelfAttention(C, config.n_head, dropout=config.dropout, causal=False, layer=i),
                  MLP(C, config.mlp_hidden or 4 * C, "gelu", dropout=config.dropout), norm, post_norm=post)
            for i in range(config.n_layer))
        self.ln_f = nn.Identity() if post else norm()  # a pre-norm stack ends un-normalised
        self.head_dense = nn.Linear(C, C)
        self.head_ln = norm()
        self.head_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.pooler = nn.Linear(C, C) if config.nsp else None
        self.nsp_head = nn.Linear(C, 2) if config.nsp else None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """BERT's initialisation: N(0, 0.02) weights, zero biases, unit norms."""
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, idx: torch.Tensor, segments: torch.Tensor | None = None,
               padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (B, T, C) of ids (B, T); ``segments`` (B, T) are 0/1 sentence ids (default 0),
        ``padding_mask`` (B, T) is True on real tokens (padding is never attended to)."""
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"input of {T} tokens is longer than block_size {self.config.block_size}")
        positions = torch.arange(T, device=idx.device)
        segments = segments if segments is not None else torch.zeros_like(idx)
        x = self.wte(idx) + self.wpe(positions)[None] + self.wtt(segments)  # (B, T, C)
        x = self.drop(self.ln_e(x))
        mask = padding_mask[:, None, None, :] if padding_mask is not None else None  # (B, 1, 1, T) keys
        for block in self.h:
            x = block(x, mask=mask)
        out: torch.Tensor = self.ln_f(x)
        return out

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (..., V) of hidden states (..., C), through the tied decoder."""
        h = self.head_ln(F.gelu(self.head_dense(hidden), approximate="tanh"))
        return F.linear(h, self.wte.weight, self.head_bias)

    def nsp_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Is-next / not-next logits (B, 2) from the pooled [CLS] state of hidden states (B, T, C)."""
        if self.pooler is None or self.nsp_head is None:
            raise ValueError("this model has no next-sentence head (model.nsp is false)")
        logits: torch.Tensor = self.nsp_head(torch.tanh(self.pooler(hidden[:, 0])))  # (B, 2)
        return logits

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                segments: torch.Tensor | None = None, padding_mask: torch.Tensor | None = None,
                nsp_labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) and, with ``targets`` (B, T; -100 where nothing is predicted), the mean
        cross-entropy over the masked positions, plus the next-sentence loss when ``nsp_labels`` (B,)
        (0 = the second sentence follows, 1 = it is random) are given."""
        hidden = self.encode(idx, segments, padding_mask)  # (B, T, C)
        logits = self.mlm_logits(hidden)  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        if nsp_labels is not None:
            loss = loss + F.cross_entropy(self.nsp_logits(hidden), nsp_labels)
        return logits, loss
