"""A trained masked LM (a ``task: mlm`` run) as a sentence encoder.

Each text is read as ``[CLS] text [SEP]`` (cut to the model's ``block_size``), its hidden states
averaged over the real tokens (padding never counts, nor is it attended to) and L2-normalised — the
sentence-transformers recipe MiniLM uses — so ``luoxia serve --embedding-model runs/mlm-pydoc``
serves it at ``/v1/embeddings``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from luoxia.data.mlm import MLMSpecials
from luoxia.data.tokenizer import TextTokenizer
from luoxia.models.mlm import MaskedLM, MLMConfig
from luoxia.runs import is_run_dir, load_run_module, run_recipe
from luoxia.runtime import resolve_device


def is_mlm_run(path: str | Path) -> bool:
    """Whether ``path`` is a Luoxia run directory holding a masked LM (its model's family is bert)."""
    if not is_run_dir(path):
        return False
    model = run_recipe(path).get("model")
    return isinstance(model, dict) and model.get("family") == MLMConfig.model_fields["family"].default


class MLMEncoder:
    """An `Encoder` over a masked-LM run: (N, n_embd) float32 unit vectors, ``batch_size`` texts per pass."""

    def __init__(self, run_dir: str | Path, device: str = "auto", batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.model = load_run_module(run_dir, MaskedLM, MLMConfig).to(resolve_device(device)).eval()
        self.tokenizer = TextTokenizer.load(run_dir)
        self.specials = MLMSpecials.of(self.tokenizer)
        self.name = Path(run_dir).name
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return self.model.config.n_embd

    def framed(self, text: str) -> list[int]:
        """``[CLS] text [SEP]``, the text cut to fit the model's ``block_size``."""
        ids = self.tokenizer.encode(text)[: self.model.config.block_size - 2]
        return [self.specials.cls, *ids, self.specials.sep]

    def count_tokens(self, text: str) -> int:
        return len(self.framed(text))

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        chunks = [self._encode_batch(list(texts[i:i + self.batch_size])) for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)  # (N, dim)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        rows = [self.framed(text) for text in texts]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.specials.pad, dtype=torch.long)  # (B, T)
        real = torch.zeros(len(rows), width, dtype=torch.bool)  # (B, T)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            real[i, : len(row)] = True
        device = self.model.wte.weight.device
        hidden = self.model.encode(ids.to(device), padding_mask=real.to(device)).float()  # (B, T, C)
        weights = real.to(device).unsqueeze(-1).float()  # (B, T, 1)
        mean = (hidden * weights).sum(1) / weights.sum(1)  # (B, C): every row has [CLS] and [SEP]
        return torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()
