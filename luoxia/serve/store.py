"""The server's records in the data directory's database: API keys (stored as SHA-256 hashes, each
with a role), conversations and generations. A generation is written when its request starts and
completed when it ends, each in its own committed transaction, so a killed server leaves every
earlier record intact and the interrupted one marked ``started``.

Prompts, outputs and conversation titles are stored with their personal data masked
(`luoxia.safety.pii`) unless the server is told to keep them raw, and everything is deleted after
the retention period by a purge that runs in its own thread (at start, then hourly)."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from luoxia.database import DB_FILE, connect, cutoff, default_data_dir, now, purge, transaction
from luoxia.errors import LuoxiaError, NotFound
from luoxia.safety.pii import redact

KEY_PREFIX = "lx-"
Role = Literal["user", "reviewer", "admin"]
ROLES: tuple[str, ...] = ("user", "reviewer", "admin")  # each may do what the ones before it may
PURGE_INTERVAL_S = 3600.0
KEY_COLUMNS = "id, name, prefix, created, revoked, role"
log = logging.getLogger("luoxia.serve")


class ConversationTaken(LuoxiaError):
    """A conversation id that another key created: ids belong to the key that made them."""


def hash_key(key: str) -> str:
    """Keys are 256-bit random strings, so a plain SHA-256 (no salt, no slow hash) cannot be reversed."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class ApiKey:
    id: int
    name: str
    prefix: str
    created: str
    revoked: str | None
    role: str = "user"


