"""The audit trail: every flagged, redacted or blocked decision of the guard, in SQLite, and the
human review queue over it (`luoxia review list|show|approve|reject|reopen`).

A verdict is final: deciding an event that is not pending raises `AlreadyDecided` until it is
reopened (by an admin). Every verdict and reopening is kept in the review log with who made it.

The events live in the data directory's database (`luoxia.database`: WAL, versioned schema), so
each is durable once `record` returns and a killed process loses nothing committed.

Privacy: the original content is stored only as a keyed hash (HMAC-SHA256 under the data
directory's own random secret, `SECRET_FILE`), so that an excerpt's masked values cannot be found
by hashing guesses; reviewers see an excerpt with the personal data masked (`luoxia.safety.pii`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from luoxia.database import DB_FILE, connect, default_data_dir, now, transaction
from luoxia.errors import LuoxiaError, NotFound

EXCERPT_CHARS = 2000
MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id names no event
SECRET_FILE = "audit-hmac.key"  # 32 random bytes, mode 0600: the key of the content hashes
ReviewStatus = Literal["pending", "approved", "rejected"]
REVIEW_STATUSES: tuple[str, ...] = ("pending", "approved", "rejected")


@dataclass
class AuditEvent:
    id: int
    created: str
    stage: str
    action: str
    categories: list[str]
    scores: dict[str, float]
    model: str | None
    content_sha256: str  # HMAC-SHA256 of the content under the data directory's secret (the column's old name)
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


class AlreadyDecided(LuoxiaError):
    """A verdict on an event that already has one: reopen it first."""


class AuditStore:
    """The audit table of one data directory."""

    def __init__(self, data_dir: str | Path | None = None):
        self.path = Path(data_dir or default_data_dir()) / DB_FILE
        self.connection = connect(self.path)
        self.lock = threading.RLock()  # one connection, shared by a server's threads
        self.secret = load_secret(self.path.parent / SECRET_FILE)

    def content_hash(self, content: str) -> str:
        """HMAC-SHA256 of ``content`` under this data directory's secret: equal contents match, and
        nobody without the secret can test a guess."""
        return hmac.new(self.secret, content.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def record(self, stage: str, action: str, categories: list[str], scores: dict[str, float], content: str,
               excerpt: str, model: str | None = None) -> int:
        """Store one decision about ``content`` (kept only as `content_hash`); its id. Committed (and
        on disk) when this returns."""
        content_sha256 = self.content_hash(content)
        with self.lock, transaction(self.connection) as db:
            cursor = db.execute(
                "INSERT INTO audit_events (created, stage, action, categories, scores, model, content_sha256, excerpt)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now(), stage, action, json.dumps(categories), json.dumps(scores), model, content_sha256,
                 excerpt[:EXCERPT_CHARS]))
            return int(cursor.lastrowid)

    def list(self, status: str | None = "pending", limit: int = 50) -> list[AuditEvent]:
        if status is not None and status not in REVIEW_STATUSES:
            raise LuoxiaError(f"unknown review status '{status}'; valid: {', '.join(REVIEW_STATUSES)}")
        if not 1 <= limit <= MAX_ID:
            raise LuoxiaError(f"limit must be a positive number, not {limit}")
        query, args = "SELECT * FROM audit_events", ()
        if status is not None:
            query, args = query + " WHERE status = ?", (status,)
        with self.lock:
            rows = self.connection.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [AuditEvent.from_row(row) for row in rows]

    def get(self, event_id: int) -> AuditEvent:
        row = None
        if 0 < event_id <= MAX_ID:
            with self.lock:
                row = self.connection.execute("SELECT * FROM audit_events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            raise NotFound(f"no audit event {event_id}")
        return AuditEvent.from_row(row)

    def review(self, event_id: int, status: ReviewStatus, reviewer: str, note: str | None = None,
               key_id: int | None = None) -> AuditEvent:
        """A human's verdict on a pending event: ``approved`` (the content is acceptable after all) or
        ``rejected``; logged with ``reviewer`` and the deciding API key (None: the CLI or open mode)."""
        if status not in ("approved", "rejected"):
            raise LuoxiaError(f"a review ends in approved or rejected, not '{status}'")
        self.get(event_id)
        with self.lock, transaction(self.connection) as db:
            changed = db.execute("UPDATE audit_events SET status = ?, reviewer = ?, review_note = ?, reviewed = ? "
                                 "WHERE id = ? AND status = 'pending'", (status, reviewer, note, now(), event_id))
            if changed.rowcount == 0:
                raise AlreadyDecided(f"audit event {event_id} is already decided; an admin can reopen it")
            self._log(db, event_id, status, reviewer, key_id, note)
        return self.get(event_id)

    def reopen(self, event_id: int, actor: str, note: str | None = None, key_id: int | None = None) -> AuditEvent:
        """Back to pending, for a new verdict (an admin's act: callers check the role); logged."""
        self.get(event_id)
        with self.lock, transaction(self.connection) as db:
            db.execute("UPDATE audit_events SET status = 'pending', reviewer = NULL, review_note = NULL, "
                       "reviewed = NULL WHERE id = ?", (event_id,))
            self._log(db, event_id, "reopened", actor, key_id, note)
        return self.get(event_id)

    def decisions(self, event_id: int) -> list[dict]:
        """The review log of one event, oldest first: action, actor, key_id, note, created."""
        self.get(event_id)
        with self.lock:
            rows = self.connection.execute("SELECT created, action, actor, key_id, note FROM review_log "
                                           "WHERE event_id = ? ORDER BY id", (event_id,)).fetchall()
        return [dict(row) for row in rows]

    @staticmethod
    def _log(db: sqlite3.Connection, event_id: int, action: str, actor: str, key_id: int | None,
             note: str | None) -> None:
        db.execute("INSERT INTO review_log (event_id, created, action, actor, key_id, note) VALUES (?, ?, ?, ?, ?, ?)",
                   (event_id, now(), action, actor, key_id, note))

    def close(self) -> None:
        self.connection.close()


def load_secret(path: Path) -> bytes:
    """The secret in ``path``, created on first use: written whole to a private (0600) temporary file,
    then linked into place, so that concurrent first uses agree on one secret and none reads half."""
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(secrets.token_bytes(32))
                file.flush()
                os.fsync(file.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            temporary.unlink(missing_ok=True)
    secret = path.read_bytes()
    if len(secret) < 32:
        raise LuoxiaError(f"{path}: the audit hash secret is damaged (expected 32 bytes); restore it from a backup, "
                          "or delete it to start a new one (earlier hashes then match nothing)")
    return secret
