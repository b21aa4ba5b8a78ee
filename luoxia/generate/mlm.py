"""A masked LM from disk: fill-mask (the top fillers of each ``[MASK]`` in a text) and, through
`luoxia.generate.mask_predict`, fixed-length text behind the `TextGenerator` interface.

``luoxia.load("runs/mlm-pydoc").fill_mask("The [MASK] statement returns a value")`` →
``[[(" return", 0.62), …]]``: one list per ``[MASK]``, best first. A byte-level BPE token carries the
space before its word, so the space in front of each ``[MASK]`` is given to the mask (the filler
comes back with its leading space); a character tokenizer keeps the text as it is.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from luoxia.data.mlm import MASK_TOKEN, MLMSpecials
from luoxia.data.tokenizer import TextTokenizer
from luoxia.errors import ConfigError, DataError
from luoxia.generate.interface import GenerationConfig, GenerationResult, LogitsProcessor
from luoxia.generate.mask_predict import mask_predict
from luoxia.models.mlm import MaskedLM, MLMConfig
from luoxia.runs import load_run_module
from luoxia.runtime import resolve_device

MASK_PREDICT_ROUNDS = 10  # refinement rounds of mask-predict (Ghazvininejad et al. 2019 use 10)


def load_mlm(run_dir: str | Path, device: str = "auto") -> tuple[MaskedLM, TextTokenizer]:
    """The trained masked LM of a run directory (in eval mode) and its tokenizer."""
    model = load_run_module(run_dir, MaskedLM, MLMConfig)
    model.to(resolve_device(device)).eval()
    return model, TextTokenizer.load(run_dir)


def encode_masked(tokenizer: TextTokenizer, text: str, specials: MLMSpecials) -> list[int]:
    """``[CLS] text [SEP]`` with every literal ``[MASK]`` as the mask token; a one-line error when
    there is none. Byte-level BPE: the space before a ``[MASK]`` belongs to the masked word."""
    pieces = text.split(MASK_TOKEN)
    if len(pieces) == 1:
        raise DataError(f"no {MASK_TOKEN} in the text: write {MASK_TOKEN} where a token should be filled in, "
                        f"e.g. \"The {MASK_TOKEN} statement returns a value\"")
    ids = [specials.cls]
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if not last and not tokenizer.is_char_level and piece.endswith(" "):
            piece = piece[:-1]
        ids += tokenizer.encode(piece) if piece else []
        ids += [] if last else [specials.mask]
    return [*ids, specials.sep]


@torch.no_grad()
def fill_mask(model: MaskedLM, tokenizer: TextTokenizer, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``top_k`` most probable fillers of each ``[MASK]`` in ``text``, with their probabilities
    (special tokens are never proposed), one list per ``[MASK]`` in order."""
    if top_k < 1:
        raise ConfigError(f"top_k must be at least 1, got {top_k}")
    specials = MLMSpecials.of(tokenizer)
    ids = encode_masked(tokenizer, text, specials)
    if len(ids) > model.config.block_size:
        raise DataError(f"the text is {len(ids)} tokens with [CLS] and [SEP]; this model reads at most "
                        f"{model.config.block_size}")
    device = model.wte.weight.device
    x = torch.tensor([ids], device=device)  # (1, T)
    where = (x[0] == specials.mask).nonzero().squeeze(1)  # (M,)
    logits = model.mlm_logits(model.encode(x)[0, where]).float()  # (M, V)
    probs = logits.softmax(-1)
    probs[:, sorted(specials.never_masked)] = 0.0
    best = probs.topk(min(top_k, probs.size(-1)), dim=-1)
    return [[(tokenizer.decode([int(i)]), float(p)) for p, i in zip(ps.tolist(), ids_.tolist(), strict=True)]
            for ps, ids_ in zip(best.values, best.indices, strict=True)]


