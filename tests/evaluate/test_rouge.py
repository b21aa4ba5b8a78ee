"""ROUGE-1/2/L F1 against all references, on words (English) and characters (Chinese), checked
against counts done by hand."""

from __future__ import annotations

import pytest

from luoxia.errors import DataError
from luoxia.evaluate.rouge import MixedTokenizer, rouge


def test_english_matches_hand_counts_and_takes_the_best_reference():
    # "the cat sat on the mat" vs "the cat is on the mat": 5 of 6 unigrams (P = R = 5/6), 3 of 5
    # bigrams (the cat, on the, the mat), LCS "the cat on the mat" = 5
    scores = rouge(["the cat sat on the mat"], [["a dog barked", "the cat is on the mat"]])
    # rouge-score divides in floating point: compare with a tolerance far below any rounding we report
    assert scores == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6}, abs=1e-9)
    assert rouge(["the cat sat on the mat"], [["a dog barked"]])["rouge1"] == 0.0


def test_chinese_is_scored_on_characters():
    # 飞行器姿态控制 (7) vs 飞行器的姿态 (6): 5 shared characters → F = 2·(5/7)(5/6)/(5/7+5/6) = 10/13;
    # bigrams 飞行 行器 姿态 shared, 3 of 6 and 3 of 5 → F = 6/11; LCS 飞行器姿态 = 5 → 10/13
    scores = rouge(["飞行器姿态控制"], [["飞行器的姿态"]])
    assert scores == pytest.approx({"rouge1": 10 / 13, "rouge2": 6 / 11, "rougeL": 10 / 13}, abs=1e-9)
    assert MixedTokenizer().tokenize("我们用 Models 3.5") == ["我", "们", "用", "model", "3", "5"]


def test_the_mean_over_summaries_and_bad_input():
    scores = rouge(["the cat", "no match"], [["the cat"], ["something else"]])
    assert scores["rouge1"] == pytest.approx(0.5, abs=1e-9)  # (1 + 0) / 2
    with pytest.raises(DataError, match="reference lists"):
        rouge(["a"], [])
    with pytest.raises(DataError, match="at least one reference"):
        rouge(["a"], [[]])
