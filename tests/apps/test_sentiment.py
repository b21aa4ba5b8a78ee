"""The support assistant's mood tagger: labels and probabilities in English and Chinese, on
sentences that are not among its prototypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from luoxia.apps.sentiment import LABELS, PROTOTYPES, SentimentTagger, read_prototypes
from luoxia.errors import ConfigError


@pytest.fixture(scope="module")
def tagger() -> SentimentTagger:
    return SentimentTagger()


def test_clear_moods_in_english_and_chinese(tagger: SentimentTagger):
    texts = ["Thanks a lot, you people are fantastic!", "This is the worst service ever, I am so angry.",
             "How can I track my parcel?", "非常感谢，你们太棒了！", "太糟糕了，我非常生气。", "请问怎么查物流？"]
    labels = tagger.label(texts)
    assert [label for label, _ in labels] == ["positive", "negative", "neutral"] * 2
    assert all(1 / 3 < score <= 1 for _, score in labels)


def test_probabilities_and_edge_cases(tagger: SentimentTagger):
    probabilities = tagger.probabilities(["ok", "退款还没到"])
    assert probabilities.shape == (2, len(LABELS))
    # predict_proba's rows are a softmax: they sum to one up to float rounding
    torch.testing.assert_close(torch.from_numpy(probabilities.sum(axis=1)).double(), torch.ones(2, dtype=torch.float64))
    assert tagger.label([]) == [] and tagger.label(["  "]) == [("neutral", 1.0)]
    messages = [{"role": "user", "content": "Thank you so much!"}, {"role": "assistant", "content": "Glad to help."},
                {"role": "user", "content": "我的订单在哪里？"}]
    assert [label for label, _ in tagger.turns(messages)] == ["positive", "neutral"]


def test_prototypes_are_balanced_and_checked(tmp_path):
    texts, labels = read_prototypes(PROTOTYPES)
    counts = {label: labels.count(label) for label in LABELS}
    assert len(set(counts.values())) == 1 and len(texts) == len(set(texts))
    chinese = np.array([any("\u4e00" <= c <= "\u9fff" for c in text) for text in texts])
    assert chinese.sum() * 2 == len(texts)  # half English, half Chinese
    bad = tmp_path / "bad.yaml"
    bad.write_text("negative: [a]\npositive: [b]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="negative, neutral, positive"):
        read_prototypes(bad)
