"""Held-out loss, perplexity and bits per token / character / byte of a language model."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from luoxia.generate.text import CausalLMGenerator


def _windows(tokens: np.ndarray, block_size: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive non-overlapping (input, target) windows that cover every token once; the last,
    shorter window comes in a batch of its own."""
    starts = list(range(0, len(tokens) - 1, block_size))
    full = [s for s in starts if s + block_size + 1 <= len(tokens)]
    for i in range(0, len(full), batch_size):
        rows = np.stack([tokens[s : s + block_size + 1] for s in full[i : i + batch_size]]).astype(np.int64)
        yield torch.from_numpy(rows[:, :-1]), torch.from_numpy(rows[:, 1:])
    if len(full) < len(starts):
        tail = np.asarray(tokens[starts[-1] :], dtype=np.int64)[None]
        yield torch.from_numpy(tail[:, :-1]), torch.from_numpy(tail[:, 1:])


@torch.no_grad()
def token_nll(generator: CausalLMGenerator, tokens: np.ndarray, batch_size: int = 16) -> tuple[float, int]:
    """Sum of next-token negative log-likelihoods (nats) over a token stream, and how many."""
    total, count = 0.0, 0
    for x, y in _windows(tokens, generator.context_length, batch_size):
        logits = generator.sequence_logits(x)
        nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.to(logits.device).reshape(-1),
                              reduction="sum")
        total += nll.item()
        count += y.numel()
    return total, count


def perplexity_report(generator: CausalLMGenerator, tokens: np.ndarray, batch_size: int = 16) -> dict:
    """Loss (nats/token), perplexity, and bits per token, character and UTF-8 byte.

    Bits per character and per byte divide the same total by the length of the predicted text
    (special tokens count for none), so models with different tokenizers compare on the same data."""
    if len(tokens) < 2:
        raise ValueError("need at least 2 tokens to measure a language model")
    nll, count = token_nll(generator, tokens, batch_size)
    text = generator.tokenizer.decode(np.asarray(tokens[1:]).tolist(), skip_special_tokens=True)
    bits = nll / math.log(2)
    return {
        "tokens": count,
        "characters": len(text),
        "loss": nll / count,
        "perplexity": math.exp(nll / count),
        "bits_per_token": bits / count,
        "bits_per_char": bits / max(1, len(text)),
        "bits_per_byte": bits / max(1, len(text.encode("utf-8"))),
    }
