"""The masked LM's data: specials first in char and BPE vocabularies, framing, masking, NSP pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from luoxia.data.mlm import (
    MLM_SPECIALS,
    MaskingConfig,
    MLMBatches,
    MLMSpecials,
    frame,
    mask_tokens,
    token_bytes,
    word_starts,
)
from luoxia.data.tokenizer import EOS_TOKEN, train_tokenizer
from luoxia.errors import DataError
from tests.helpers import TEXT


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


def _specials(vocab_size: int) -> tuple[MLMSpecials, np.ndarray]:
    specials = MLMSpecials(pad=0, cls=1, sep=2, mask=3, never_masked=frozenset({0, 1, 2, 3, 4}))
    return specials, np.arange(5, vocab_size)


def test_masking_rule_proportions_over_many_draws():
    """15% chosen (rounded, per sequence); of those 80% [MASK], 10% random, 10% unchanged. Tolerances:
    5 standard errors of a binomial share over the draws, so a correct rule fails ~1 in 10^6 runs."""
    specials, random_ids = _specials(10_000)  # a random pick equals the original 1 time in 10^4: negligible
    rng, config = np.random.default_rng(0), MaskingConfig()
    shown = {"mask": 0, "random": 0, "same": 0}
    chosen = candidates = 0
    for _ in range(400):
        ids = rng.integers(5, 10_000, 100)
        ids[[0, 50, 99]] = [specials.cls, 4, specials.sep]  # specials inside a row are never chosen
        maskable = ~np.isin(ids, list(specials.never_masked))
        inputs, targets = mask_tokens(ids, maskable, None, rng, config, specials.mask, random_ids)
        picked = targets != -100
        assert not picked[~maskable].any() and (targets[picked] == ids[picked]).all()
        assert (inputs[~picked] == ids[~picked]).all()
        chosen, candidates = chosen + picked.sum(), candidates + maskable.sum()
        shown["mask"] += (inputs[picked] == specials.mask).sum()
        shown["same"] += (inputs[picked] == ids[picked]).sum()
        shown["random"] += ((inputs[picked] != ids[picked]) & (inputs[picked] != specials.mask)).sum()
    assert chosen == 400 * round(0.15 * 97)  # exactly round(15% of the 97 candidates) per row
    for kind, share in {"mask": 0.8, "random": 0.1, "same": 0.1}.items():
        tolerance = 5 * math.sqrt(share * (1 - share) / chosen)
        assert abs(shown[kind] / chosen - share) < tolerance, (kind, shown[kind] / chosen)


def test_random_replacements_and_masks_never_produce_or_touch_specials():
    specials, random_ids = _specials(12)
    rng = np.random.default_rng(1)
    for _ in range(200):
        ids = np.array([1, 5, 6, 4, 7, 8, 9, 10, 11, 2])
        maskable = ~np.isin(ids, list(specials.never_masked))
        inputs, targets = mask_tokens(ids, maskable, None, rng, MaskingConfig(mask_prob=0.5), 3, random_ids)
        assert (inputs[~maskable] == ids[~maskable]).all() and (targets[~maskable] == -100).all()
        assert not np.isin(inputs[maskable], [0, 1, 2, 4]).any()  # only [MASK] or ordinary tokens appear


@pytest.mark.parametrize("kind, text, words", [
    ("bpe", "The return statement returns a value.", ["The", " return", " statement", " returns", " a", " value", "."]),
    ("char", "床前明月光，疑是地上霜。", ["床前", "明月光", "，", "疑是", "地上", "霜", "。"]),  # jieba's words
])
def test_whole_word_masking_masks_whole_words(kind: str, text: str, words: list[str]):
    tokenizer = train_tokenizer(kind, [text * 30], vocab_size=300, specials=MLM_SPECIALS)
    ids = tokenizer.encode(text)
    starts = word_starts(ids, token_bytes(tokenizer))
    groups = np.cumsum(starts) - 1
    decoded = ["".join(tokenizer.decode([i]) for i, g in zip(ids, groups, strict=True) if g == n)
               for n in range(groups[-1] + 1)]
    assert decoded == words
    specials, random_ids = MLMSpecials.of(tokenizer), np.arange(5, tokenizer.vocab_size)
    rng = np.random.default_rng(0)
    for _ in range(50):  # every chosen word is chosen whole
        targets = mask_tokens(np.asarray(ids), np.ones(len(ids), bool), starts, rng,
                              MaskingConfig(mask_prob=0.3, whole_word=True), specials.mask, random_ids)[1]
        picked = targets != -100
        for n in range(groups[-1] + 1):
            assert len(set(picked[groups == n])) == 1


def _stream_batches(nsp: bool, **options) -> MLMBatches:
    tokenizer = train_tokenizer("char", [TEXT], specials=MLM_SPECIALS)
    tokens = np.asarray(tokenizer.encode(TEXT * 5))
    return MLMBatches(tokens, tokenizer, 24, options.pop("batch_size", 8), 7, MaskingConfig(), nsp, **options)


def test_nsp_pairs_are_balanced_framed_and_true_continuations():
    """Half the second segments are random: over 2000 rows the share is within 5 standard errors of 1/2."""
    batches = _stream_batches(nsp=True, batch_size=100)
    labels = torch.cat([batches.batch(step)[3] for step in range(20)])
    assert abs(labels.float().mean().item() - 0.5) < 5 * math.sqrt(0.25 / len(labels))
    x, y, segments, nsp = batches.batch(0)
    restored = torch.where(y != -100, y, x)  # the unmasked text
    for row, seg, label in zip(restored.tolist(), segments.tolist(), nsp.tolist(), strict=True):
        assert row[0] == 1 and row[-1] == 2 and row.count(2) == 2 and len(row) == 24
        cut = row.index(2)
        assert seg == [0] * (cut + 1) + [1] * (23 - cut)
        if label == 0:  # is-next: a and b are one contiguous span of the stream
            joined = row[1:cut] + row[cut + 1 : -1]
            assert any(batches.tokens[s : s + len(joined)].tolist() == joined for s in range(len(batches.tokens)))


def test_batches_are_a_pure_function_of_seed_step_micro_and_row():
    one = _stream_batches(nsp=False)
    again = _stream_batches(nsp=False)
    assert all(torch.equal(a, b) for a, b in zip(one.batch(3, 1), again.batch(3, 1), strict=True))
    assert not torch.equal(one.batch(3, 1)[0], one.batch(3, 0)[0])
    # two ranks of 4 rows read exactly the 8 rows of one process
    halves = [_stream_batches(nsp=False, batch_size=4, rank=r, world_size=2).batch(3, 1) for r in (0, 1)]
    assert all(torch.equal(torch.cat([h[i] for h in halves]), one.batch(3, 1)[i]) for i in range(3))
