"""load_documents: paragraphs of text files, JSONL and CSV records, and file:line errors for bad ones."""

from __future__ import annotations

import json

import pytest

from luoxia.errors import DataError
from luoxia.retrieval.documents import load_documents


def test_text_file_gives_one_document_per_paragraph(tmp_path):
    (tmp_path / "faq.txt").write_text("First line\nstill first.\n\n\n\nSecond.\n\n  \n\n床前明月光\n", encoding="utf-8")
    docs = load_documents(tmp_path / "faq.txt")
    assert [(d.id, d.text, d.meta["source"]) for d in docs] == [
        ("faq.txt#1", "First line\nstill first.", "faq.txt:1"), ("faq.txt#2", "Second.", "faq.txt:6"),
        ("faq.txt#3", "床前明月光", "faq.txt:10")]


def test_jsonl_and_csv_records_with_ids_and_meta(tmp_path):
    rows = [{"qid": 7, "question": "Where is my order?", "answer": "Ask for the number."},
            {"qid": "b", "question": ["两行", "文字"], "source": "faq page"}]
    (tmp_path / "faq.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n\n" for r in rows),
                                        encoding="utf-8")
    docs = load_documents(tmp_path / "faq.jsonl", text_field="question", id_field="qid")
    assert [(d.id, d.text) for d in docs] == [("7", "Where is my order?"), ("b", "两行\n文字")]
    assert docs[0].meta == {"answer": "Ask for the number.", "source": "faq.jsonl:1"}
    assert docs[1].meta == {"source": "faq page"}  # a record's own source is kept
    (tmp_path / "faq.csv").write_text("question,answer\nHow do I pay?,By card\n\"退货, 退款\",请提供订单号\n",
                                      encoding="utf-8")
    docs = load_documents(tmp_path / "faq.csv", text_field="question")
    assert [(d.id, d.text, d.meta["answer"]) for d in docs] == [("faq.csv:2", "How do I pay?", "By card"),
                                                                ("faq.csv:3", "退货, 退款", "请提供订单号")]
    both = load_documents(tmp_path, text_field="question")  # a directory: every readable file, sorted
    assert [d.id for d in both][:2] == ["faq.csv:2", "faq.csv:3"] and len(both) == 4


@pytest.mark.parametrize(("name", "content", "message"), [
    ("a.csv", "text,id\nfine,1\ntoo,many,fields\n", "a.csv:3: more fields than the header"),
    ("a.csv", "text,id\nfine,1\nshort\n", "a.csv:3: fewer fields than the header"),
    ("a.csv", "body\nx\n", "column 'text' not found"),
    ("a.jsonl", '{"text": "ok"}\n{"text": \n', "a.jsonl:2: line 2 is not valid JSON"),
    ("a.jsonl", '{"text": "ok"}\n{"body": "x"}\n', "a.jsonl:2: field 'text' not found"),
    ("a.jsonl", '{"text": "   "}\n', "a.jsonl:1: field 'text' is empty"),
    ("a.jsonl", '{"text": 3}\n', "a.jsonl:1: field 'text' holds int"),
    ("a.jsonl", '{"text": "a", "id": "x"}\n{"text": "b", "id": "x"}\n', "a.jsonl:2: duplicate id 'x'"),
    ("a.jsonl", '{"text": "a", "id": null}\n', "a.jsonl:1: field 'id' must be a non-empty string"),
    ("a.txt", "\n\n \n", "no documents"),
])
def test_bad_records_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_documents(tmp_path / name, id_field="id" if "id" in content.split("\n")[0] else None)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_documents(tmp_path / "nope.jsonl")
