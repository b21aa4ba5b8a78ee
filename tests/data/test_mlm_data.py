"""The masked LM's data: specials first in char and BPE vocabularies, framing, masking, NSP pairs."""

from __future__ import annotations

import pytest

from luoxia.data.mlm import MLM_SPECIALS, MLMSpecials, frame
from luoxia.data.tokenizer import EOS_TOKEN, train_tokenizer
from luoxia.errors import DataError


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_mlm_specials_take_the_first_ids_and_survive_encoding(kind: str):
    tokenizer = train_tokenizer(kind, ["hello world, hello there. " * 20], vocab_size=300, specials=MLM_SPECIALS)
    assert [tokenizer.backend.token_to_id(t) for t in (*MLM_SPECIALS, EOS_TOKEN)] == [0, 1, 2, 3, 4]
    specials = MLMSpecials.of(tokenizer)
    assert 3 in tokenizer.encode("hello [MASK] world")  # the literal [MASK] in text is the token
    assert specials.never_masked == frozenset({0, 1, 2, 3, 4})


def test_gpt_tokenizers_are_unchanged_and_lack_the_specials():
    tokenizer = train_tokenizer("char", ["ab"])
    assert tokenizer.backend.get_vocab(with_added_tokens=True) == {EOS_TOKEN: 0, "a": 1, "b": 2}
    with pytest.raises(DataError, match=r"no \[PAD\] \[CLS\] \[SEP\] \[MASK\]"):
        MLMSpecials.of(tokenizer)


def test_frame_single_and_pair():
    specials = MLMSpecials(pad=0, cls=1, sep=2, mask=3, never_masked=frozenset({0, 1, 2, 3}))
    assert frame([7, 8], None, specials) == ([1, 7, 8, 2], [0, 0, 0, 0])
    assert frame([7, 8], [9], specials) == ([1, 7, 8, 2, 9, 2], [0, 0, 0, 0, 1, 1])
