"""The financial monitor's input: timestamped items (read from JSONL/CSV, stdin or a watched folder),
their topics (cashtags, keyword rules, encoder similarity to topic descriptions) and a seeded replay
simulator that gives an untimed labelled corpus synthetic times and injects bursts.

The simulator lives in the library so the tests, the CLI and ``bench/apps_monitor.py`` replay the
same way: the same seed gives the same stream everywhere.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from luoxia.data.corpora import resolve_data_path
from luoxia.data.readers import jsonl_records, read_records
from luoxia.encoders import Encoder
from luoxia.errors import ConfigError, DataError

TOPICS_FILE = Path(__file__).resolve().parent / "data" / "monitor_topics.yaml"
SAMPLE_FILE = Path(__file__).resolve().parent / "data" / "monitor_sample.csv"
# $AAPL, $BRK.B: a dollar sign, 1–6 letters, an optional class suffix; bounded repeats: linear time
CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?)(?![\w])")
WORD = re.compile(r"[a-z0-9&]+")
FIN_LABELS = {"0": "negative", "1": "positive", "2": "neutral", "bearish": "negative", "bullish": "positive",
              "neutral": "neutral", "negative": "negative", "positive": "positive"}


@dataclass
class Item:
    """One timestamped text; ``id`` is the caller's or a hash of text and time (what makes ingest idempotent)."""

    text: str
    time: datetime
    id: str = ""
    label: str | None = None  # gold sentiment, when known (the simulator's; never used by the monitor)
    burst: int | None = None  # which injected burst it belongs to (simulator only)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = hashlib.sha256(f"{self.time.isoformat()}\n{self.text}".encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "time": self.time.isoformat(), "text": self.text}
        return out | ({"label": self.label} if self.label else {}) | ({"burst": self.burst} if self.burst is not None
                                                                      else {})


def parse_time(value: Any, where: str = "") -> datetime:
    """An ISO 8601 string or a Unix time in seconds → an aware UTC datetime (naive ones are UTC)."""
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and re.fullmatch(r"\d{9,11}(\.\d+)?", value)):
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (TypeError, ValueError, OverflowError, OSError):
        raise DataError(f"{where}: '{value}' is not a time (ISO 8601 or Unix seconds)") from None
    if not 1900 <= parsed.year <= 9000:  # far from datetime's limits, which window arithmetic would cross
        raise DataError(f"{where}: '{value}' is outside the years 1900–9000")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def item_from_record(record: dict[str, Any], where: str = "", text_field: str = "text",
                     time_field: str = "time") -> Item:
    """An `Item` from a record with a text and a time (``id`` and ``label`` optional)."""
    for name in (text_field, time_field):
        if record.get(name) in (None, ""):
            raise DataError(f"{where}: the record has no '{name}' (fields: {', '.join(record) or 'none'})")
    label = record.get("label")
    return Item(str(record[text_field]), parse_time(record[time_field], where), str(record.get("id") or ""),
                None if label in (None, "") else str(label))


def read_items(path: str | Path, text_field: str = "text", time_field: str = "time") -> list[Item]:
    """The items of a JSONL or CSV file, in file order."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{path}: no such file")
    return [item_from_record(record, origin, text_field, time_field)
            for origin, record in read_records(file, [text_field, time_field])]


def read_stdin_items(lines: Iterable[str] | None = None, text_field: str = "text",
                     time_field: str = "time") -> Iterator[Item]:
    """Items from JSON lines (stdin by default), one at a time: a pipe is processed as it flows."""
    for origin, record in jsonl_records(lines if lines is not None else sys.stdin, "stdin"):
        yield item_from_record(record, origin, text_field, time_field)


def new_files(folder: Path, seen: set[str]) -> list[Path]:
    """The JSONL/CSV files of a watched folder not processed yet, oldest name first (adds them to ``seen``)."""
    found = sorted(p for p in folder.iterdir() if p.suffix in (".jsonl", ".csv") and p.name not in seen)
    seen.update(p.name for p in found)
    return found


# Topics ----------------------------------------------------------------------------------------
@dataclass
class Topic:
    name: str
    description: str
    keywords: list[str] = field(default_factory=list)


def read_topics(path: str | Path | None = None) -> list[Topic]:
    """The topics of a YAML file (name → description and keywords); the shipped file by default."""
    file = Path(path) if path else TOPICS_FILE
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{file}: cannot read the topics: {error}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{file}: expected a mapping topic name → {{description, keywords}}")
    topics = []
    for name, spec in raw.items():
        if not isinstance(spec, dict) or not str(spec.get("description") or "").strip():
            raise ConfigError(f"{file}: topic '{name}' needs a description (and optional keywords)")
        unknown = set(spec) - {"description", "keywords"}
        if unknown:
            raise ConfigError(f"{file}: topic '{name}' has unknown keys {', '.join(sorted(unknown))}; "
                              "valid: description, keywords")
        topics.append(Topic(str(name), str(spec["description"]), [str(k).lower() for k in spec.get("keywords") or []]))
    return topics


def cashtags(text: str, limit: int = 3) -> list[str]:
    """The first ``limit`` distinct cashtags of ``text``, upper-case with their dollar sign."""
    out: list[str] = []
    for match in CASHTAG.finditer(text):
        tag = "$" + match.group(1).upper()
        if tag not in out:
            out.append(tag)
        if len(out) == limit:
            break
    return out


class TopicAssigner:
    """Texts → topics: cashtags (each its own topic), keyword rules and, given an encoder, cosine
    similarity to each topic's description at or above ``threshold``; every text also counts in ``all``."""

    def __init__(self, topics: Sequence[Topic], encoder: Encoder | None = None, threshold: float = 0.35,
                 max_cashtags: int = 3):
        self.topics, self.encoder, self.threshold, self.max_cashtags = list(topics), encoder, threshold, max_cashtags
        self.keywords = [set(t.keywords) for t in self.topics]
        self.descriptions = encoder.encode([t.description for t in self.topics]) if encoder else None  # (T, D)

    def assign(self, texts: Sequence[str]) -> list[list[str]]:
        """Each text's topics: ``all``, then named topics in file order, then its cashtags."""
        similar = None
        if self.encoder is not None and self.descriptions is not None and texts:
            similar = self.encoder.encode(list(texts)) @ self.descriptions.T >= self.threshold  # (N, T)
        out = []
        for row, text in enumerate(texts):
            words = set(WORD.findall(text.lower()))
            named = [t.name for i, t in enumerate(self.topics)
                     if words & self.keywords[i] or (similar is not None and similar[row, i])]
            out.append(["all", *named, *cashtags(text, self.max_cashtags)])
        return out


