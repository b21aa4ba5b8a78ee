"""The writing assistant: form checks, polishing, diffs, reranking and the modes, on a tiny random
character GPT that knows the characters of a few Tang poems; the titled corpus reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from luoxia.apps.write import (
    GENRES,
    Writer,
    WriteRequest,
    diff,
    form_check,
    genre_of,
    polish_prefix,
    trim_poem,
    write,
    writer_for,
)
from luoxia.config import build_config
from luoxia.data.corpora import corpus_documents
from luoxia.data.tokenizer import train_char_tokenizer
from luoxia.errors import ConfigError
from luoxia.generate.text import GPTGenerator
from tests.helpers import tiny_gpt

POEMS = [
    {"title": "静夜思", "paragraphs": ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"]},
    {"title": "春晓", "paragraphs": ["春眠不觉晓，处处闻啼鸟。", "夜来风雨声，花落知多少。"]},
]
GOOD = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
WUYAN = GENRES["五言绝句"]


@pytest.fixture(scope="module")
def writer() -> Writer:
    text = "".join("《" + p["title"] + "》\n" + "\n".join(p["paragraphs"]) for p in POEMS)
    tokenizer = train_char_tokenizer([text], special_tokens=["<|endoftext|>"])
    return writer_for(GPTGenerator(tiny_gpt(seed=1, vocab_size=tokenizer.vocab_size, block_size=64), tokenizer))


def test_quatrain_form_counts_han_characters_per_clause():
    assert form_check(GOOD, WUYAN)["ok"] and form_check(GOOD, WUYAN)["chars_per_line"] == [5, 5, 5, 5]
    bad = form_check("床前明月光光，疑是地上霜。", WUYAN)
    assert not bad["ok"] and bad["lines"] == 2 and bad["chars_per_line"] == [6, 5] and bad["score"] == 0.25
    assert form_check(GOOD, GENRES["七言绝句"])["ok"] is False
    assert trim_poem(GOOD + "\n春眠不觉晓，处处闻啼鸟。", WUYAN) == GOOD  # a 绝句 ends after 4 clauses


def test_prose_form_is_a_length_in_words_or_han_characters():
    prose = GENRES["prose"]
    assert form_check("word " * 30, prose) == {"ok": True, "length": 30, "want": [25, 90], "score": 1.0}
    assert form_check("word " * 10, prose)["score"] == 0.4


def test_polish_keeps_the_passing_start_and_drops_the_last_unit_when_a_keyword_is_missing():
    assert polish_prefix(GOOD, WUYAN, ["月"]) is None  # passes as it is
    assert polish_prefix("床前明月光，疑是地上霜霜。\n举头望明月，", WUYAN, []) == "床前明月光，"
    assert polish_prefix(GOOD, WUYAN, ["春"]) == "床前明月光，疑是地上霜。\n举头望明月，"


def test_the_diff_rebuilds_both_texts():
    ops = diff("床前明月光", "床前春月光好")
    assert "".join(o["a"] for o in ops) == "床前明月光" and "".join(o["b"] for o in ops) == "床前春月光好"
    assert {o["op"] for o in ops} == {"equal", "replace", "insert"}


def test_draft_with_the_boost_covers_the_keywords_and_ranks_by_the_score_parts(writer: Writer):
    request = WriteRequest(keywords=["春", "月"], title="静夜思", n=4, seed=3, boost=20.0)
    plain = write(writer, request.model_copy(update={"constraint": "none"}))
    boosted = write(writer, request)
    assert all(all(c.keywords.values()) for c in boosted.candidates)
    assert sum(all(c.keywords.values()) for c in plain.candidates) < 4
    totals = [c.scores["total"] for c in boosted.candidates]
    assert totals == sorted(totals, reverse=True) and set(boosted.candidates[0].scores) == {
        "coverage", "form", "likelihood", "total"}
    assert boosted.prompt == "《静夜思》\n" and write(writer, request).to_json() == boosted.to_json()  # seeded


def test_beam_covers_the_keywords(writer: Writer):
    result = write(writer, WriteRequest(keywords=["春", "月"], n=2, constraint="beam", boost=8.0))
    assert all(c.scores["coverage"] == 1.0 for c in result.candidates)


def test_continue_rewrite_and_polish_work_on_the_draft(writer: Writer):
    draft = "床前明月光，疑是地上霜霜。"
    base = WriteRequest(keywords=["春"], n=2, seed=1, draft=draft, boost=20.0)
    continued = write(writer, base.model_copy(update={"mode": "continue"}))
    assert all(c.text.startswith("床前明月光，疑是地上霜霜。") and c.diff is None for c in continued.candidates)
    polished = write(writer, base.model_copy(update={"mode": "polish"}))
    assert all(c.text.startswith("床前明月光，") and c.diff for c in polished.candidates)
    assert polished.candidates[0].diff[0] == {"op": "equal", "a": "床前明月光，", "b": "床前明月光，"}
    rewritten = write(writer, base.model_copy(update={"mode": "rewrite"}))
    assert all(c.diff and "春" in c.text for c in rewritten.candidates)
    unchanged = write(writer, base.model_copy(update={"mode": "polish", "draft": GOOD, "keywords": ["月"]}))
    assert [c.text for c in unchanged.candidates] == [GOOD] and unchanged.candidates[0].diff == [
        {"op": "equal", "a": GOOD, "b": GOOD}]


def test_bad_requests_are_one_line_errors(writer: Writer):
    with pytest.raises(ConfigError, match="unknown genre 'sonnet'; valid: 五言绝句"):
        genre_of("sonnet")
    with pytest.raises(ConfigError, match="works on a draft"):
        write(writer, WriteRequest(mode="polish"))
    with pytest.raises(ConfigError, match="unknown config key 'keyword'"):
        build_config(WriteRequest, {"keyword": ["春"]})
    with pytest.raises(ConfigError, match="mode"):
        build_config(WriteRequest, {"mode": "improve"})
    with pytest.raises(ConfigError, match="needs a local model"):
        write(Writer(writer.generator, writer.tokenizer), WriteRequest(keywords=["春"], constraint="beam"))


def test_with_titles_keeps_each_title_as_the_first_line(tmp_path: Path):
    corpus = tmp_path / "poems.jsonl"
    corpus.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in POEMS), encoding="utf-8")
    plain = [d.text for d in corpus_documents(str(corpus), field="paragraphs")]
    titled = [d.text for d in corpus_documents(str(corpus), field="paragraphs", with_titles=True)]
    assert plain[0] == GOOD and titled[0] == "《静夜思》\n" + GOOD


def test_prepare_with_titles_trains_on_the_titles(tmp_path: Path):
    from luoxia.data.prepare import DataConfig, prepare

    corpus = tmp_path / "poems.jsonl"
    corpus.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in POEMS * 3), encoding="utf-8")
    config = DataConfig(corpus=str(corpus), field="paragraphs", tokenizer="char", dedup=False, split="tail")
    plain = prepare(config, tmp_path / "plain")
    titled = prepare(config.model_copy(update={"with_titles": True}), tmp_path / "titled")
    titles = len("《静夜思》\n") + len("《春晓》\n")
    assert titled["counts"]["characters"] - plain["counts"]["characters"] == 3 * titles
    assert titled["vocab_size"] == plain["vocab_size"] + 3  # 《, 》 and 静, the one title character not in a poem


def test_every_genre_renders_its_template_with_title_keywords_and_draft():
    from luoxia.apps.write import render_prompt

    request = WriteRequest(title="春茶", keywords=["清香", "回甘"])
    prompts = {name: render_prompt(genre, request, "已写") for name, genre in GENRES.items()}
    assert prompts["五言绝句"] == prompts["七言绝句"] == "《春茶》\n已写"
    assert prompts["news"].endswith("标题：春茶\n关键词：清香、回甘\n正文：已写")
    assert prompts["ad"].endswith("产品：春茶\n卖点：清香、回甘\n文案：已写")
    assert prompts["prose"] == "春茶\n\n已写"
    assert genre_of("wuyan") is GENRES["五言绝句"]


def test_beam_may_end_only_once_the_form_is_reached():
    from luoxia.apps.write import form_reached

    poem, prose = form_reached(WUYAN, "床前明月光，"), form_reached(GENRES["prose"], "word " * 20)
    assert not poem("疑是地上霜。\n举头望明月，") and poem("疑是地上霜。\n举头望明月，低头思故乡。")
    assert not prose("and more") and prose("and five more words here")
