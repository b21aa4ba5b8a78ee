"""Mask-predict (Ghazvininejad et al. 2019): text from a masked language model, all positions at once.

The prompt is a prefix of the same segment — ``[CLS] prompt [MASK]×length [SEP]`` — because the
masked LM is pre-trained on contiguous text, so the masks continue the prompt rather than answer it
as a second sentence. Round 1 fills every mask; each later round ``r`` (of ``R``) re-masks the
``length·(R−r)/R`` least confident of the generated tokens and fills them again. Tokens are drawn
with the shared `sample_rows` (temperature, top-k, top-p; 0 = greedy), every row from its own
generator seeded ``seed + i`` (`row_generator(row_seed(seed, i))`), so the same seed gives the same
text whatever else is in the batch. Repetition penalty, logits processors and stop strings do not
apply: the output is exactly ``length`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

from luoxia.data.mlm import CLS_TOKEN, MASK_TOKEN, MLM_SPECIALS, PAD_TOKEN, SEP_TOKEN
from luoxia.data.tokenizer import EOS_TOKEN, UNK_TOKEN
from luoxia.errors import ConfigError
from luoxia.generate.decode import row_generator, row_seed
from luoxia.generate.interface import GenerationConfig, GenerationResult
from luoxia.generate.sampling import sample_rows
from luoxia.models.mlm import MaskedLM

CLS, SEP, MASK, PAD = CLS_TOKEN, SEP_TOKEN, MASK_TOKEN, PAD_TOKEN
NEVER_GENERATED = (*MLM_SPECIALS, EOS_TOKEN, UNK_TOKEN)  # special tokens are never filled in


class MaskTokenizer(Protocol):
    """What mask-predict needs of a tokenizer (`TextTokenizer` has it)."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...

    def token_to_id(self, token: str) -> int | None: ...


def special_id(tokenizer: MaskTokenizer, token: str) -> int:
    """The id of a special token the masked LM needs, or a one-line error naming it."""
    found = tokenizer.token_to_id(token)
    if found is None:
        raise ConfigError(f"the tokenizer has no {token} token: it is not a masked-LM tokenizer")
    return found


def banned_ids(tokenizer: MaskTokenizer, vocab_size: int) -> list[int]:
    """Ids of the special tokens present in the tokenizer, which mask-predict never fills in."""
    ids = (tokenizer.token_to_id(t) for t in NEVER_GENERATED)
    return sorted({i for i in ids if i is not None and i < vocab_size})


def frame_prompts(tokenizer: MaskTokenizer, prompts: Sequence[str], length: int, block_size: int
                  ) -> tuple[list[list[int]], list[int]]:
    """Each prompt as ``[CLS] prompt [MASK]×length [SEP]`` (its prompt cut on the left to fit), and
    where each row's masks start."""
    if length + 2 > block_size:
        raise ConfigError(f"length {length} plus [CLS] and [SEP] exceeds the model's block_size {block_size}")
    cls_id, sep_id, mask_id = (special_id(tokenizer, t) for t in (CLS, SEP, MASK))
    room = block_size - length - 2
    rows, starts = [], []
    for prompt in prompts:
        ids = tokenizer.encode(prompt)[-room:] if room else []
        rows.append([cls_id, *ids, *([mask_id] * length), sep_id])
        starts.append(1 + len(ids))
    return rows, starts


def right_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids padded on the right and the (B, T) mask of real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = True
    return ids.to(device), mask.to(device)


def remask_count(length: int, round_index: int, rounds: int) -> int:
    """How many tokens to re-mask after round ``round_index`` (0-based): length·(R−r)/R with r = round_index + 1."""
    return length * (rounds - round_index - 1) // rounds


def fill(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (M,) for the masked positions' logits (M, V), each by one draw from the row's
    generator, and the model's probability of each (its confidence)."""
    m, vocab, device = logits.size(0), logits.size(-1), logits.device
    temperature = torch.full((m,), config.temperature, device=device)
    top_k = torch.full((m,), config.top_k or vocab, dtype=torch.long, device=device)
    top_p = torch.full((m,), config.top_p or 1.0, device=device)
    uniform = torch.rand(m, generator=generator, device=generator.device).to(device)
    tokens = sample_rows(logits, temperature, top_k, top_p, uniform)  # (M,)
    confidence = F.softmax(logits, dim=-1).gather(1, tokens[:, None]).squeeze(1)  # (M,)
    return tokens, confidence


@torch.no_grad()
def mask_predict(model: MaskedLM, tokenizer: MaskTokenizer, prompts: Sequence[str], config: GenerationConfig,
                 length: int, rounds: int) -> list[GenerationResult]:
    """``length`` new tokens after each prompt, by ``rounds`` rounds of fill-in and re-masking."""
    if length < 1 or rounds < 1:
        raise ConfigError(f"mask-predict needs length ≥ 1 and rounds ≥ 1, got length {length}, rounds {rounds}")
    if not prompts:
        return []
    device = model.wte.weight.device
    rows, starts = frame_prompts(tokenizer, prompts, length, model.config.block_size)
    pad_id = tokenizer.token_to_id(PAD)
    ids, real = right_pad(rows, pad_id if pad_id is not None else 0, device)  # (B, T)
    mask_id = special_id(tokenizer, MASK)
    banned = torch.tensor(banned_ids(tokenizer, model.config.vocab_size or 0), dtype=torch.long, device=device)
    generators = [row_generator(row_seed(config.seed, i), "cpu") for i in range(len(prompts))]
    span = torch.arange(length, device=device)
    targets = torch.tensor(starts, device=device)[:, None] + span[None, :]  # (B, L) positions of the masks
    confidence = torch.zeros(len(prompts), length, device=device)  # (B, L)
    was_training = model.training
    model.eval()
    try:
        for r in range(rounds):
            logits = model.mlm_logits(model.encode(ids, padding_mask=real)).float()  # (B, T, V)
            logits[..., banned] = float("-inf")
            for i, generator in enumerate(generators):
                masked = (ids[i, targets[i]] == mask_id).nonzero().squeeze(1)  # (M,) indices into the span
                tokens, probs = fill(logits[i, targets[i, masked]], config, generator)
                ids[i, targets[i, masked]] = tokens
                confidence[i, masked] = probs
            n = remask_count(length, r, rounds)
            if n == 0:
                break
            lowest = confidence.topk(n, dim=-1, largest=False).indices  # (B, n)
            ids.scatter_(1, targets.gather(1, lowest), mask_id)
    finally:
        model.train(was_training)
    return [result(tokenizer, ids[i, targets[i]], confidence[i], starts[i] - 1) for i in range(len(prompts))]


def result(tokenizer: MaskTokenizer, tokens: torch.Tensor, confidence: torch.Tensor,
           prompt_tokens: int) -> GenerationResult:
    """A row's `GenerationResult`: its ``length`` tokens (L,), their text and log-probabilities."""
    ids = [int(t) for t in tokens.tolist()]
    logprobs = [float(p) for p in confidence.clamp(min=1e-30).log().tolist()]
    return GenerationResult(tokenizer.decode(ids), ids, "length", prompt_tokens, logprobs)
