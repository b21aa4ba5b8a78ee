"""A recurrent language model (LSTM or GRU): token embedding → ``n_layer`` recurrent layers → LM head.

The tutorials' autoregressive RNN (Hochreiter & Schmidhuber 1997; Cho et al. 2014) on `torch.nn.LSTM` /
`torch.nn.GRU`, which run cuDNN's fused kernels on a GPU. The recurrent state is the RNN's KV cache: a
fixed-size summary of everything read so far, so decoding one more token costs the same at any length.
`forward` takes and returns it, which is all that truncated back-propagation through time (training)
and step-by-step decoding (generation) need; `select_state` / `cat_states` reorder, drop and join
rows of it, as a batch decoder's rows come and go.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from luoxia.config import Config

# GRU: h (n_layer, B, H); LSTM: (h, c), each (n_layer, B, H)
RNNState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class RNNConfig(Config):
    """Shape of an LSTM/GRU language model. ``vocab_size`` is filled from the tokenizer when left empty."""

    family: Literal["rnn"] = Field("rnn", description="model family (rnn: an LSTM/GRU language model)")
    cell: Literal["lstm", "gru"] = Field("lstm", description="recurrent cell: lstm or gru")
    vocab_size: int | None = Field(None, description="tokens in the vocabulary (from the tokenizer if null)")
    block_size: int = Field(128, gt=0, description="tokens per training window (the truncated-BPTT length)")
    n_layer: int = Field(2, gt=0, description="stacked recurrent layers")
    n_embd: int = Field(128, gt=0, description="width of the token embedding")
    hidden_size: int = Field(256, gt=0, description="width of each layer's hidden state")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the embedding, between layers and before the head")
    tie_embeddings: bool = Field(False, description="share the token embedding with the output head "
                                 "(needs n_embd == hidden_size)")

    @model_validator(mode="after")
    def _check_tying(self) -> RNNConfig:
        if self.tie_embeddings and self.n_embd != self.hidden_size:
            raise ValueError(f"tie_embeddings needs n_embd ({self.n_embd}) == hidden_size ({self.hidden_size})")
        return self


class RNNLM(nn.Module):
    """Embedding → dropout → LSTM/GRU stack (dropout between layers) → dropout → linear head."""

    def __init__(self, config: RNNConfig):
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("RNNConfig.vocab_size must be set (it comes from the tokenizer)")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        cell = nn.LSTM if config.cell == "lstm" else nn.GRU
        # torch applies `dropout` between stacked layers only (and warns when there is one layer).
        self.rnn = cell(config.n_embd, config.hidden_size, config.n_layer, batch_first=True,
                        dropout=config.dropout if config.n_layer > 1 else 0.0)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)
        nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.02)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_state(self, batch_size: int) -> RNNState:
        """The zero state a stream starts from."""
        weight = self.lm_head.weight
        h = torch.zeros(self.config.n_layer, batch_size, self.config.hidden_size, device=weight.device,
                        dtype=weight.dtype)
        return (h, h.clone()) if self.config.cell == "lstm" else h

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, state: RNNState | None = None,
                last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, RNNState]:
        """Logits (B, T, V) — (B, 1, V) with ``last_only`` —, the mean cross-entropy against ``targets``
        (B, T) if given, and the state after the last token (from ``state``, or zeros)."""
        x = self.drop(self.wte(idx))  # (B, T, n_embd)
        h, state = self.rnn(x, state)  # (B, T, H)
        h = self.drop(h)
        if targets is None:
            return self.lm_head(h[:, -1:] if last_only else h), None, state
        logits = self.lm_head(h)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss, state


def select_state(state: RNNState, index: torch.Tensor) -> RNNState:
    """The rows ``index`` (B',) of a state, in that order: beams reordered, finished rows dropped."""
    if isinstance(state, tuple):
        return state[0][:, index], state[1][:, index]
    return state[:, index]


def cat_states(states: Sequence[RNNState]) -> RNNState:
    """States of several row groups side by side (batch dim 1): a row joining a running batch."""
    if isinstance(states[0], tuple):
        pairs = [s for s in states if isinstance(s, tuple)]
        return torch.cat([h for h, _ in pairs], dim=1), torch.cat([c for _, c in pairs], dim=1)
    return torch.cat([s for s in states if isinstance(s, torch.Tensor)], dim=1)


def detach_state(state: RNNState) -> RNNState:
    """The same values cut from the graph: truncated BPTT carries state across windows, not gradients."""
    if isinstance(state, tuple):
        return state[0].detach(), state[1].detach()
    return state.detach()
