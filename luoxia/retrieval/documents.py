"""Files → retrieval `Document`s: paragraphs of text files, records of JSONL and CSV files.

Built on `luoxia.data.readers` (formats, ``.gz``, strict UTF-8); a bad record is a one-line `DataError`
naming ``file:line``. Every document's ``meta`` gets ``source`` (``file:line``) unless the record has its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from luoxia.data.readers import infer_format, list_files, read_csv_records, read_jsonl_records, read_text_file
from luoxia.errors import DataError
from luoxia.retrieval.interface import Document


def load_documents(path: str | Path, text_field: str = "text", id_field: str | None = None) -> list[Document]:
    """Every document of a file or of the readable files under a directory, in sorted order.

    Text files: one document per blank-line-separated paragraph, id ``name#n``. JSONL/CSV: one per record,
    text from ``text_field``, id from ``id_field`` (else ``name:line``), the other fields in ``meta``.
    """
    root = Path(path)
    documents: list[Document] = []
    seen: dict[str, str] = {}
    for file in list_files(root):
        name = file.relative_to(root).as_posix() if root.is_dir() else file.name
        for origin, document in _read_file(file, name, text_field, id_field):
            if document.id in seen:
                raise DataError(f"{origin}: duplicate id '{document.id}' (first at {seen[document.id]})")
            seen[document.id] = origin
            documents.append(document)
    if not documents:
        raise DataError(f"{path}: no documents (every paragraph or record is empty)")
    return documents


def _read_file(file: Path, name: str, text_field: str, id_field: str | None) -> Iterator[tuple[str, Document]]:
    kind = infer_format(file)
    if kind == "text":
        yield from _paragraphs(file, name)
        return
    columns = [text_field] + ([id_field] if id_field else [])
    records = read_csv_records(file, columns) if kind == "csv" else read_jsonl_records(file)
    for origin, record in records:
        if kind == "csv":
            _check_row(origin, record)
        yield origin, _record_document(origin, name, record, text_field, id_field)


def _paragraphs(file: Path, name: str) -> Iterator[tuple[str, Document]]:
    """(origin, document) per paragraph; the origin is the line the paragraph starts on."""
    line, number = 1, 0
    for block in read_text_file(file).replace("\r\n", "\n").split("\n\n"):
        start = line + (len(block) - len(block.lstrip("\n")))
        line += block.count("\n") + 2
        if not block.strip():
            continue
        number += 1
        origin = f"{file}:{start}"
        yield origin, Document(f"{name}#{number}", block.strip(), {"source": f"{name}:{start}"})


def _check_row(origin: str, row: dict[Any, Any]) -> None:
    """csv.DictReader keeps extra fields under the key None and fills missing ones with None."""
    if None in row:
        raise DataError(f"{origin}: more fields than the header has ({len(row) - 1 + len(row[None])} > {len(row) - 1})")
    if any(value is None for value in row.values()):
        raise DataError(f"{origin}: fewer fields than the header has")


def _record_document(origin: str, name: str, record: dict[str, Any], text_field: str,
                     id_field: str | None) -> Document:
    line = origin.rsplit(":", 1)[1]
    for field in [text_field] + ([id_field] if id_field else []):
        if field not in record:
            raise DataError(f"{origin}: field '{field}' not found; fields present: {', '.join(record) or 'none'}")
    text = record[text_field]
    if isinstance(text, list) and all(isinstance(part, str) for part in text):
        text = "\n".join(text)  # the Tang poems keep their lines in a list
    if not isinstance(text, str):
        raise DataError(f"{origin}: field '{text_field}' holds {type(text).__name__}, expected text")
    if not text.strip():
        raise DataError(f"{origin}: field '{text_field}' is empty")
    if id_field:
        raw_id = record[id_field]
        if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or not str(raw_id).strip():
            raise DataError(f"{origin}: field '{id_field}' must be a non-empty string or integer, got {raw_id!r}")
        doc_id = str(raw_id).strip()
    else:
        doc_id = f"{name}:{line}"
    meta = {key: value for key, value in record.items() if key not in (text_field, id_field)}
    meta.setdefault("source", f"{name}:{line}")
    return Document(doc_id, text.strip(), meta)
