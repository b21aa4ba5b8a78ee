"""Read documents from plain text, JSONL and CSV files, one file, several files or a directory.

Every problem becomes a one-line `DataError` that names the file (and the line, where there is one).
Files ending in ``.gz`` are decompressed transparently.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from luoxia.errors import DataError

Format = Literal["auto", "text", "jsonl", "csv"]
TextUnit = Literal["file", "paragraph", "line"]

_SUFFIX_FORMATS = {".txt": "text", ".md": "text", ".text": "text", ".py": "text",
                   ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv"}


@dataclass(frozen=True)
class Document:
    """One unit of text and where it came from (``path`` or ``path:line``)."""

    text: str
    origin: str


def infer_suffix(path: Path) -> str:
    """The suffix that says the format, looking through ``.gz``: ``a.jsonl.gz`` → ``.jsonl``."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return suffixes[-1] if suffixes else ""


def infer_format(path: Path) -> str:
    """``data.jsonl.gz`` → ``jsonl``; unknown suffixes are read as plain text."""
    return _SUFFIX_FORMATS.get(infer_suffix(path), "text")


def read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix.lower() == ".gz" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: cannot read file ({error})") from None


def decode_utf8(raw: bytes, path: Path) -> str:
    """Strict UTF-8 decoding that says where the first bad byte is."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not valid UTF-8 at byte {error.start} (line {line}): {error.reason}"
        ) from None


def read_text_file(path: Path) -> str:
    return decode_utf8(read_bytes(path), path)


def split_text(text: str, unit: TextUnit) -> list[str]:
    if unit == "file":
        return [text]
    if unit == "line":
        return text.splitlines()
    return [block for block in text.replace("\r\n", "\n").split("\n\n")]


def _field_text(value: object, origin: str, field: str) -> str:
    """A string field as is; a list of strings (the Tang poems' ``paragraphs``) one per line."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    raise DataError(f"{origin}: field '{field}' holds {type(value).__name__}, expected text or a list of text")


def read_jsonl_records(path: Path) -> Iterator[tuple[str, dict]]:
    """(origin, object) for every non-blank line of a JSONL file."""
    return jsonl_records(read_text_file(path).splitlines(), str(path))


def jsonl_records(lines: Iterable[str], name: str) -> Iterator[tuple[str, dict]]:
    """(origin, object) for every non-blank line of JSON lines (a file's, or a stream's as they come)
    read from ``name``; a line that is not a JSON object is a one-line error naming it."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        origin = f"{name}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{origin}: line {number} is not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{origin}: line {number} is a JSON {type(record).__name__}, expected an object")
        yield origin, record


def read_csv_records(path: Path, columns: list[str]) -> Iterator[tuple[str, dict]]:
    """(origin, row) for every row of a CSV/TSV file that has all of ``columns``."""
    text = read_text_file(path)
    delimiter = "\t" if infer_suffix(path) == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if reader.fieldnames is None:
        return
    for column in columns:
        if column not in reader.fieldnames:
            raise DataError(f"{path}: column '{column}' not found; columns: {', '.join(reader.fieldnames)}")
    for number, row in enumerate(reader, start=2):
        yield f"{path}:{number}", row


def read_records(path: Path, fields: list[str]) -> Iterator[tuple[str, dict]]:
    """Records of a JSONL or CSV file with every one of ``fields`` present (else a clear error)."""
    if infer_format(path) == "csv":
        yield from read_csv_records(path, fields)
        return
    for origin, record in read_jsonl_records(path):
        for field in fields:
            if field not in record:
                present = ", ".join(record) or "none"
                line = origin.rsplit(":", 1)[1]
                raise DataError(f"{origin}: field '{field}' not found on line {line}; fields present: {present}")
        yield origin, record


TITLE_FIELD = "title"


def titled_text(title: str, body: str) -> str:
    """A text with its title as the first line, in the one format titled models train and are
    prompted on: ``《title》`` then a newline (no title: the body alone)."""
    return f"《{title.strip()}》\n{body}" if title.strip() else body


def read_jsonl(path: Path, field: str, with_titles: bool = False) -> Iterator[Document]:
    """Each record's ``field`` as a document; ``with_titles``: its ``title`` first (`titled_text`)."""
    for origin, record in read_records(path, [field]):
        text = _field_text(record[field], origin, field)
        title = record.get(TITLE_FIELD) if with_titles else None
        yield Document(titled_text(title, text) if isinstance(title, str) else text, origin)


def read_csv(path: Path, column: str) -> Iterator[Document]:
    for origin, row in read_csv_records(path, [column]):
        yield Document(row[column] or "", origin)


def list_files(path: Path) -> list[Path]:
    """A file is itself; a directory gives its readable files, recursively, in sorted order."""
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and infer_suffix(p) in _SUFFIX_FORMATS)
    if not files:
        raise DataError(f"{path}: directory holds no readable files ({', '.join(sorted(_SUFFIX_FORMATS))})")
    return files


def read_documents(paths: list[str | Path], fmt: Format = "auto", field: str | None = None,
                   unit: TextUnit = "file", with_titles: bool = False) -> Iterator[Document]:
    """Yield every document of every file under ``paths`` in a deterministic order."""
    for given in paths:
        for path in list_files(Path(given)):
            kind = infer_format(path) if fmt == "auto" else fmt
            if kind == "jsonl":
                yield from read_jsonl(path, field or "text", with_titles)
            elif kind == "csv":
                yield from read_csv(path, field or "text")
            else:
                for text in split_text(read_text_file(path), unit):
                    yield Document(text, str(path))
