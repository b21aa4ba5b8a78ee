"""The learned layer of `luoxia.safety.moderation`: one logistic regression per moderation
category on sentence embeddings, saved as ``head.safetensors`` plus ``head.json``.

It lives with the models so that training it (`luoxia.train.moderation`) and using it
(`luoxia.safety.moderation`) both import it from below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from luoxia.errors import CheckpointError

CATEGORIES = ("sexual", "sexual/minors", "hate", "hate/threatening", "harassment", "self-harm", "violence",
              "violence/graphic", "illicit")
HEAD_FILE, HEAD_INFO = "head.safetensors", "head.json"


@dataclass
class ModerationHead:
    """Per-category logistic regressions on sentence embeddings: probability = σ(w·x + b)."""

    categories: list[str]
    weights: np.ndarray  # (C, dim)
    bias: np.ndarray  # (C,)
    thresholds: np.ndarray  # (C,)
    encoder: str = "minilm"
    info: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, dim) → (N, C)."""
        logits: np.ndarray = embeddings @ self.weights.T + self.bias
        probabilities: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
        return probabilities

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"weights": self.weights.astype(np.float32), "bias": self.bias.astype(np.float32),
                   "thresholds": self.thresholds.astype(np.float32)}, str(directory / HEAD_FILE))
        info = {"categories": self.categories, "encoder": self.encoder, **self.info}
        (directory / HEAD_INFO).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> ModerationHead:
        directory = Path(directory)
        if not (directory / HEAD_FILE).is_file() or not (directory / HEAD_INFO).is_file():
            raise CheckpointError(f"{directory}: no moderation classifier ({HEAD_FILE} and {HEAD_INFO}); "
                                  "train one with `luoxia train configs/safety/moderation.yaml`")
        try:
            tensors = load_file(str(directory / HEAD_FILE))
            info = json.loads((directory / HEAD_INFO).read_text(encoding="utf-8"))
            categories = info.pop("categories")
        except Exception as error:  # safetensors raises its own error type for a bad header
            raise CheckpointError(f"{directory}: corrupt moderation classifier ({error})") from None
        return cls(categories, tensors["weights"], tensors["bias"], tensors["thresholds"], info.pop("encoder"), info)
