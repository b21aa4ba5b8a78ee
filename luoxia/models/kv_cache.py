"""A pre-allocated key/value cache for decoding, with the operations continuous batching needs.

Sequences leave a batch (`reorder`), join it (`join`, right-aligned so every row writes its next
token into the same slot) and the slots no row uses any more are dropped (`compact`). The cache
knows nothing of the model beyond the shape of its keys, so any causal Transformer built from
`luoxia.models.layers` can use it.
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for a batch of sequences, pre-allocated to ``max_len`` slots.

    ``key_valid`` marks the slots that hold real tokens (left padding is False) and ``seen`` counts
    each sequence's real tokens, which gives the position of the next one.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, max_len: int, head_size: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (batch_size, n_head, max_len, head_size)
        # One buffer per layer (not one stacked tensor): a compiled decode step then writes each
        # new key in place instead of copying a whole stacked buffer back.
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.key_valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)  # (B, max_len)
        self.seen = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
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
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]  # (B, nh, end, hs)

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
        self.k = [torch.cat([k, o.roll(offset, dims=2)]) for k, o in zip(self.k, other.k, strict=True)]
        self.v = [torch.cat([v, o.roll(offset, dims=2)]) for v, o in zip(self.v, other.v, strict=True)]
        self.key_valid = torch.cat([self.key_valid, other.key_valid.roll(offset, dims=1)])
        self.seen = torch.cat([self.seen, other.seen])
        self.padded = True
