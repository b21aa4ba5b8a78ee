"""Tagged sentences for token classification: IOB2 / CoNLL files in, sub-token label rows out.

A file holds one token a line — ``index<TAB>token<TAB>tag[<TAB>…]`` (Universal NER, CoNLL-U-like) or
``token<TAB or space>tag`` (CoNLL) — with a blank line between sentences; lines starting with ``#``
are comments (``# text = …`` keeps the sentence's original text). Tags are IOB2: ``O``, ``B-TYPE``,
and ``I-TYPE`` only after ``B-TYPE`` or ``I-TYPE``.

Sub-token labels: every sub-token carries a label — the word's own tag on its first sub-token,
``I-TYPE`` on the rest of a ``B-``/``I-TYPE`` word, ``O`` on the rest of an ``O`` word. A tagger then
reads raw text (Chinese has no word boundaries) one sub-token at a time and still forms whole spans.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from luoxia.data.corpora import resolve_data_path
from luoxia.data.instruct import IGNORE
from luoxia.errors import DataError

TAG = re.compile(r"O|[BI]-[^\s-][^\s]*")  # anchored with fullmatch; linear


@dataclass(frozen=True)
class TaggedSentence:
    """Gold words and their IOB2 tags; ``text`` is the ``# text =`` line when the file has one."""

    words: list[str]
    tags: list[str]
    text: str | None = None
    origin: str = ""  # file:line of the sentence's first token


def entity_type(tag: str) -> str:
    return tag[2:] if tag != "O" else ""


def _token_and_tag(line: str, origin: str) -> tuple[str, str]:
    """(token, tag) of one token line: ``index TAB token TAB tag …`` or ``token tag``."""
    fields = line.split("\t") if "\t" in line else line.split()
    if len(fields) >= 3 and fields[0].strip().isdigit():
        token, tag = fields[1], fields[2].strip()
    elif len(fields) == 2:
        token, tag = fields[0], fields[1].strip()
    else:
        raise DataError(f"{origin}: malformed line (expected 'index<TAB>token<TAB>tag' or 'token<TAB>tag'): "
                        f"{line[:60]!r}")
    if not token:
        raise DataError(f"{origin}: empty token")
    return token, tag


def _check_tag(tag: str, previous: str, origin: str) -> None:
    if not TAG.fullmatch(tag):
        raise DataError(f"{origin}: tag {tag[:30]!r} is not IOB2 (O, B-TYPE or I-TYPE)")
    if tag.startswith("I-") and previous not in (f"B-{tag[2:]}", tag):
        raise DataError(f"{origin}: tag {tag} follows {previous}; IOB2 starts every entity with B-{tag[2:]}")


def parse_iob(lines: Sequence[str], source: str) -> list[TaggedSentence]:
    """Sentences from the lines of an IOB2 file (``source`` names it in errors)."""
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    text: str | None = None
    start = ""
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        origin = f"{source}:{number}"
        if not line.strip():
            if words:
                sentences.append(TaggedSentence(words, tags, text, start))
            words, tags, text = [], [], None
            continue
        if line.startswith("#"):
            if line.startswith("# text = ") and not words:
                text = line[len("# text = "):]
            continue
        token, tag = _token_and_tag(line, origin)
        _check_tag(tag, tags[-1] if tags else "O", origin)
        start = start if words else origin
        words.append(token)
        tags.append(tag)
    if words:
        sentences.append(TaggedSentence(words, tags, text, start))
    return sentences


def read_iob(path: str | Path) -> list[TaggedSentence]:
    """Every sentence of an IOB2/CoNLL file (``shared:`` paths resolved); one-line errors for a
    missing, empty or malformed file."""
    resolved = resolve_data_path(path)
    if not resolved.is_file():
        raise DataError(f"{path}: no such IOB2 file")
    sentences = parse_iob(resolved.read_text(encoding="utf-8").splitlines(), str(path))
    if not sentences:
        raise DataError(f"{path}: no tagged sentences (expected 'index<TAB>token<TAB>tag' lines)")
    return sentences


def label_names(sentences: Sequence[TaggedSentence]) -> list[str]:
    """The label set of the data: ``O``, then ``B-``/``I-`` of each entity type, types sorted."""
    types = sorted({entity_type(tag) for sentence in sentences for tag in sentence.tags} - {""})
    return ["O", *[f"{prefix}-{name}" for name in types for prefix in ("B", "I")]]


def inside(tag: str) -> str:
    """The tag of a word's later sub-tokens: the entity continues (``I-TYPE``) or stays ``O``."""
    return "O" if tag == "O" else f"I-{tag[2:]}"


def align_labels(word_ids: Sequence[int | None], tags: Sequence[str], label_ids: dict[str, int]) -> list[int]:
    """One label id per sub-token: the word's tag on its first sub-token, `inside` on the rest,
    ``IGNORE`` on special tokens (``word_ids[i]`` is None)."""
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE)
        else:
            labels.append(label_ids[tags[word] if word != previous else inside(tags[word])])
        previous = word
    return labels


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, first, last + 1)`` over a tag sequence; an ``I-`` that does not continue
    an entity of its type starts one (as seqeval's default mode reads it)."""
    spans: list[tuple[str, int, int]] = []
    for i, tag in enumerate(tags):
        kind = entity_type(tag)
        continues = tag.startswith("I-") and spans and spans[-1][0] == kind and spans[-1][2] == i
        if continues:
            spans[-1] = (kind, spans[-1][1], i + 1)
        elif kind:
            spans.append((kind, i, i + 1))
    return spans
