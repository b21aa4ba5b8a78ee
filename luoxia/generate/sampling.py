"""Sampling transforms as pure functions of logits: nothing is modified in place.

Each takes logits of shape (B, V) and returns new logits (or token ids), so they compose in any
order and are tested one by one. `sample_rows` is the one sampler every decode path uses
(through `luoxia.generate.decode.decode_step`).
"""

from __future__ import annotations

import torch


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by ``temperature`` (> 0): below 1 sharpens, above 1 flattens the distribution."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 here; use greedy selection for 0")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row, set the rest to -inf."""
    k = min(k, logits.size(-1))
    threshold = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < threshold, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the smallest set of most likely tokens whose
    probability mass reaches ``p``; the most likely token always stays."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely tokens
    drop_sorted = mass_before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def apply_repetition_penalty(logits: torch.Tensor, present: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019) on tokens marked in ``present`` (B, V bool): positive
    logits are divided by ``penalty``, negative ones multiplied, so both become less likely."""
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(present, penalised, logits)


def presence_mask(token_ids: torch.Tensor, valid: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(B, V) bool: which tokens occur among the ``valid`` positions of ``token_ids`` (B, T)."""
    counts = torch.zeros(token_ids.size(0), vocab_size, device=token_ids.device)
    counts.scatter_add_(1, token_ids, valid.to(counts.dtype))
    return counts > 0


def sample_rows(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
                uniform: torch.Tensor) -> torch.Tensor:
    """Next token ids (B,) where every row has its own settings, in one pass: the one sampler.

    ``temperature`` (B,): 0 means greedy; ``top_k`` (B,) long, the vocabulary size for none;
    ``top_p`` (B,), 1 for none; ``uniform`` (B,) draws in [0, 1), one per row (each row's own seeded
    generator makes its draw, so a row's tokens do not depend on its neighbours). Sampling inverts
    each row's filtered cumulative distribution at its draw.
    """
    vocab = logits.size(-1)
    scaled = logits / temperature.clamp(min=1e-6)[:, None]
    sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    keep = torch.arange(vocab, device=logits.device)[None, :] < top_k[:, None]
    keep &= (probs.cumsum(dim=-1) - probs) < top_p[:, None]  # nucleus: the mass before a token is < p
    keep[:, 0] = True
    kept = probs * keep
    cdf = kept.cumsum(dim=-1)
    index = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None]).clamp(max=vocab - 1)
    sampled = order.gather(1, index).squeeze(1)
    return torch.where(temperature == 0, logits.argmax(dim=-1), sampled)
