import math
from pathlib import Path

import numpy as np
import pytest
import torch

from luoxia.data.tokenizer import train_char_tokenizer
from luoxia.evaluate.diversity import distinct_n, diversity_report, repetition_rate, self_bleu
from luoxia.evaluate.lm import evaluate_run
from luoxia.evaluate.perplexity import perplexity_report
from luoxia.generate.text import GPTGenerator
from tests.helpers import tiny_gpt


def test_uniform_model_has_perplexity_equal_to_vocab_size():
    tokenizer = train_char_tokenizer(["abcdefgh"])
    model = tiny_gpt(vocab_size=8)
    with torch.no_grad():
        model.transformer.wte.weight.zero_()  # tied head: every logit is 0, the distribution uniform
    tokens = np.array(tokenizer.encode("abcdefgh" * 20), dtype=np.uint16)  # 160 tokens: 5 windows of 32
    report = perplexity_report(GPTGenerator(model, tokenizer), tokens, batch_size=2)
    assert report["tokens"] == 159
    assert report["perplexity"] == pytest.approx(8.0, rel=1e-5)
    assert report["bits_per_token"] == pytest.approx(3.0, rel=1e-5)
    assert report["bits_per_char"] == pytest.approx(3.0, rel=1e-5)  # one character per token


def test_distinct_n():
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)


def test_repetition_rate():
    assert repetition_rate(["a b c d e f g"], 2) == 0.0
    assert repetition_rate(["a b a b a b"], 2) == pytest.approx(1 - 2 / 5)


def test_self_bleu_is_high_for_copies_low_for_different_texts():
    same = ["the cat sat on the mat today"] * 3
    different = ["the cat sat on the mat", "rivers flow to distant seas", "numbers dance in quiet rooms"]
    assert self_bleu(same) == pytest.approx(100.0)
    assert self_bleu(different) < 20.0
    assert self_bleu(["床前明月光疑是地上霜"] * 2) == pytest.approx(100.0)


def test_diversity_report_keys():
    report = diversity_report(["a b c", "d e f"])
    assert set(report) == {"samples", "distinct_1", "distinct_2", "distinct_3", "self_bleu", "repetition_rate_4"}


def test_evaluate_run_on_own_split_and_on_a_file(trained_run: Path, tmp_path: Path):
    report = evaluate_run(trained_run, samples=4, device="cpu")
    assert report["data"].endswith("val.bin")
    assert 1.0 < report["perplexity"] < 40.0
    assert math.isclose(report["loss"], math.log(report["perplexity"]))
    assert report["diversity"]["samples"] == 4
    other = tmp_path / "other.txt"
    other.write_text("To be or not to be, that is the question.\n" * 5)
    assert evaluate_run(trained_run, data=str(other), device="cpu")["tokens"] > 100


def test_a_hugging_face_export_measures_the_same(trained_run: Path, tmp_path: Path):
    from luoxia.errors import DataError
    from luoxia.export import export_run

    export_run(trained_run, tmp_path / "hf")
    other = tmp_path / "other.txt"
    other.write_text("Whether 'tis nobler in the mind to suffer\n" * 5)
    ours, theirs = (evaluate_run(path, data=str(other), device="cpu") for path in (trained_run, tmp_path / "hf"))
    assert theirs["tokens"] == ours["tokens"] and math.isclose(theirs["loss"], ours["loss"], rel_tol=1e-5)
    with pytest.raises(DataError, match="pass --data"):
        evaluate_run(tmp_path / "hf", device="cpu")
