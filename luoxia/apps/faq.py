"""An FAQ or support history as entries (question, answer, intent, entity spans), and its seeded
split by question into train/dev/test files of the same format.

Column names are configurable (`FAQColumns`); by default the first present of a few common names is
used, so the Bitext worked example (``instruction``, ``response``) and a plain ``question, answer,
intent`` file both read without options. Every problem is a one-line `DataError` naming the file and,
where there is one, the line.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from luoxia.checkpoint import atomic_write_text
from luoxia.config import Config
from luoxia.data.corpora import resolve_data_path
from luoxia.data.readers import infer_format, infer_suffix, read_jsonl_records, read_text_file
from luoxia.errors import ConfigError, DataError

# what a column is called when the user names none, first present wins
ALIASES = {"question": ("question", "instruction", "query", "text"),
           "answer": ("answer", "response", "reply"),
           "intent": ("intent", "label", "category")}
SPLITS = ("train", "dev", "test")


class FAQColumns(Config):
    """Which columns (CSV) or fields (JSONL) hold what; None: the first present of common names."""

    question: str | None = Field(None, description="the customer's question (default: question or instruction)")
    answer: str | None = Field(None, description="the answer (default: answer or response)")
    intent: str | None = Field(None, description="the intent label (default: intent, label or category)")
    entity_type: str = Field("entity_type", description="optional: the type of an entity in the question")
    entity_value: str = Field("entity_value", description="optional: the entity as written")
    start_offset: str = Field("start_offset", description="optional: where the entity starts in the question")
    end_offset: str = Field("end_offset", description="optional: where it ends")


@dataclass(frozen=True)
class Entity:
    """One annotated span of a question: ``question[start:end]`` is (about) ``value``."""

    type: str
    value: str
    start: int
    end: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FAQEntry:
    """One question with its answer and intent; ``record`` is the row as read (for writing splits)."""

    question: str
    answer: str
    intent: str
    origin: str
    entities: list[Entity] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


BUNDLED_FAQ = Path(__file__).parent / "data" / "support_faq.csv"  # Luoxia's own small FAQ (EN + ZH)


def _header(path: Path, text: str) -> list[str]:
    delimiter = "\t" if infer_suffix(path) == ".tsv" else ","
    return next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])


def _rows(path: Path) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """(columns, [(origin, record)]) of a CSV/TSV or JSONL file."""
    if infer_format(path) == "csv":
        lines = read_text_file(path).splitlines(keepends=True)
        skip = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
        text = "".join(lines[skip:])  # leading "# …" lines: a provenance header
        delimiter = "\t" if infer_suffix(path) == ".tsv" else ","
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows = [(f"{path}:{reader.line_num + skip}", row) for row in reader]
        return _header(path, text), rows
    if infer_format(path) != "jsonl":
        suffix = infer_suffix(path) or "a file without a suffix"
        raise DataError(f"{path}: an FAQ is a CSV, TSV or JSONL file, not {suffix}")
    rows = list(read_jsonl_records(path))
    columns = list(dict.fromkeys(key for _, record in rows for key in record))
    return columns, rows


def resolve_columns(path: Path, present: list[str], columns: FAQColumns) -> dict[str, str]:
    """The column of each of question/answer/intent, or an error listing the file's columns."""
    chosen = {}
    for role, aliases in ALIASES.items():
        named = getattr(columns, role)
        candidates = (named,) if named else aliases
        found = next((c for c in candidates if c in present), None)
        if found is None:
            tried = f"'{named}'" if named else f"any of {', '.join(aliases)}"
            raise DataError(f"{path}: no {role} column ({tried}); columns: {', '.join(present) or 'none'}"
                            f" (name yours with --{role}-column)")
        chosen[role] = found
    return chosen


def _entities(record: dict[str, Any], columns: FAQColumns, question: str, origin: str) -> list[Entity]:
    kind = str(record.get(columns.entity_type) or "").strip()
    if not kind:
        return []
    try:
        start, end = int(record[columns.start_offset]), int(record[columns.end_offset])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{origin}: entity '{kind}' needs integer {columns.start_offset} and "
                        f"{columns.end_offset}") from None
    if not 0 <= start < end <= len(question) + 2:  # the worked example's offsets run up to 2 past the end
        raise DataError(f"{origin}: entity offsets {start}..{end} lie outside the question ({len(question)} chars)")
    return [Entity(kind, str(record.get(columns.entity_value) or question[start:end]), start, end)]


