"""``luoxia eval`` for a masked LM: masked-token accuracy and pseudo-perplexity on held-out text.

Masked-token accuracy masks non-overlapping windows of the held-out stream in file order by the
run's own masking rule, each from a fixed seed (window ``i`` from ``(0, i)``), so two evaluations
of a run agree. Pseudo-perplexity (Salazar et al. 2020) masks one position at a time and scores
the original token: ``exp`` of the mean negative log-likelihood over the scored tokens. It costs one
forward pass per token, so only the first ``max_tokens`` non-special tokens of the stream (in
windows of ``block_size − 2``, file order) are scored.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from luoxia.data.clean import clean_text
from luoxia.data.corpora import corpus_documents
from luoxia.data.mlm import MaskingConfig, MLMBatches, MLMSpecials, frame
from luoxia.data.packed import open_tokens
from luoxia.data.prepare import encode_stream
from luoxia.data.tokenizer import TextTokenizer
from luoxia.errors import DataError
from luoxia.generate.mlm import MaskedLMGenerator, masked_counts, masked_metrics
from luoxia.models.mlm import MaskedLM
from luoxia.runs import data_dir as run_data_dir
from luoxia.runs import run_recipe

ACCURACY_WINDOWS = 256  # masked windows scored for accuracy, at most
PSEUDO_PPL_TOKENS = 2048  # tokens scored one at a time for pseudo-perplexity, at most


@torch.no_grad()
def masked_accuracy(model: MaskedLM, tokenizer: TextTokenizer, tokens: np.ndarray, masking: MaskingConfig,
                    batch_size: int = 16, max_windows: int = ACCURACY_WINDOWS) -> dict[str, float]:
    """Loss per masked token and top-1 accuracy (and NSP accuracy when the model has the head) on
    fixed masked windows of ``tokens``."""
    batches = MLMBatches(tokens, tokenizer, model.config.block_size, batch_size, 0, masking, model.config.nsp)
    device = model.wte.weight.device
    counts = torch.zeros(5, device=device)
    for batch in batches.sequential(batch_size, max_windows):
        counts += masked_counts(model, tuple(t.to(device) for t in batch))
    return masked_metrics(counts)


@torch.no_grad()
def pseudo_perplexity(model: MaskedLM, tokenizer: TextTokenizer, tokens: np.ndarray,
                      max_tokens: int = PSEUDO_PPL_TOKENS, batch_size: int = 64) -> dict[str, float]:
    """Pseudo-log-likelihood per token and pseudo-perplexity over the first ``max_tokens`` non-special
    tokens: each scored by a copy of its window where only it is ``[MASK]``."""
    specials = MLMSpecials.of(tokenizer)
    span, device = model.config.block_size - 2, model.wte.weight.device
    never = np.fromiter(specials.never_masked, dtype=np.int64)
    total, scored = 0.0, 0
    for start in range(0, len(tokens), span):
        ids = torch.tensor(frame(np.asarray(tokens[start : start + span]).tolist(), None, specials)[0], device=device)
        positions = torch.from_numpy(np.flatnonzero(~np.isin(ids.cpu().numpy(), never)))[: max_tokens - scored]
        for chunk in positions.split(batch_size):
            copies = ids.repeat(len(chunk), 1)  # (n, T), row j masks position chunk[j]
            rows = torch.arange(len(chunk), device=device)
            chunk = chunk.to(device)
            copies[rows, chunk] = specials.mask
            hidden = model.encode(copies)[rows, chunk]  # (n, C)
            total += F.cross_entropy(model.mlm_logits(hidden).float(), ids[chunk], reduction="sum").item()
            scored += len(chunk)
        if scored >= max_tokens:
            break
    if not scored:
        raise DataError("no tokens to score (the text is empty or only special tokens)")
    return {"pseudo_loss": total / scored, "pseudo_perplexity": math.exp(total / scored), "scored_tokens": scored}


def mlm_tokens(path: Path, tokenizer: TextTokenizer, data: str | None) -> tuple[np.ndarray, str]:
    """The run's own validation split, or a corpus/file encoded by its tokenizer."""
    if data is None:
        directory = run_data_dir(path, run_recipe(path).get("prepared_data"))
        return np.asarray(open_tokens(directory, "val")), f"{directory}/val.bin"
    texts = [t for t in (clean_text(d.text) for d in corpus_documents(data)) if t]
    if not texts:
        raise DataError(f"{data}: no text to evaluate on")
    return encode_stream(tokenizer, texts), data


def evaluate_mlm_run(path: Path, generator: MaskedLMGenerator, data: str | None = None,
                     max_tokens: int = PSEUDO_PPL_TOKENS) -> dict:
    """A masked-LM run's report: masked-token accuracy (its own masking rule) and pseudo-perplexity."""
    model, tokenizer = generator.model, generator.tokenizer
    tokens, source = mlm_tokens(path, tokenizer, data)
    masking = MaskingConfig(**run_recipe(path).get("masking", {}))
    return {"run": str(path), "data": source, **masked_accuracy(model, tokenizer, tokens, masking),
            **pseudo_perplexity(model, tokenizer, tokens, max_tokens)}
