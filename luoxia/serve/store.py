"""The server's records in the data directory's database: API keys (stored as SHA-256 hashes),
conversations and generations. A generation is written when its request starts and completed when
it ends, each in its own committed transaction, so a killed server leaves every earlier record
intact and the interrupted one marked ``started``."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from luoxia.database import DB_FILE, connect, default_data_dir, now, transaction
from luoxia.errors import LuoxiaError

KEY_PREFIX = "lx-"


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


class Store:
    """One connection shared by the server's threads, serialised by a lock."""

    def __init__(self, data_dir: str | Path | None = None):
        self.path = Path(data_dir or default_data_dir()) / DB_FILE
        self.connection = connect(self.path)
        self.lock = threading.Lock()

    def close(self) -> None:
        self.connection.close()

    # API keys.

    def create_key(self, name: str) -> tuple[ApiKey, str]:
        """A new key: its record and the secret, which is shown once and stored only hashed."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.lock, transaction(self.connection) as db:
            cursor = db.execute("INSERT INTO api_keys (name, prefix, key_sha256, created) VALUES (?, ?, ?, ?)",
                                (name, secret[:10], hash_key(secret), now()))
        return self.get_key(int(cursor.lastrowid)), secret

    def get_key(self, key_id: int) -> ApiKey:
        with self.lock:
            row = self.connection.execute("SELECT id, name, prefix, created, revoked FROM api_keys WHERE id = ?",
                                          (key_id,)).fetchone()
        if row is None:
            raise LuoxiaError(f"no API key {key_id} in {self.path}")
        return ApiKey(**dict(row))

    def list_keys(self) -> list[ApiKey]:
        with self.lock:
            rows = self.connection.execute("SELECT id, name, prefix, created, revoked FROM api_keys ORDER BY id")
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
                "SELECT id, name, prefix, created, revoked FROM api_keys WHERE key_sha256 = ? AND revoked IS NULL",
                (hash_key(secret),)).fetchone()
        return ApiKey(**dict(row)) if row else None

    # Generations and conversations.

    def start_generation(self, key_id: int | None, endpoint: str, model: str, prompt: object, parameters: dict,
                         conversation_id: str | None = None) -> str:
        generation_id = uuid.uuid4().hex
        with self.lock, transaction(self.connection) as db:
            if conversation_id is not None:
                db.execute("INSERT OR IGNORE INTO conversations (id, key_id, created, title) VALUES (?, ?, ?, ?)",
                           (conversation_id, key_id, now(), _title(prompt)))
            db.execute("INSERT INTO generations (id, created, key_id, conversation_id, endpoint, model, prompt, "
                       "parameters, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'started')",
                       (generation_id, now(), key_id, conversation_id, endpoint, model,
                        json.dumps(prompt, ensure_ascii=False), json.dumps(parameters)))
        return generation_id

    def finish_generation(self, generation_id: str, status: str, output: str | None = None,
                          finish_reason: str | None = None, safety: dict | None = None, prompt_tokens: int = 0,
                          completion_tokens: int = 0, latency_ms: float = 0.0) -> None:
        watermark = (safety or {}).get("watermark", {}).get("key_id")
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
