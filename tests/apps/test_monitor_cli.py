"""``luoxia apps monitor``: build, simulate, run (files, stdin, a watched folder; a rerun counts
nothing twice), alerts, report, and one-line errors."""

from __future__ import annotations

import json
from functools import partial

import pytest

import luoxia.cli_monitor
from luoxia.apps.monitor import load_monitor
from tests.apps.monitor_stub import SOURCE, keyword_sentiment
from tests.helpers import luoxia as run


@pytest.fixture(autouse=True)
def fast_sentiment(monkeypatch):
    monkeypatch.setattr(luoxia.cli_monitor, "load_monitor", partial(load_monitor, sentiment=keyword_sentiment,
                                                                    source=SOURCE))


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_build_simulate_run_alerts_report(tmp_path):
    app, stream = str(tmp_path / "app"), tmp_path / "stream.jsonl"
    built = run("apps", "monitor", "build", "--out", app, "--no-similarity", "--window-minutes", "30")
    assert "30-minute windows" in built.stderr
    simulated = run("apps", "monitor", "simulate", "--out", str(stream), "--rate", "4", "--burst", "ACME@4x40/30",
                    "--seed", "3")
    assert "78 items" in simulated.stderr and len(stream.read_text().splitlines()) == 78
    first = run("apps", "monitor", "run", app, str(stream), "--flush", "--alerts", str(tmp_path / "alerts.jsonl"))
    alerts = lines(first.stdout)
    assert lines((tmp_path / "alerts.jsonl").read_text()) == alerts
    assert any(a["topic"] == "$ACME" for a in alerts) and "78 items stored" in first.stderr
    again = run("apps", "monitor", "run", app, "-", "--flush", input=stream.read_text())
    assert lines(again.stdout) == [] and "78 items stored, 0 new alert(s)" in again.stderr
    stored = lines(run("apps", "monitor", "alerts", app, "--topic", "$ACME").stdout)
    assert [a["id"] for a in stored] == [a["id"] for a in alerts if a["topic"] == "$ACME"][::-1]
    run("apps", "monitor", "report", app, "--out", str(tmp_path / "report"), "--hours", "24", "--topic", "$ACME")
    assert "## $ACME" in (tmp_path / "report" / "report.md").read_text()


def test_a_watched_folder(tmp_path):
    app, folder = str(tmp_path / "app"), tmp_path / "inbox"
    folder.mkdir()
    run("apps", "monitor", "build", "--out", app, "--no-similarity")
    (folder / "a.jsonl").write_text(json.dumps({"text": "$ACME misses estimates", "time": "2026-01-05T10:00:00Z"})
                                    + "\n")
    (folder / "b.csv").write_text("id,text,time\nx1,$BOLT rallies,2026-01-05T10:20:00Z\n")
    done = run("apps", "monitor", "run", app, "--watch", str(folder), "--polls", "1")
    assert "2 items stored" in done.stderr


def test_monitor_cli_errors(tmp_path):
    assert "--watch FOLDER" in run("apps", "monitor", "run", str(tmp_path), check=False).stderr
    bad = run("apps", "monitor", "simulate", "--out", str(tmp_path / "s.jsonl"), "--burst", "ACME", check=False)
    assert bad.returncode == 2 and "TICKER@HOURS" in bad.stderr
    missing = run("apps", "monitor", "alerts", str(tmp_path / "none"), check=False)
    assert missing.returncode == 2 and "no app.yaml" in missing.stderr
