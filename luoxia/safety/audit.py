"""The audit trail: every flagged, redacted or blocked decision of the guard, in SQLite, and the
human review queue over it (`luoxia review list|show|approve|reject`).

The database runs in WAL mode with ``synchronous=FULL``: each event is durable once `record`
returns, readers never block the writer, and a killed process loses nothing committed. The schema
is versioned with ``PRAGMA user_version``; `MIGRATIONS` only ever grows.

Privacy: the original content is stored only as its SHA-256; reviewers see an excerpt with the
personal data masked (`luoxia.safety.pii`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from luoxia.errors import LuoxiaError

DATA_HOME_ENV = "LUOXIA_HOME"
DB_FILE = "luoxia.db"
EXCERPT_CHARS = 2000
ReviewStatus = Literal["pending", "approved", "rejected"]
REVIEW_STATUSES: tuple[str, ...] = ("pending", "approved", "rejected")

MIGRATIONS: list[str] = [
    """
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created TEXT NOT NULL,
        stage TEXT NOT NULL,            -- input, output or image
        action TEXT NOT NULL,           -- flag, redact or block
        categories TEXT NOT NULL,       -- JSON list of what triggered it
        scores TEXT NOT NULL,           -- JSON object category -> score
        model TEXT,
        content_sha256 TEXT NOT NULL,
        excerpt TEXT NOT NULL,          -- PII-masked, truncated
        status TEXT NOT NULL DEFAULT 'pending',
        reviewer TEXT,
        review_note TEXT,
        reviewed TEXT
    );
    CREATE INDEX audit_events_status ON audit_events(status, id);
    """,
]


def default_data_dir() -> Path:
    """$LUOXIA_HOME, else ~/.luoxia: where the audit trail (and later the server's data) lives."""
    return Path(os.environ.get(DATA_HOME_ENV) or Path.home() / ".luoxia")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection to the database at ``path`` (created, migrated, WAL) for this thread."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        migrate(connection)
    except sqlite3.DatabaseError as error:
        raise LuoxiaError(f"{path}: not a usable Luoxia database ({error})") from None
    return connection


def migrate(connection: sqlite3.Connection) -> int:
    """Apply the migrations this database has not seen, each in its own transaction; the new version."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise LuoxiaError(f"database schema version {version} is newer than this Luoxia ({len(MIGRATIONS)}); upgrade")
    for number in range(version, len(MIGRATIONS)):
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, MIGRATIONS[number].split(";")):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number + 1}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


@dataclass
class AuditEvent:
    id: int
    created: str
    stage: str
    action: str
    categories: list[str]
    scores: dict[str, float]
    model: str | None
    content_sha256: str
    excerpt: str
    status: str
    reviewer: str | None
    review_note: str | None
    reviewed: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AuditEvent:
        values = dict(row)
        values["categories"], values["scores"] = json.loads(values["categories"]), json.loads(values["scores"])
        return cls(**values)

    def to_json(self) -> dict:
        return dict(self.__dict__)


class AuditStore:
    """The audit table of one data directory."""

    def __init__(self, data_dir: str | Path | None = None):
        self.path = Path(data_dir or default_data_dir()) / DB_FILE
        self.connection = connect(self.path)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
            self.connection.execute("COMMIT")
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise

    def record(self, stage: str, action: str, categories: list[str], scores: dict[str, float], content_sha256: str,
               excerpt: str, model: str | None = None) -> int:
        """Store one decision; its id. Committed (and on disk) when this returns."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO audit_events (created, stage, action, categories, scores, model, content_sha256, excerpt)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (_now(), stage, action, json.dumps(categories), json.dumps(scores), model, content_sha256,
                 excerpt[:EXCERPT_CHARS]))
            return int(cursor.lastrowid)

    def list(self, status: str | None = "pending", limit: int = 50) -> list[AuditEvent]:
        if status is not None and status not in REVIEW_STATUSES:
            raise LuoxiaError(f"unknown review status '{status}'; valid: {', '.join(REVIEW_STATUSES)}")
        query, args = "SELECT * FROM audit_events", ()
        if status is not None:
            query, args = query + " WHERE status = ?", (status,)
        rows = self.connection.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [AuditEvent.from_row(row) for row in rows]

    def get(self, event_id: int) -> AuditEvent:
        row = self.connection.execute("SELECT * FROM audit_events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            raise LuoxiaError(f"no audit event {event_id} in {self.path}")
        return AuditEvent.from_row(row)

    def review(self, event_id: int, status: ReviewStatus, reviewer: str, note: str | None = None) -> AuditEvent:
        """A human's verdict: ``approved`` (the content is acceptable after all) or ``rejected``."""
        if status not in ("approved", "rejected"):
            raise LuoxiaError(f"a review ends in approved or rejected, not '{status}'")
        self.get(event_id)
        with self._transaction() as db:
            db.execute("UPDATE audit_events SET status = ?, reviewer = ?, review_note = ?, reviewed = ? WHERE id = ?",
                       (status, reviewer, note, _now(), event_id))
        return self.get(event_id)

    def close(self) -> None:
        self.connection.close()
