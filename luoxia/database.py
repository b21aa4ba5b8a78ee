"""The data directory's SQLite database: the audit trail and review queue (`luoxia.safety.audit`),
and the server's API keys, conversations and generations (`luoxia.serve.store`).

WAL mode with ``synchronous=FULL``: a transaction is on disk when its COMMIT returns, readers never
block the writer, and a process killed at any moment leaves the last committed state. The schema is
versioned with ``PRAGMA user_version``; `MIGRATIONS` only ever grows, each entry applied once, in
its own transaction.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from luoxia.errors import LuoxiaError

DATA_HOME_ENV = "LUOXIA_HOME"
DB_FILE = "luoxia.db"
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")  # the database and the files SQLite keeps beside it
log = logging.getLogger("luoxia.database")

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
    # 3: roles for API keys (existing keys become plain users: they keep generating, but reviewing
    # now needs a reviewer or admin key), the log of every review decision and reopening, and the
    # indexes the retention purge walks
    """
    ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'user';
    CREATE TABLE review_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id INTEGER NOT NULL,
        created TEXT NOT NULL,
        action TEXT NOT NULL,           -- approved, rejected or reopened
        actor TEXT NOT NULL,            -- "key 3", "studio (open mode)" or the --reviewer of the CLI
        key_id INTEGER,                 -- the deciding API key (NULL: the CLI or open mode)
        note TEXT
    );
    CREATE INDEX review_log_event ON review_log(event_id, id);
    CREATE INDEX generations_created ON generations(created);
    CREATE INDEX audit_events_created ON audit_events(created);
    """,
]


def default_data_dir() -> Path:
    """$LUOXIA_HOME, else ~/.luoxia."""
    return Path(os.environ.get(DATA_HOME_ENV) or Path.home() / ".luoxia")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def connect(path: str | Path, migrations: Sequence[str] = MIGRATIONS, what: str = "Luoxia") -> sqlite3.Connection:
    """A connection to the database at ``path`` (created, migrated with ``migrations``, WAL), usable
    from any thread (callers serialise their own use of it). It holds prompts and review excerpts,
    so its directory is private (0700) and its files are readable by their owner only (0600).
    Another store (an application's state) passes its own ``migrations`` and name."""
    path = Path(path)
    private_directory(path.parent)
    private_files(path)
    try:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        migrate(connection, migrations)
    except sqlite3.DatabaseError as error:
        raise LuoxiaError(f"{path}: not a usable {what} database ({error})") from None
    private_files(path)  # the -wal and -shm files SQLite has just created (with the database's mode)
    return connection


def private_directory(directory: Path) -> None:
    """Create ``directory`` 0700; an existing one of ours that already holds a database is tightened
    to 0700, any other one that others can read is left alone with a warning."""
    if directory.exists() and not directory.is_dir():
        raise LuoxiaError(f"{directory}: not a directory (the data directory must be one)")
    if not directory.exists():
        try:
            directory.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            pass  # made meanwhile by another process
        except OSError as error:
            raise LuoxiaError(f"{directory}: cannot create the data directory ({error.strerror})") from None
        os.chmod(directory, 0o700)  # mkdir's mode is cut by the umask; this is exact
        return
    mode = directory.stat().st_mode & 0o777
    if mode & 0o077 == 0:
        return
    if (directory / DB_FILE).exists() and directory.stat().st_uid == os.getuid():
        os.chmod(directory, 0o700)
    else:
        log.warning("data directory %s is readable by other users (mode %o); it will hold prompts", directory, mode)


def private_files(path: Path) -> None:
    """The database and its -wal/-shm/-journal files 0600: created so when missing (SQLite gives
    its side files the database's mode), tightened when ours and wider."""
    if not path.exists():
        try:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as error:
            raise LuoxiaError(f"{path}: cannot create the database ({error.strerror})") from None
    for suffix in DB_SUFFIXES:
        file = path.with_name(path.name + suffix)
        try:
            info = file.stat()
            if info.st_mode & 0o077 and info.st_uid == os.getuid():
                os.chmod(file, 0o600)
        except FileNotFoundError:
            continue


def cutoff(days: int) -> str:
    """The `now` of ``days`` days ago: rows created before it are past their retention."""
    return (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds")


def purge(connection: sqlite3.Connection, before: str) -> dict[str, int]:
    """Delete what was stored before ``before`` (an ISO time as `now` writes it): generations,
    conversations with no generation left, and audit events already reviewed (with their review
    log); pending events wait for their reviewer. How many rows of each went."""
    with transaction(connection) as db:
        generations = db.execute("DELETE FROM generations WHERE created < ?", (before,)).rowcount
        conversations = db.execute(
            "DELETE FROM conversations WHERE created < ? AND NOT EXISTS "
            "(SELECT 1 FROM generations WHERE generations.conversation_id = conversations.id)", (before,)).rowcount
        db.execute("DELETE FROM review_log WHERE event_id IN "
                   "(SELECT id FROM audit_events WHERE created < ? AND status != 'pending')", (before,))
        events = db.execute("DELETE FROM audit_events WHERE created < ? AND status != 'pending'", (before,)).rowcount
    return {"generations": generations, "conversations": conversations, "audit_events": events}


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


def migrate(connection: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Apply the migrations this database has not seen; the schema version it is at now."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise LuoxiaError(f"database schema version {version} is newer than this Luoxia ({len(migrations)}); upgrade")
    for number in range(version, len(migrations)):
        with transaction(connection):
            for statement in filter(str.strip, migrations[number].split(";")):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number + 1}")
    return len(migrations)
