"""The masked language model's data: its special tokens, sentence-pair framing, and BERT's masking.

A masked-LM tokenizer is an ordinary char or BPE tokenizer (`luoxia.data.tokenizer`) trained with
``[PAD] [CLS] [SEP] [MASK]`` as its first ids 0–3 (then ``<|endoftext|>`` and ``<unk>`` as for the
GPT). An input is ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with segment ids 0 for ``[CLS] a
[SEP]`` and 1 for ``b [SEP]``, as in BERT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from luoxia.data.tokenizer import TextTokenizer
from luoxia.errors import DataError

PAD_TOKEN = "[PAD]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
MLM_SPECIALS = (PAD_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)  # their ids are 0, 1, 2, 3


@dataclass(frozen=True)
class MLMSpecials:
    """The ids of a masked-LM tokenizer's special tokens, and every id that is never masked."""

    pad: int
    cls: int
    sep: int
    mask: int
    never_masked: frozenset[int]  # all the tokenizer's special tokens (end-of-text and <unk> too)

    @classmethod
    def of(cls, tokenizer: TextTokenizer) -> MLMSpecials:
        """The specials of ``tokenizer``; a clear error when it was trained without them."""
        ids = {token: tokenizer.backend.token_to_id(token) for token in MLM_SPECIALS}
        missing = [token for token, i in ids.items() if i is None]
        if missing:
            raise DataError(f"this tokenizer has no {' '.join(missing)}: it was not trained for a masked LM "
                            "(prepare the data through a `task: mlm` recipe)")
        added = tokenizer.backend.get_added_tokens_decoder()
        never = frozenset(i for i, token in added.items() if token.special) | frozenset(ids.values())  # type: ignore[arg-type]
        return cls(ids[PAD_TOKEN], ids[CLS_TOKEN], ids[SEP_TOKEN], ids[MASK_TOKEN], never)  # type: ignore[arg-type]


def frame(ids_a: Sequence[int], ids_b: Sequence[int] | None, specials: MLMSpecials) -> tuple[list[int], list[int]]:
    """``[CLS] a [SEP]`` (segments all 0) or ``[CLS] a [SEP] b [SEP]`` (0 up to the first
    ``[SEP]``, 1 after): the input ids and their segment ids, of equal length."""
    ids = [specials.cls, *ids_a, specials.sep]
    segments = [0] * len(ids)
    if ids_b is not None:
        ids += [*ids_b, specials.sep]
        segments += [1] * (len(ids_b) + 1)
    return ids, segments