# The replay simulator -----------------------------------------------------------------------------
@dataclass
class Burst:
    """``count`` items of sentiment ``label`` about ``ticker`` spread uniformly over ``minutes``, from
    ``at`` (hours after the stream's start)."""

    ticker: str
    at: float
    count: int = 40
    minutes: float = 30.0
    label: str = "negative"


def read_labelled(path: str | Path | None = None, text_field: str = "text",
                  label_field: str = "label") -> tuple[list[str], list[str]]:
    """(texts, labels as negative/neutral/positive) of a labelled CSV/JSONL (fin_sentiment_en's 0/1/2
    are Bearish/Bullish/Neutral); the small sample shipped with Luoxia when ``path`` is None."""
    file = resolve_data_path(str(path)) if path else SAMPLE_FILE
    texts, labels = [], []
    for origin, record in read_records(Path(file), [text_field, label_field]):
        label = FIN_LABELS.get(str(record[label_field]).strip().lower())
        if label is None:
            raise DataError(f"{origin}: label '{record[label_field]}' is none of {', '.join(sorted(FIN_LABELS))}")
        texts.append(str(record[text_field]))
        labels.append(label)
    if not texts:
        raise DataError(f"{file}: no labelled texts")
    return texts, labels


def retag(text: str, ticker: str) -> str:
    """``text`` about ``ticker``: its cashtags replaced by it, or it put in front when there is none."""
    tag = "$" + ticker.upper().lstrip("$")
    replaced, count = CASHTAG.subn(tag, text)
    return replaced if count else f"{tag} {text}"


def simulate_stream(texts: Sequence[str], labels: Sequence[str], start: datetime, rate: float = 60.0,
                    bursts: Sequence[Burst] = (), seed: int = 0, limit: int | None = None) -> list[Item]:
    """A replay: the corpus in a seeded random order at Poisson times (``rate`` items per hour), plus
    each burst's items (texts of its label from the corpus, retagged to its ticker), sorted by time."""
    if rate <= 0:
        raise ConfigError(f"rate is {rate}; items per hour must be positive")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))[:limit]
    gaps = rng.exponential(3600.0 / rate, size=len(order))  # seconds between arrivals
    times = np.cumsum(gaps)
    items = [Item(texts[i], start + timedelta(seconds=float(t)), f"s{seed}-{n}", labels[i])
             for n, (i, t) in enumerate(zip(order, times, strict=True))]
    for b, burst in enumerate(bursts):
        pool = [i for i, label in enumerate(labels) if label == burst.label]
        if not pool:
            raise DataError(f"burst {b}: the corpus has no '{burst.label}' texts")
        chosen = rng.choice(pool, size=burst.count, replace=len(pool) < burst.count)
        offsets = np.sort(rng.uniform(0.0, burst.minutes * 60.0, size=burst.count))
        begin = start + timedelta(hours=burst.at)
        items += [Item(retag(texts[i], burst.ticker), begin + timedelta(seconds=float(o)), f"s{seed}-b{b}-{n}",
                       burst.label, b) for n, (i, o) in enumerate(zip(chosen, offsets, strict=True))]
    return sorted(items, key=lambda item: (item.time, item.id))