def read_faq(path: str | Path, columns: FAQColumns | None = None) -> list[FAQEntry]:
    """Every entry of an FAQ file (``shared:`` paths resolve to ../shared/data); none is an error."""
    columns = columns or FAQColumns()
    path = resolve_data_path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such FAQ file")
    present, rows = _rows(path)
    if not rows:
        raise DataError(f"{path}: the FAQ holds no entries")
    names = resolve_columns(path, present, columns)
    entries = []
    for origin, record in rows:
        values = {role: record.get(name) for role, name in names.items()}
        for role, value in values.items():
            if not isinstance(value, str | int | float) or not str(value).strip():
                raise DataError(f"{origin}: the {role} ('{names[role]}') is empty or not text")
        question = str(values["question"]).strip()
        entries.append(FAQEntry(question, str(values["answer"]).replace("\r\n", "\n").strip(),
                                str(values["intent"]).strip(), origin,
                                _entities(record, columns, str(values["question"]), origin), record))
    return entries


def split_faq(entries: list[FAQEntry], dev: float = 0.1, test: float = 0.1, seed: int = 1337
              ) -> dict[str, list[FAQEntry]]:
    """Train/dev/test by question (the same question text never lands in two splits), stratified by
    intent so each split sees every intent that has enough entries; seeded."""
    if not (0 <= dev < 1 and 0 <= test < 1 and dev + test < 1):
        raise ConfigError(f"dev ({dev}) and test ({test}) must be shares in [0, 1) summing below 1")
    by_question: dict[str, list[FAQEntry]] = defaultdict(list)
    for entry in entries:
        by_question[" ".join(entry.question.lower().split())].append(entry)
    by_intent: dict[str, list[str]] = defaultdict(list)
    for question, group in by_question.items():
        by_intent[group[0].intent].append(question)
    rng = np.random.default_rng(seed)
    out: dict[str, list[FAQEntry]] = {name: [] for name in SPLITS}
    for intent in sorted(by_intent):
        questions = sorted(by_intent[intent])
        order = [questions[i] for i in rng.permutation(len(questions))]
        n_test, n_dev = round(len(order) * test), round(len(order) * dev)
        parts = {"test": order[:n_test], "dev": order[n_test:n_test + n_dev], "train": order[n_test + n_dev:]}
        for name, chosen in parts.items():
            out[name] += [entry for question in chosen for entry in by_question[question]]
    order_of = {id(entry): i for i, entry in enumerate(entries)}
    return {name: sorted(part, key=lambda e: order_of[id(e)]) for name, part in out.items()}  # file order kept


def write_entries(entries: list[FAQEntry], path: Path, columns: list[str]) -> None:
    """Entries as read (their original rows), in the format the suffix says; atomic."""
    if infer_format(path) == "csv":
        buffer = io.StringIO(newline="")
        delimiter = "\t" if infer_suffix(path) == ".tsv" else ","
        writer = csv.DictWriter(buffer, fieldnames=columns, delimiter=delimiter, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(entry.record for entry in entries)
        text = buffer.getvalue()
    else:
        text = "".join(json.dumps(entry.record, ensure_ascii=False) + "\n" for entry in entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def write_split(path: str | Path, out_dir: str | Path, dev: float = 0.1, test: float = 0.1, seed: int = 1337,
                columns: FAQColumns | None = None) -> dict[str, Path]:
    """``luoxia apps support split``: DIR/train.csv, dev.csv, test.csv (or .jsonl, like the input)."""
    source = resolve_data_path(path)
    entries = read_faq(source, columns)
    header, _ = _rows(source)
    suffix = ".csv" if infer_format(source) == "csv" else ".jsonl"
    written = {}
    for name, part in split_faq(entries, dev, test, seed).items():
        written[name] = Path(out_dir) / f"{name}{suffix}"
        write_entries(part, written[name], header)
    return written