@torch.no_grad()
def masked_counts(model: MaskedLM, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """(summed masked-token NLL, masked tokens, correct top-1 guesses, NSP rows, correct NSP guesses)
    of one batch, as a float tensor (5,) so ranks and batches add up."""
    x, y, segments, *nsp = batch
    hidden = model.encode(x, segments)  # (B, T, C)
    chosen = y != -100
    logits = model.mlm_logits(hidden[chosen]).float()  # (N, V): only the predicted positions
    nll = F.cross_entropy(logits, y[chosen], reduction="sum")
    correct = (logits.argmax(-1) == y[chosen]).sum()
    zero = torch.zeros((), device=x.device)
    nsp_rows, nsp_correct = zero, zero
    if nsp and model.config.nsp:
        nsp_rows = torch.tensor(float(len(nsp[0])), device=x.device)
        nsp_correct = (model.nsp_logits(hidden).argmax(-1) == nsp[0]).sum().float()
    return torch.stack([nll, chosen.sum().float(), correct.float(), nsp_rows, nsp_correct])


def masked_metrics(counts: torch.Tensor) -> dict[str, float]:
    """Loss (nats per masked token), masked-token accuracy and, with NSP rows, NSP accuracy from summed counts."""
    nll, tokens, correct, nsp_rows, nsp_correct = counts.tolist()
    metrics: dict[str, float] = {"mlm_loss": nll / max(tokens, 1), "mlm_accuracy": correct / max(tokens, 1),
                                 "masked_tokens": int(tokens)}
    if nsp_rows:
        metrics["nsp_accuracy"] = nsp_correct / nsp_rows
    return metrics


class MaskedLMGenerator:
    """A masked LM as a `TextGenerator`: ``generate`` writes exactly ``max_new_tokens`` tokens after
    each prompt by mask-predict (``rounds`` rounds); ``fill_mask`` fills the ``[MASK]``s of a text.

    What a left-to-right decoder does and mask-predict cannot is refused, not ignored: beam search,
    logits processors (the watermark), stop strings, repetition penalties and chat templates."""

    def __init__(self, model: MaskedLM, tokenizer: TextTokenizer, name: str = "luoxia-mlm",
                 rounds: int = MASK_PREDICT_ROUNDS):
        self.model, self.tokenizer, self.name, self.rounds = model.eval(), tokenizer, name, rounds
        self.context_length = model.config.block_size

    def fill_mask(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        return fill_mask(self.model, self.tokenizer, text, top_k)

    def generate(self, prompts: Sequence[str], config: GenerationConfig | None = None,
                 logits_processors: Sequence[LogitsProcessor] = ()) -> list[GenerationResult]:
        config = config or GenerationConfig()
        refused = [what for what, asked in [
            ("beam search", config.num_beams > 1), ("logits processors (watermark)", bool(logits_processors)),
            ("stop strings", bool(config.stop)), ("repetition_penalty", config.repetition_penalty != 1.0),
            ("collapse_repeats", config.collapse_repeats is not None)] if asked]
        if refused:
            raise ConfigError(f"a masked LM writes a fixed number of tokens by mask-predict; it has no "
                              f"{', '.join(refused)}")
        return mask_predict(self.model, self.tokenizer, list(prompts), config, config.max_new_tokens, self.rounds)

    def stream(self, prompt: str, config: GenerationConfig | None = None,
               logits_processors: Sequence[LogitsProcessor] = ()) -> Generator[str, None, GenerationResult]:
        """The whole text at once: mask-predict decides every position together."""
        result = self.generate([prompt], config, logits_processors)[0]
        yield result.text
        return result

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        raise ConfigError("a masked LM has no chat template: give it a plain prompt")


def load_mlm_run(run_dir: Path, recipe: dict[str, Any], device: str = "auto",
                 compile: bool = False) -> MaskedLMGenerator:
    """A masked-LM pre-training run as a `MaskedLMGenerator` (``compile`` does not apply)."""
    model, tokenizer = load_mlm(run_dir, device)
    return MaskedLMGenerator(model, tokenizer, name=Path(run_dir).name)
