"""The data directory at rest (issue 13, item 11): private modes, prompts stored with personal data
masked unless asked otherwise, and the retention purge; and the runs page's damaged entries."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from luoxia.database import DB_FILE, connect, cutoff, now
from luoxia.errors import LuoxiaError
from luoxia.safety.audit import AuditStore
from luoxia.serve.app import create_app
from luoxia.serve.runs import list_runs
from luoxia.serve.store import Store
from tests.echo import LOOPBACK, echo_models, echo_settings
from tests.helpers import luoxia

PII = "mail amy@example.org or call 13812345678"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_data_directory_is_0700_and_database_files_0600(tmp_path):
    old = os.umask(0o022)  # the usual umask, which made them 0755 and 0644
    try:
        store = Store(tmp_path / "new" / "home")
        store.create_key("k")
    finally:
        os.umask(old)
    home = tmp_path / "new" / "home"
    files = [home / (DB_FILE + suffix) for suffix in ("", "-wal", "-shm")]
    assert mode(home) == 0o700 and all(f.exists() and mode(f) == 0o600 for f in files), \
        {str(p): oct(mode(p)) for p in [home, *files] if p.exists()}
    store.close()


def test_an_existing_data_directory_of_ours_is_tightened(tmp_path):
    home = tmp_path / "old"
    connect(home / DB_FILE).close()
    os.chmod(home, 0o755)
    os.chmod(home / DB_FILE, 0o644)
    connect(home / DB_FILE).close()
    assert (mode(home), mode(home / DB_FILE)) == (0o700, 0o600)


def test_a_shared_directory_without_a_database_is_left_alone_with_a_warning(tmp_path, caplog):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with caplog.at_level(logging.WARNING, logger="luoxia.database"):
        connect(shared / "sub.db").close()  # not the data directory's database: the directory is not ours
    assert mode(shared) == 0o755 and "readable by other users" in caplog.text


def test_prompts_outputs_and_titles_are_stored_masked_by_default(tmp_path):
    for raw in (False, True):
        settings = echo_settings(tmp_path / f"data-{raw}", open_access=True, safety=False, store_raw_prompts=raw)
        with TestClient(create_app(settings, models=echo_models(settings)), **LOOPBACK) as client:
            client.post("/v1/completions", json={"model": "echo", "prompt": PII, "max_tokens": 100},
                        headers={"X-Conversation-Id": "c1"})
            client.post("/v1/chat/completions", json={"model": "echo", "max_tokens": 100,
                                                      "messages": [{"role": "user", "content": PII}]})
            history = client.get("/v1/history").json()["data"]
        database = Store(settings.data_dir)
        title = database.connection.execute("SELECT title FROM conversations").fetchone()["title"]
        stored = json.dumps(history, ensure_ascii=False) + title
        database.close()
        if raw:
            assert "amy@example.org" in stored and "13812345678" in title
        else:
            assert "amy@example.org" not in stored and "13812345678" not in stored, stored
            assert "[EMAIL]" in title and [json.loads(r["output"]) for r in history][0] == [
                "mail [EMAIL] or call [PHONE]"]


def old_rows(store: Store, audit: AuditStore, days: int) -> None:
    """One generation, conversation, reviewed and pending audit event, dated ``days`` ago."""
    generation = store.start_generation(None, "completions", "echo", f"{days} days", {}, f"conversation-{days}")
    reviewed = audit.record("input", "block", ["violence"], {}, "x", f"reviewed {days}")
    audit.review(reviewed, "rejected", "ana")
    pending = audit.record("input", "flag", ["violence"], {}, "x", f"pending {days}")
    when = cutoff(days)
    with store.lock:
        store.connection.execute("UPDATE generations SET created = ? WHERE id = ?", (when, generation))
        store.connection.execute("UPDATE conversations SET created = ? WHERE id = ?", (when, f"conversation-{days}"))
        store.connection.execute("UPDATE audit_events SET created = ? WHERE id IN (?, ?)", (when, reviewed, pending))


def test_purge_deletes_what_is_past_retention_and_keeps_the_rest(tmp_path):
    store, audit = Store(tmp_path), AuditStore(tmp_path)
    old_rows(store, audit, 40)
    old_rows(store, audit, 1)
    assert store.purge(30) == {"generations": 1, "conversations": 1, "audit_events": 1}
    prompts = [r["prompt"] for r in store.history(None)]
    assert prompts == ["1 days"]
    assert [c["id"] for c in store.connection.execute("SELECT id FROM conversations")] == ["conversation-1"]
    left = sorted(e.excerpt for e in audit.list(None))
    assert left == ["pending 1", "pending 40", "reviewed 1"]  # pending items wait for their reviewer
    assert store.purge(30) == {"generations": 0, "conversations": 0, "audit_events": 0}
    store.close()
    audit.close()


def test_the_server_purges_at_start_and_the_cli_on_demand(tmp_path):
    store, audit = Store(tmp_path), AuditStore(tmp_path)
    old_rows(store, audit, 40)
    old_rows(store, audit, 20)
    settings = echo_settings(tmp_path, open_access=True, retention_days=30)
    with TestClient(create_app(settings, models=echo_models(settings)), **LOOPBACK) as client:
        for _ in range(200):  # the first purge runs in its thread as the server starts
            if [r["prompt"] for r in client.get("/v1/history").json()["data"]] == ["20 days"]:
                break
            client.app.state.store.stopping.wait(0.05)
        assert [r["prompt"] for r in client.get("/v1/history").json()["data"]] == ["20 days"]
    out = luoxia("purge", "--retention-days", "10", "--data-dir", str(tmp_path))
    assert "1 generations" in out.stdout and store.history(None) == []
    assert luoxia("purge", "--retention-days", "0", "--data-dir", str(tmp_path), check=False).returncode != 0
    store.close()
    audit.close()


def test_retention_zero_keeps_everything_and_starts_no_thread(tmp_path):
    store = Store(tmp_path, retention_days=0)
    assert store.purger is None
    store.close()


def write_run(directory: Path, config: str, metrics: list[str]) -> None:
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(config, encoding="utf-8")
    (directory / "metrics.jsonl").write_text("\n".join(metrics) + "\n", encoding="utf-8")


def test_runs_page_skips_and_logs_entries_it_cannot_read(tmp_path, caplog):
    good_row = json.dumps({"kind": "train", "step": 1, "loss": 2.0})
    write_run(tmp_path / "good", "task: lm\n", [good_row])
    write_run(tmp_path / "bad-yaml", "task: [lm\n", [good_row])
    write_run(tmp_path / "list-yaml", "- task\n- lm\n", [good_row])
    write_run(tmp_path / "no-step", "task: lm\n", [json.dumps({"kind": "train", "loss": 2.0})])
    write_run(tmp_path / "list-row", "task: lm\n", ["[1, 2]"])
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    with caplog.at_level(logging.WARNING, logger="luoxia.serve"):
        runs = list_runs(tmp_path)
    assert [r["name"] for r in runs] == ["good"] and runs[0]["train"] == [(1, 2.0)]
    assert all(name in caplog.text for name in ("bad-yaml", "list-yaml", "no-step", "list-row", "broken"))
    settings = echo_settings(tmp_path / "data", open_access=True, runs_dir=tmp_path)
    with TestClient(create_app(settings, models=echo_models(settings)), **LOOPBACK) as client:
        reply = client.get("/v1/runs")
    assert reply.status_code == 200 and [r["name"] for r in reply.json()["data"]] == ["good"]


def test_now_and_cutoff_compare_as_text():
    assert cutoff(1) < now() and len(cutoff(1)) == len(now())


@pytest.mark.parametrize("role", ["root", ""])
def test_unknown_roles_are_refused(tmp_path, role):
    with pytest.raises(LuoxiaError, match="unknown role"):
        Store(tmp_path).create_key("k", role)


def test_history_names_the_watermark_key_of_a_guarded_generation(tmp_path):
    settings = echo_settings(tmp_path / "data", open_access=True)
    with TestClient(create_app(settings, models=echo_models(settings)), **LOOPBACK) as client:
        reply = client.post("/v1/completions", json={"model": "echo", "prompt": "Hello there.", "max_tokens": 20})
        key_id = reply.json()["choices"][0]["safety"]["watermark"]["key_id"]
        (record,) = client.get("/v1/history").json()["data"]
    assert key_id and record["watermark_key_id"] == key_id
