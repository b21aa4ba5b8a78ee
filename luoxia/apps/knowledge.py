"""A knowledge base of (subject, relation, object, source) triples and the names that point into it,
for `luoxia.apps.ask`: reading triples (CSV/JSONL, errors with file:line), entity linking (exact,
alias, fuzzy) and finding the names a text mentions.

Names are matched in one folded spelling (`fold`): compatibility forms, casefolded, traditional →
simplified per character (OpenCC's table, as the guard folds), title marks 《》 and punctuation
dropped, runs of spaces made one. An entity is a folded name: poems that share a title share an
entity, and a question about it gets every fact the knowledge base holds for that name.
Fuzzy linking uses the standard library's difflib on candidates that share a character bigram with
the name asked (an inverted index), so it stays fast on 30k names without another dependency.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import json
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from luoxia.data.corpora import SHARED_CORPORA, shared_path
from luoxia.errors import ConfigError, DataError
from luoxia.safety.normalize import traditional_to_simplified

TRIPLE_COLUMNS = ("subject", "relation", "object", "source")
REQUIRED_COLUMNS = ("subject", "relation", "object")  # source defaults to FILE:LINE
ALIAS = "alias"  # (name, alias, other name): the object is another name of the subject
BUNDLED_TRIPLES = "ask_triples.csv"
MIN_MENTION = 2  # characters: a one-character name matches inside too many words
# how a relation the rules do not list is said
GENERIC = {"zh": "《{subject}》的{label}是{object}。", "en": "The {label} of {subject} is {object}."}
FUZZY_CANDIDATES = 64  # names compared by difflib after the bigram filter


@dataclass(frozen=True)
class Triple:
    """One fact and where it was read (``source``: the file's own column, else FILE:LINE)."""

    subject: str
    relation: str
    object: str
    source: str

    def fact(self) -> str:
        return f"({self.subject}, {self.relation}, {self.object})"

    def to_json(self) -> dict[str, str]:
        return dict(self.__dict__)


@cache
def _fold_table() -> dict[int, str | None]:
    """Traditional → simplified per character; title marks and quotes dropped."""
    table: dict[int, str | None] = {ord(k): v for k, v in traditional_to_simplified().items()}
    table.update({ord(c): None for c in "《》〈〉「」『』“”‘’\"'"})
    return table


def fold(text: str) -> str:
    """The spelling names are matched in (see the module docstring); one pass, linear."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_fold_table())
    out: list[str] = []
    for char in text:
        kind = unicodedata.category(char)[0]
        if kind in "LN":
            out.append(char)
        elif (kind == "Z" or char.isspace() or kind == "P") and out and out[-1] != " " and char.isascii():
            out.append(" ")  # ASCII punctuation and spaces separate words; Chinese punctuation just goes
    return "".join(out).strip()


def is_chinese(text: str) -> bool:
    return any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in text)


def _bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1)} or {text}


# -- reading ---------------------------------------------------------------------------------------

def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a CSV or JSONL file (``#`` lines are comments); bad rows name FILE:LINE."""
    opener = gzip.open if path.suffix == ".gz" else open
    kind = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    with opener(path, "rt", encoding="utf-8", newline="") as handle:  # type: ignore[operator]
        numbered = ((n, line) for n, line in enumerate(handle, 1) if line.strip() and not line.startswith("#"))
        if kind == ".jsonl":
            for number, line in numbered:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}:{number}: not JSON ({error.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{number}: each line must be a JSON object with "
                                    f"{', '.join(REQUIRED_COLUMNS)}")
                yield number, row
        elif kind in (".csv", ".tsv"):
            lines = list(numbered)
            reader = csv.DictReader((line for _, line in lines), delimiter="\t" if kind == ".tsv" else ",")
            for (number, _), row in zip(lines[1:], reader, strict=False):
                yield number, row
        else:
            raise DataError(f"{path}: triples must be .csv, .tsv or .jsonl (optionally .gz), not '{path.suffix}'")


def read_triples(path: str | Path) -> list[Triple]:
    """Every triple of a CSV/JSONL file with columns subject, relation, object[, source]."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such triples file")
    triples: list[Triple] = []
    for number, row in _rows(path):
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise DataError(f"{path}:{number}: missing column(s) {', '.join(missing)}; columns are "
                            f"{', '.join(TRIPLE_COLUMNS)} (source optional); found {', '.join(map(str, row))}")
        values = [str(row[c] or "").strip() for c in REQUIRED_COLUMNS]
        if not all(values):
            raise DataError(f"{path}:{number}: empty {REQUIRED_COLUMNS[values.index('')]}")
        source = str(row.get("source") or "").strip() or f"{path.name}:{number}"
        triples.append(Triple(*values, source))
    if not triples:
        raise DataError(f"{path}: no triples (expected rows with {', '.join(TRIPLE_COLUMNS)})")
    return triples


def bundled_triples_path() -> Path:
    return Path(str(files("luoxia.apps") / "data" / BUNDLED_TRIPLES))


def poem_triples(max_poems: int | None = None, traditional: bool = False) -> list[Triple]:
    """(title, author, …) and (title, first_line, …) of the Tang poems in ../shared/data, each
    citing its line of the data file."""
    corpus = SHARED_CORPORA["poems_trad" if traditional else "poems"]
    path = shared_path(corpus.relative_path)
    triples: list[Triple] = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if max_poems is not None and number > max_poems:
                break
            poem = json.loads(line)
            source = f"{corpus.relative_path}:{number}"
            title, author, lines = poem["title"].strip(), poem["author"].strip(), poem["paragraphs"]
            if title and author:
                triples.append(Triple(title, "author", author, source))
            if title and lines and lines[0].strip():
                triples.append(Triple(title, "first_line", lines[0].strip(), source))
    return triples


def triples_jsonl(triples: Iterable[Triple]) -> str:
    """The triples as JSONL text (the application directory's copy)."""
    return "".join(json.dumps(t.to_json(), ensure_ascii=False) + "\n" for t in triples)


# -- rules -----------------------------------------------------------------------------------------

@dataclass
class Rules:
    """The question and statement rules of ``apps/data/ask_relations.yaml`` (see its comments)."""

    relations: dict[str, dict[str, Any]]
    question_words: list[str]
    not_found: dict[str, str]
    not_found_entity: dict[str, str]
    not_found_relation: dict[str, str]
    fuzzy_note: dict[str, str]
    source: str = ""  # the YAML text (an application built with its own rules keeps a copy)
    cues: list[tuple[str, str]] = field(default_factory=list)  # (folded cue, relation), longest first

    def __post_init__(self) -> None:
        pairs = {(fold(cue), name) for name, spec in self.relations.items() for cue in spec.get("cues", [])}
        self.cues = sorted(pairs, key=lambda pair: (-len(pair[0]), pair[0]))

    def find_relations(self, folded: str) -> list[tuple[str, int, int]]:
        """(relation, start, end) of each cue in a folded text, longest cues first, not overlapping."""
        taken: list[tuple[int, int]] = []
        found: list[tuple[str, int, int]] = []
        for cue, relation in self.cues:
            start = folded.find(cue)
            while start >= 0:
                end = start + len(cue)
                if all(end <= a or start >= b for a, b in taken) and _word_bounded(folded, start, end):
                    taken.append((start, end))
                    found.append((relation, start, end))
                start = folded.find(cue, end)
        return found

    def label(self, relation: str, language: str) -> str:
        return str(self.relations.get(relation, {}).get("label", {}).get(language, relation))

    def not_found_fact(self, relation: str, language: str, subject: str) -> str:
        return self.not_found_relation[language].format(subject=subject, label=self.label(relation, language))

    def say(self, relation: str, language: str, subject: str, obj: str, kind: str = "answer") -> str:
        template = self.relations.get(relation, {}).get(kind, {}).get(language)
        if template is None:
            template = GENERIC[language]
        return str(template).format(subject=subject, object=obj, label=self.label(relation, language))


def _word_bounded(text: str, start: int, end: int) -> bool:
    """A Latin cue or name must not start or end inside a word (``if`` in ``lift``); Chinese has no spaces."""
    def latin(c: str) -> bool:
        return c.isascii() and c.isalnum()
    before = start == 0 or not (latin(text[start - 1]) and latin(text[start]))
    after = end == len(text) or not (latin(text[end]) and latin(text[end - 1]))
    return before and after


@cache
def load_rules(path: str | None = None) -> Rules:
    """The bundled rules, or a YAML file of the same shape."""
    source = Path(path) if path else Path(str(files("luoxia.apps") / "data" / "ask_relations.yaml"))
    if not source.is_file():
        raise ConfigError(f"{source}: no such rules file")
    text = source.read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    keys = ("relations", "question_words", "not_found", "not_found_entity", "not_found_relation", "fuzzy_note")
    if not isinstance(raw, dict) or [k for k in keys if k not in raw]:
        raise ConfigError(f"{source}: a rules file needs the keys {', '.join(keys)}, as ask_relations.yaml has")
    return Rules(raw["relations"], raw["question_words"], raw["not_found"], raw["not_found_entity"],
                 raw["not_found_relation"], raw["fuzzy_note"], text)


# -- the knowledge base ----------------------------------------------------------------------------

@dataclass
class Link:
    """A name found for a question: the entity (folded key), how it was found, a score in [0, 1]."""

    entity: str
    how: str  # "exact" | "alias" | "fuzzy"
    score: float
    mention: str


class KnowledgeBase:
    """Triples indexed by subject and relation, and every name (subject, object, alias) → entity."""

    def __init__(self, triples: list[Triple]) -> None:
        if not triples:
            raise DataError("the knowledge base is empty: give triples (--triples/--poems) or passages")
        self.triples = triples
        self.facts: dict[tuple[str, str], list[int]] = defaultdict(list)  # (entity, relation) → triple indices
        self.display: dict[str, str] = {}  # entity → the first spelling seen
        self.names: dict[str, tuple[str, str]] = {}  # folded name → (entity, "exact" | "alias")
        self.objects: dict[str, set[str]] = defaultdict(set)  # relation → entities that are its objects
        self.by_subject: dict[str, list[int]] = defaultdict(list)  # entity → its triples, in file order
        self.by_object: dict[str, list[int]] = defaultdict(list)  # entity → triples naming it as the value
        self.ids: dict[Triple, int] = {}  # triple → its first index (the citation's document id)
        for index, triple in enumerate(triples):
            self.ids.setdefault(triple, index)
            subject = self._entity(triple.subject)
            if triple.relation == ALIAS:
                self.names.setdefault(fold(triple.object), (subject, "alias"))
                continue
            self.facts[(subject, triple.relation)].append(index)
            self.by_subject[subject].append(index)
            self.objects[triple.relation].add(self._entity(triple.object))
            self.by_object[self._entity(triple.object)].append(index)
        self.subjects = {entity for entity, _ in self.facts}
        self.lengths = sorted({len(name) for name in self.names if len(name) >= MIN_MENTION}, reverse=True)
        self._grams: dict[str, list[str]] | None = None

    def _entity(self, name: str) -> str:
        key = fold(name)
        if key not in self.names:
            self.names[key] = (key, "exact")
            self.display[key] = name
        return self.names[key][0]

    def __len__(self) -> int:
        return len(self.triples)

    @property
    def relations(self) -> list[str]:
        return sorted({relation for _, relation in self.facts})

    def lookup(self, entity: str, relation: str) -> list[Triple]:
        return [self.triples[i] for i in self.facts.get((entity, relation), [])]

    def about(self, entity: str) -> list[Triple]:
        """Every fact whose subject is ``entity``, in file order."""
        return [self.triples[i] for i in self.by_subject.get(entity, [])]

    def about_object(self, entity: str) -> list[Triple]:
        """Every fact whose value is ``entity`` (a poet: the poems they wrote)."""
        return [self.triples[i] for i in self.by_object.get(entity, [])]

    def id_of(self, triple: Triple) -> int:
        return self.ids[triple]

    def name_of(self, entity: str) -> str:
        return self.display.get(entity, entity)

    def link(self, name: str, cutoff: float) -> Link | None:
        """The entity ``name`` means: its own name or an alias (after folding), else the closest
        known name with difflib's ratio ≥ ``cutoff``."""
        key = fold(name)
        if not key:
            return None
        if key in self.names:
            entity, how = self.names[key]
            return Link(entity, how, 1.0, name)
        best = self._fuzzy(key, cutoff)
        return None if best is None else Link(self.names[best[0]][0], "fuzzy", best[1], name)

    def _fuzzy(self, key: str, cutoff: float) -> tuple[str, float] | None:
        if self._grams is None:
            self._grams = defaultdict(list)
            for name in self.names:
                for gram in _bigrams(name):
                    self._grams[gram].append(name)
        shared: Counter[str] = Counter()
        for gram in _bigrams(key):
            shared.update(self._grams.get(gram, ()))
        best: tuple[str, float] | None = None
        for name, _ in shared.most_common(FUZZY_CANDIDATES):
            ratio = difflib.SequenceMatcher(None, key, name, autojunk=False).ratio()
            if ratio >= cutoff and (best is None or ratio > best[1]):
                best = (name, ratio)
        return best

    def mentions(self, folded: str) -> list[tuple[str, int, int]]:
        """(folded name, start, end) of the known names in a folded text: at each position the
        longest name starting there, left to right, not overlapping (O(len × distinct lengths))."""
        found: list[tuple[str, int, int]] = []
        start = 0
        while start < len(folded):
            for length in self.lengths:
                piece = folded[start:start + length]
                if len(piece) == length and piece in self.names and _word_bounded(folded, start, start + length):
                    found.append((piece, start, start + length))
                    start += length - 1
                    break
            start += 1
        return found
