"""Any local Hugging Face causal LM behind the same `TextGenerator` as Luoxia's own GPT.

Weights are read from disk only (``local_files_only=True``): a name that is not a local directory
or already in the local Hugging Face cache is an error that says so, never a download.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from luoxia.errors import CheckpointError
from luoxia.generate.text import CausalLMGenerator, left_pad
from luoxia.runtime import resolve_device

# A `transformers` causal LM (a PreTrainedModel, or a peft PeftModel around one), its tokenizer and its
# config: used only through their loosely typed call/decode/getattr interfaces, so typed as Any here.
HFModel = Any
HFTokenizerLike = Any
HFConfig = Any


class HFTokenizer:
    """A `transformers` tokenizer seen through Luoxia's small tokenizer interface."""

    def __init__(self, tokenizer: HFTokenizerLike) -> None:
        self.hf = tokenizer
        self.eos_id: int | None = tokenizer.eos_token_id

    def encode(self, text: str) -> list[int]:
        """Ids as the model saw them in training: with the tokenizer's own special tokens (Llama's BOS)."""
        return list(self.hf(text, verbose=False)["input_ids"])  # long texts are windowed by the caller

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(ids) for ids in self.hf(list(texts), verbose=False)["input_ids"]]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        text: str = self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return text


def context_length(config: HFConfig) -> int:
    """The longest context a Hugging Face config allows (GPT-2 calls it n_positions)."""
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    raise CheckpointError(f"{type(config).__name__}: no context length (max_position_embeddings) in the config")


class HFDecoder:
    """Steps a Hugging Face causal LM one token at a time over its own KV cache, with left
    padding expressed through the attention mask and explicit position ids."""

    def __init__(self, model: HFModel, histories: Sequence[Sequence[int]], use_cache: bool = True) -> None:
        self.model = model
        self.context = context_length(model.config)
        self.use_cache = use_cache
        self.histories = [list(h) for h in histories]
        self.device: torch.device = model.device
        self.logits = self._refill(self.context)

    def _forward(self, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor, cache: Any
                 ) -> torch.Tensor:  # cache: the model's own transformers Cache, or None
        out = self.model(input_ids=ids, attention_mask=attention, position_ids=positions, past_key_values=cache,
                         use_cache=self.use_cache, logits_to_keep=1)
        self.cache = out.past_key_values if self.use_cache else None
        logits: torch.Tensor = out.logits[:, -1].float()  # (B, V)
        return logits

    @torch.no_grad()
    def _refill(self, keep: int) -> torch.Tensor:
        ids, mask = left_pad([h[-keep:] for h in self.histories], self.device)
        self.attention = mask.long() if mask is not None else torch.ones_like(ids)
        positions = (self.attention.cumsum(1) - 1).clamp(min=0)
        self.next_position = positions[:, -1] + 1
        return self._forward(ids, self.attention, positions, None)

    @torch.no_grad()
    def push(self, next_ids: torch.Tensor) -> torch.Tensor:
        """Append one token per sequence; return the logits for the token after it."""
        for history, token in zip(self.histories, next_ids.tolist(), strict=True):
            history.append(token)
        if not self.use_cache:
            self.logits = self._refill(self.context)
        elif self.attention.size(1) >= self.context:
            self.logits = self._refill(self.context // 2)
        else:
            self.attention = torch.cat([self.attention, self.attention.new_ones(len(self.histories), 1)], dim=1)
            positions = self.next_position[:, None]
            self.next_position = self.next_position + 1
            self.logits = self._forward(next_ids[:, None].to(self.device), self.attention, positions, self.cache)
        return self.logits

    def reorder(self, index: torch.Tensor) -> None:
        self.histories = [list(self.histories[i]) for i in index.tolist()]
        self.logits = self.logits[index]
        self.attention, self.next_position = self.attention[index], self.next_position[index]
        if self.cache is not None:
            self.cache.reorder_cache(index.to(self.device))


class HFGenerator(CausalLMGenerator):
    """`TextGenerator` over a `transformers` causal LM and its tokenizer."""

    def __init__(self, model: HFModel, tokenizer: HFTokenizerLike, name: str = "hf-model") -> None:
        self.model = model.eval()
        super().__init__(lambda histories, use_cache: HFDecoder(self.model, histories, use_cache),
                         HFTokenizer(tokenizer), name, context_length(model.config), model.device)

    @torch.no_grad()
    def sequence_logits(self, ids: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids=ids.to(self.device)).logits  # (B, T, V)
        return logits


def load_hf_model(path: str | Path, device: str = "auto", model_class: Any = None,
                  **options: Any) -> tuple[HFModel, HFTokenizerLike]:
    """A causal LM (or ``model_class``, built with ``options``) and its tokenizer from a local
    directory or the local Hugging Face cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_class = model_class or AutoModelForCausalLM
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = model_class.from_pretrained(str(path), local_files_only=True, dtype=torch.float32,
                                            **options)
    except (OSError, ValueError) as error:
        raise CheckpointError(
            f"{path}: not a local Hugging Face model directory, and not in the local Hugging Face cache. "
            "Luoxia never downloads weights at run time; fetch the model on a connected machine "
            f"(hf download {path} --local-dir DIR) and pass DIR. ({str(error).splitlines()[0]})") from None
    return model.to(resolve_device(device)).eval(), tokenizer


def load_hf(path: str | Path, device: str = "auto") -> HFGenerator:
    model, tokenizer = load_hf_model(path, device)
    return HFGenerator(model, tokenizer, name=Path(str(path)).name)
