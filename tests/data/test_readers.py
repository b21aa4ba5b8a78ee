import gzip
import json
from pathlib import Path

import pytest

from luoxia.data.corpora import corpus_documents
from luoxia.data.readers import read_documents
from luoxia.errors import DataError


def texts(paths, **kwargs):
    return [d.text for d in read_documents(paths, **kwargs)]


def test_plain_text_units(tmp_path: Path):
    path = tmp_path / "a.txt"
    path.write_text("one\ntwo\n\nthree", encoding="utf-8")
    assert texts([path]) == ["one\ntwo\n\nthree"]
    assert texts([path], unit="paragraph") == ["one\ntwo", "three"]
    assert texts([path], unit="line") == ["one", "two", "", "three"]


def test_jsonl_field_and_list_field(tmp_path: Path):
    path = tmp_path / "poems.jsonl"
    path.write_text(json.dumps({"title": "静夜思", "paragraphs": ["床前明月光，", "疑是地上霜。"]}, ensure_ascii=False)
                    + "\n\n" + json.dumps({"title": "x", "paragraphs": ["举头望明月。"]}) + "\n", encoding="utf-8")
    assert texts([path], field="paragraphs") == ["床前明月光，\n疑是地上霜。", "举头望明月。"]
    assert texts([path], field="title") == ["静夜思", "x"]


def test_csv_column_and_gzip(tmp_path: Path):
    path = tmp_path / "rows.csv.gz"
    path.write_bytes(gzip.compress(b'text,label\n"hello, world",1\nbye,0\n'))
    assert texts([path]) == ["hello, world", "bye"]


def test_directory_is_read_recursively_in_order(tmp_path: Path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("second")
    (tmp_path / "1.txt").write_text("first")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    assert texts([tmp_path]) == ["first", "second"]


def test_missing_path_names_it(tmp_path: Path):
    with pytest.raises(DataError, match=r"nope\.txt: no such file"):
        list(read_documents([tmp_path / "nope.txt"]))


def test_undecodable_bytes_say_where(tmp_path: Path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine line\nsecond \xff\xfe line\n")
    with pytest.raises(DataError, match=r"bad\.txt: not valid UTF-8 at byte 17 \(line 2\)"):
        list(read_documents([path]))


def test_jsonl_line_that_is_not_json_is_named(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok"}\n{"text": broken}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: line 2 is not valid JSON"):
        list(read_documents([path]))


def test_missing_field_lists_present_fields(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"content": "ok", "id": 1}\n')
    with pytest.raises(DataError, match=r"field 'text' not found on line 1; fields present: content, id"):
        list(read_documents([path]))


def test_missing_csv_column_lists_columns(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("body,label\nx,1\n")
    with pytest.raises(DataError, match=r"column 'text' not found; columns: body, label"):
        list(read_documents([path]))


def test_builtin_pydoc_corpus_needs_nothing_external():
    documents = list(corpus_documents("pydoc"))
    assert len(documents) > 50
    assert any("Python" in d.text for d in documents)


def test_shared_corpus_missing_gives_guidance(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("LUOXIA_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="LUOXIA_DATA_DIR"):
        list(corpus_documents("shakespeare"))


def test_unknown_corpus_name_lists_names():
    with pytest.raises(DataError, match="corpus names: .*pydoc"):
        corpus_documents("nosuchcorpus")