class Store:
    """One connection shared by the server's threads, serialised by a lock. ``raw_prompts`` keeps
    prompts unmasked; ``retention_days`` (0: forever) starts the purge thread."""

    def __init__(self, data_dir: str | Path | None = None, raw_prompts: bool = False, retention_days: int = 0):
        self.path = Path(data_dir or default_data_dir()) / DB_FILE
        self.connection = connect(self.path)
        self.lock = threading.Lock()
        self.raw_prompts = raw_prompts
        self.stopping = threading.Event()
        self.purger: threading.Thread | None = None
        if retention_days > 0:
            self.purger = threading.Thread(target=self._purge_periodically, args=(retention_days,), daemon=True,
                                           name="luoxia-purge")
            self.purger.start()

    def close(self) -> None:
        self.stopping.set()
        if self.purger is not None:
            self.purger.join(timeout=30)
        self.connection.close()

    # Retention.

    def purge(self, retention_days: int) -> dict[str, int]:
        """Delete what is older than ``retention_days`` (`luoxia.database.purge`); the rows deleted."""
        with self.lock:
            return purge(self.connection, cutoff(retention_days))

    def _purge_periodically(self, retention_days: int) -> None:
        while not self.stopping.is_set():
            try:
                deleted = self.purge(retention_days)
                log.info("retention purge (%d days): %s", retention_days, deleted)
            except Exception:  # a busy or failing database must not end the thread: retry next time
                log.exception("retention purge failed")
            self.stopping.wait(PURGE_INTERVAL_S)

    # API keys.

    def create_key(self, name: str, role: str = "user") -> tuple[ApiKey, str]:
        """A new key: its record and the secret, which is shown once and stored only hashed."""
        if role not in ROLES:
            raise LuoxiaError(f"unknown role '{role}'; valid: {', '.join(ROLES)}")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.lock, transaction(self.connection) as db:
            cursor = db.execute("INSERT INTO api_keys (name, prefix, key_sha256, created, role) VALUES (?, ?, ?, ?, ?)",
                                (name, secret[:10], hash_key(secret), now(), role))
        return self.get_key(int(cursor.lastrowid)), secret

    def get_key(self, key_id: int) -> ApiKey:
        row = None
        if 0 < key_id < 2**63:
            with self.lock:
                row = self.connection.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise NotFound(f"no API key {key_id}")
        return ApiKey(**dict(row))

    def role(self, key_id: int | None) -> str:
        """What a caller may do: its key's role; open mode (no key, loopback only) is the local admin."""
        return "admin" if key_id is None else self.get_key(key_id).role

    def list_keys(self) -> list[ApiKey]:
        with self.lock:
            rows = self.connection.execute(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id")
            return [ApiKey(**dict(row)) for row in rows.fetchall()]

    def revoke_key(self, key_id: int) -> ApiKey:
        self.get_key(key_id)
        with self.lock, transaction(self.connection) as db:
            db.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (now(), key_id))
        return self.get_key(key_id)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The live key with this secret, or None."""
        with self.lock:
            row = self.connection.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_sha256 = ? AND revoked IS NULL",
                (hash_key(secret),)).fetchone()
        return ApiKey(**dict(row)) if row else None

    # Generations and conversations.

    def start_generation(self, key_id: int | None, endpoint: str, model: str, prompt: object, parameters: dict,
                         conversation_id: str | None = None) -> str:
        """Record a request as ``started``; a conversation id another key created raises `ConversationTaken`."""
        generation_id = uuid.uuid4().hex
        prompt = self._masked(prompt)
        with self.lock, transaction(self.connection) as db:
            if conversation_id is not None:
                owner = db.execute("SELECT key_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
                if owner is not None and owner["key_id"] != key_id:
                    raise ConversationTaken(f"conversation '{conversation_id}' belongs to another key; "
                                            "use a new X-Conversation-Id")
                if owner is None:
                    db.execute("INSERT INTO conversations (id, key_id, created, title) VALUES (?, ?, ?, ?)",
                               (conversation_id, key_id, now(), _title(prompt)))
            db.execute("INSERT INTO generations (id, created, key_id, conversation_id, endpoint, model, prompt, "
                       "parameters, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'started')",
                       (generation_id, now(), key_id, conversation_id, endpoint, model,
                        json.dumps(prompt, ensure_ascii=False), json.dumps(parameters)))
        return generation_id

    def _masked(self, value: object) -> object:
        """``value`` with personal data masked in every string in it (prompts, messages, outputs),
        unless the server keeps raw prompts."""
        if self.raw_prompts:
            return value
        if isinstance(value, str):
            return redact(value).text
        if isinstance(value, list):
            return [self._masked(item) for item in value]
        if isinstance(value, dict):
            return {key: self._masked(item) for key, item in value.items()}
        return value

    def _masked_json(self, text: str | None) -> str | None:
        """`_masked` inside a JSON document (the outputs), which stays valid JSON."""
        if text is None or self.raw_prompts:
            return text
        try:
            return json.dumps(self._masked(json.loads(text)), ensure_ascii=False)
        except json.JSONDecodeError:
            return self._masked(text)  # type: ignore[return-value]

    def finish_generation(self, generation_id: str, status: str, output: str | None = None,
                          finish_reason: str | None = None, safety: dict | None = None, prompt_tokens: int = 0,
                          completion_tokens: int = 0, latency_ms: float = 0.0) -> None:
        # the key id of the first choice that was watermarked (``safety`` is {"choices": [record, ...]})
        choices = (safety or {}).get("choices", [])
        watermark = next((c["watermark"]["key_id"] for c in choices if "watermark" in c), None)
        output = self._masked_json(output)  # before taking the lock: masking is CPU work
        with self.lock, transaction(self.connection) as db:
            db.execute("UPDATE generations SET status = ?, output = ?, finish_reason = ?, safety = ?, "
                       "watermark_key_id = ?, prompt_tokens = ?, completion_tokens = ?, latency_ms = ? WHERE id = ?",
                       (status, output, finish_reason, json.dumps(safety or {}), watermark, prompt_tokens,
                        completion_tokens, latency_ms, generation_id))

    def history(self, key_id: int | None, limit: int = 50) -> list[dict]:
        """The newest generations of one key (``None``: those made without a key, in open mode)."""
        with self.lock:
            rows = self.connection.execute(
                "SELECT * FROM generations WHERE key_id IS ? ORDER BY created DESC LIMIT ?", (key_id, limit)).fetchall()
        records = []
        for row in rows:
            record = dict(row)
            for field in ("prompt", "parameters", "safety"):
                record[field] = json.loads(record[field]) if record[field] else None
            records.append(record)
        return records


def _title(prompt: object) -> str:
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)
    return text[:80]
