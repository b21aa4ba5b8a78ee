"""The data directory's SQLite database: the audit trail and review queue (`luoxia.safety.audit`),
and the server's API keys, conversations and generations (`luoxia.serve.store`).

WAL mode with ``synchronous=FULL``: a transaction is on disk when its COMMIT returns, readers never
block the writer, and a process killed at any moment leaves the last committed state. The schema is
versioned with ``PRAGMA user_version``; `MIGRATIONS` only ever grows, each entry applied once, in
its own transaction.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from luoxia.errors import LuoxiaError

DATA_HOME_ENV = "LUOXIA_HOME"
DB_FILE = "luoxia.db"

MIGRATIONS: list[str] = [
    # 1: the audit trail of the guard's decisions, with the human review status
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
    # 2: the server's API keys (hashed), conversations and every generation
    """
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,           -- the first characters, to recognise a key in listings
        key_sha256 TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        revoked TEXT
    );
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        key_id INTEGER,
        created TEXT NOT NULL,
        title TEXT NOT NULL
    );
    CREATE TABLE generations (
        id TEXT PRIMARY KEY,
        created TEXT NOT NULL,
        key_id INTEGER,
        conversation_id TEXT,
        endpoint TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt TEXT NOT NULL,           -- JSON: the prompt or the messages
        output TEXT,
        parameters TEXT NOT NULL,       -- JSON
        safety TEXT,                    -- JSON: the guard's decisions
        watermark_key_id TEXT,
        status TEXT NOT NULL,           -- started, complete, cancelled or error
        finish_reason TEXT,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        latency_ms REAL
    );
    CREATE INDEX generations_key ON generations(key_id, created);
    """,
]


def default_data_dir() -> Path:
    """$LUOXIA_HOME, else ~/.luoxia."""
    return Path(os.environ.get(DATA_HOME_ENV) or Path.home() / ".luoxia")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection to the database at ``path`` (created, migrated, WAL), usable from any thread
    (callers serialise their own use of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        migrate(connection)
    except sqlite3.DatabaseError as error:
        raise LuoxiaError(f"{path}: not a usable Luoxia database ({error})") from None
    return connection


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def migrate(connection: sqlite3.Connection) -> int:
    """Apply the migrations this database has not seen; the schema version it is at now."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise LuoxiaError(f"database schema version {version} is newer than this Luoxia ({len(MIGRATIONS)}); upgrade")
    for number in range(version, len(MIGRATIONS)):
        with transaction(connection):
            for statement in filter(str.strip, MIGRATIONS[number].split(";")):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number + 1}")
    return len(MIGRATIONS)
