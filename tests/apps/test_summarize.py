"""Summaries: sentence splitting (EN/ZH, abbreviations, decimals, linear time), lead-k and TextRank,
length targets and the length head, data preparation, the Python API and the CLI."""

from __future__ import annotations

import io
import json
import time

import pytest

from luoxia import cli
from luoxia.apps.abstractive import (
    LENGTH_HEAD_FILE,
    LengthHead,
    bucket,
    fit_length_head,
    is_chinese,
    length_prompt,
    prepare,
    target_length,
    text_length,
)
from luoxia.apps.summarize import extract, split_sentences, summarize, summarize_extractive
from luoxia.errors import ConfigError, DataError
from tests.echo import EchoGenerator

# The third sentence shares words with every other one: TextRank's centre.
CENTRAL = ("Solar panels turn light into power. Wind turbines turn moving air into power. "
           "Solar panels and wind turbines both turn light and moving air into cheap clean power for homes. "
           "Homes use cheap clean power. The cat slept.")


def test_splitting_keeps_abbreviations_initials_and_decimals():
    text = "J.P. Morgan cut its forecast. Shares fell 3.5% on Monday. See e.g. The Times. Dr. Smith left."
    assert split_sentences(text) == ["J.P. Morgan cut its forecast.", "Shares fell 3.5% on Monday.",
                                     "See e.g. The Times.", "Dr. Smith left."]
    assert split_sentences('He said "Hi." Then left.\nA new line') == ['He said "Hi."', "Then left.", "A new line"]


def test_splitting_chinese():
    assert split_sentences("今天天气很好。我们去公园吧！好吗？“好的。”他说。") == [
        "今天天气很好。", "我们去公园吧！", "好吗？", "“好的。”他说。"]
    # ASCII full stops between Chinese sentences (CSL's abstracts); a decimal stays whole
    assert split_sentences("建立了模型.仿真结果表明,误差为3.5%.") == ["建立了模型.", "仿真结果表明,误差为3.5%."]


def test_splitting_is_linear_time():
    # Steps of the same text ×10 take about ×10: a backtracking pattern would grow much faster.
    # Counted, not timed against a budget: the ratio of two runs on the same machine.
    def seconds(n: int) -> float:
        text = ("e.g. J.P. 3.5 " * n) + "。" * n + ". " * n
        start = time.perf_counter()
        split_sentences(text)
        return max(time.perf_counter() - start, 0.05)  # clock granularity, as tests/test_linear_time.py

    assert seconds(20_000) < 40 * seconds(2_000)


def test_textrank_picks_the_central_sentence_and_lead_the_first():
    sentences = split_sentences(CENTRAL)
    assert extract(sentences, 1, "textrank") == [2]
    assert extract(sentences, 2, "lead") == [0, 1]
    assert summarize_extractive(CENTRAL, 1, "lead") == "Solar panels turn light into power."
    assert 4 not in extract(sentences, 3, "textrank")  # the cat is off topic


def test_chinese_textrank_joins_without_spaces():
    text = ("太阳能板把光变成电。风力机把风变成电。太阳能板和风力机都把光和风变成便宜的电给家庭用。"
            "家庭用便宜的电。猫睡了。")
    assert summarize_extractive(text, 1, "textrank") == "太阳能板和风力机都把光和风变成便宜的电给家庭用。"
    assert summarize_extractive(text, 2, "lead") == "太阳能板把光变成电。风力机把风变成电。"


def test_empty_and_one_sentence_inputs():
    assert summarize("", "textrank").text == "" and summarize("  \n", "lead").indices == []
    one = summarize("Only one sentence here.", "textrank", k=3)
    assert one.text == "Only one sentence here." and one.indices == [0]


def test_bad_method_k_length_and_ratio_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown summarisation method 'bogus'"):
        summarize(CENTRAL, "bogus")
    with pytest.raises(ConfigError, match="unknown extractive method"):
        extract(["a"], 1, "model")
    for call in (lambda: summarize(CENTRAL, k=0), lambda: extract(["a"], 0)):
        with pytest.raises(ConfigError, match="keep at least one"):
            call()
    with pytest.raises(ConfigError, match="not both"):
        summarize(CENTRAL, length=5, ratio=0.5)
    with pytest.raises(ConfigError, match="ratio is 2"):
        summarize(CENTRAL, ratio=2)
    with pytest.raises(ConfigError, match="needs a text model"):
        summarize(CENTRAL, "model")


def test_lengths_count_words_and_chinese_characters():
    assert text_length("Two words") == 2 and text_length("两个字 and one") == 5
    assert is_chinese("我们提出了一种方法 BERT") and not is_chinese("We propose BERT")
    assert bucket(1) == 5 and bucket(13) == 15 and bucket(17.4) == 15


def test_a_target_length_keeps_sentences_until_nearest_it():
    summary = summarize(CENTRAL, "lead", length=12)
    assert summary.indices == [0, 1] and summary.length == 13 and summary.target_source == "length"
    by_ratio = summarize(CENTRAL, "textrank", ratio=0.3)
    assert by_ratio.target_length == round(0.3 * text_length(CENTRAL)) and by_ratio.indices == [2]


def test_the_model_gets_the_length_token_and_the_head_predicts_it(tmp_path):
    # EchoGenerator returns its prompt; a summary is its first non-empty line: the length token
    asked = summarize(CENTRAL, "model", length=12, writer=EchoGenerator())
    assert asked.text == "summarize <len=10>:" and asked.target_source == "length"
    assert summarize("\n\nFirst line.\nSecond.", "model", length=3, writer=EchoGenerator()).text == (
        "summarize <len=5>:")
    documents = ["word " * n for n in (10, 20, 40, 80, 160)]
    summaries = ["w " * max(1, n // 10) for n in (10, 20, 40, 80, 160)]
    head = fit_length_head(documents, summaries)
    small, large = head.predict(["word " * 15, "word " * 150])
    assert small < large  # longer inputs, longer summaries
    loaded = LengthHead.load(head.save(tmp_path / LENGTH_HEAD_FILE))
    assert loaded.predict(["word " * 15]) == [small]
    assert target_length("word " * 15, head=loaded) == (small, "head")
    assert summarize("word " * 15, "model", writer=EchoGenerator(), head=loaded).target_length == small
    with pytest.raises(ConfigError, match="no length head"):
        LengthHead.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a length head"):
        LengthHead.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="two"):
        fit_length_head(["a"], ["b"])


def test_prepare_writes_chat_jsonl_and_never_reads_test(tmp_path):
    data = tmp_path / "scitldr"
    data.mkdir()
    record = {"source": ["We propose a method.", "It works well."], "target": ["A method that works."]}
    for split in ("train", "dev"):
        (data / f"{split}.jsonl").write_text("\n".join(json.dumps(record) for _ in range(3)) + "\n")
    (data / "test.jsonl").write_text("not json\n")  # reading it would fail
    counts = prepare(tmp_path / "out", "en", root=str(data))
    assert counts == {"train": 3, "dev": 3}
    first = json.loads((tmp_path / "out" / "train.jsonl").read_text().splitlines()[0])
    assert first["messages"][0]["content"] == length_prompt("We propose a method. It works well.", 4)
    assert first["messages"][1] == {"role": "assistant", "content": "A method that works."}
    assert (tmp_path / "out" / LENGTH_HEAD_FILE).is_file() and (tmp_path / "out" / "pretrain.txt").is_file()
    zh = tmp_path / "csl"
    zh.mkdir()
    (zh / "dev.tsv").write_text("".join(f"to title\t摘要第{i}句。又一句。\t标题{i}\n" for i in range(10)))
    assert prepare(tmp_path / "zh", "zh", root=str(zh)) == {"train": 8, "dev": 2}  # 80 % of dev trains
    with pytest.raises(DataError, match="no such file"):
        prepare(tmp_path / "none", "en", root=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="unknown language"):
        prepare(tmp_path / "x", "fr")


def test_cli_summarizes_stdin_and_a_file(tmp_path, monkeypatch, capsys):
    doc = tmp_path / "doc.txt"
    doc.write_text(CENTRAL, encoding="utf-8")

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        monkeypatch.setattr("sys.argv", ["luoxia", "summarize", *args])
        code = 0
        try:
            cli.main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = run("--input", str(doc), "--json")
    body = json.loads(out)
    assert code == 0 and body["indices"] == [2] and body["method"] == "textrank"
    code, out, _ = run("--method", "lead", "--k", "2", stdin=CENTRAL)
    assert code == 0 and out.strip() == "Solar panels turn light into power. Wind turbines turn moving air into power."
    code, _, err = run("--method", "bogus", stdin=CENTRAL)
    assert code != 0 and "unknown summarisation method" in err
    code, _, err = run("--method", "model", stdin=CENTRAL)
    assert code != 0 and "--model" in err
    code, _, err = run("--input", str(tmp_path / "missing.txt"))
    assert code != 0 and "no such file" in err
