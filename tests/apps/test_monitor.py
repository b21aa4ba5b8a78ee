"""The financial sentiment monitor: topics, the replay simulator, windows and the detector, alerts
(stored, redacted, webhooked), restart without double counting, reports, and bad settings."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

import luoxia.apps.monitor as monitor_module
from luoxia.apps.monitor import TAGGER_SOURCE, MonitorApp, build_monitor, check_items, load_monitor
from luoxia.apps.monitor_detect import Detector, TopicState
from luoxia.apps.monitor_report import to_html, to_markdown, write_report
from luoxia.apps.monitor_stream import (
    Item,
    TopicAssigner,
    cashtags,
    read_items,
    read_topics,
    retag,
)
from luoxia.errors import ConfigError, DataError
from tests.apps.monitor_stub import SOURCE, START, keyword_sentiment, stream
from tests.retrieval.conftest import HashEncoder


def monitor(tmp_path, **settings) -> MonitorApp:
    build_monitor(tmp_path / "app", {"similarity": False, **settings})
    return load_monitor(tmp_path / "app", sentiment=keyword_sentiment, source=SOURCE)


def test_topics_from_cashtags_and_keywords():
    assert cashtags("Buy $acme and $BRK.B, not $ACME again; $5 is no tag") == ["$ACME", "$BRK.B"]
    assigner = TopicAssigner(read_topics(), None)
    (topics,) = assigner.assign(["$ACME misses quarterly earnings as the Fed raises rates"])
    assert topics == ["all", "earnings", "macro", "$ACME"]
    assert retag("$BOLT falls", "acme") == "$ACME falls" and retag("Stocks fall", "ACME") == "$ACME Stocks fall"


def test_topics_by_encoder_similarity_and_bad_topic_files(tmp_path):
    encoder = HashEncoder()
    topics = read_topics()
    assigner = TopicAssigner(topics, encoder, threshold=0.999)
    assert "earnings" in assigner.assign([topics[0].description])[0]  # a text identical to the description
    bad = tmp_path / "topics.yaml"
    bad.write_text("earnings: {description: results, words: [eps]}\n")
    with pytest.raises(ConfigError, match="unknown keys words"):
        read_topics(bad)
    bad.write_text("earnings: {keywords: [eps]}\n")
    with pytest.raises(ConfigError, match="needs a description"):
        read_topics(bad)


def test_the_simulator_is_seeded_and_injects_bursts():
    first, again, other = stream(1), stream(1), stream(2)
    assert [i.to_json() for i in first] == [i.to_json() for i in again]
    assert [i.id for i in first] != [i.id for i in other] or [i.time for i in first] != [i.time for i in other]
    burst = [i for i in first if i.burst == 0]
    assert len(burst) == 40 and all(i.label == "negative" and "$ACME" in i.text for i in burst)
    span = (burst[-1].time - burst[0].time).total_seconds()
    assert span <= 30 * 60 and burst[0].time >= datetime(2026, 1, 5, 10, tzinfo=UTC)


def test_a_burst_raises_one_alert_with_its_details_and_redacted_items(tmp_path):
    app = monitor(tmp_path)
    items = stream(0)
    burst = [i for i in items if i.burst == 0]
    burst[0].text += " Call 13812345678 or write to jane.doe@example.com"
    alerts = app.ingest(items)
    topics = {a["topic"] for a in alerts}
    assert "$ACME" in topics and all(a["topic"] in ("$ACME", "all") or a["negative"] >= 8 for a in alerts)
    alert = next(a for a in alerts if a["topic"] == "$ACME")
    assert set(alert) >= {"topic", "window_start", "window_end", "negative_share", "baseline", "score", "top_items"}
    assert alert["negative_share"] >= 0.4 and alert["score"] >= 4 and len(alert["top_items"]) == 5
    assert alert["window_end"] > burst[0].time.isoformat() and alert["sentiment_source"] == "keywords (test)"
    assert app.alerts("$ACME")[0]["id"] == alert["id"]
    stored = json.dumps(app.alerts()) + json.dumps(app.items("$ACME", START, datetime(2027, 1, 1, tzinfo=UTC)))
    dump = "\n".join(app.db.iterdump())
    for secret in ("13812345678", "jane.doe@example.com"):
        assert secret not in stored and secret not in dump
    assert "$ACME" in stored


def test_a_clean_stream_raises_no_alert(tmp_path):
    app = monitor(tmp_path)
    assert app.ingest(stream(3, bursts=())) == []
    series = app.series("all")
    assert sum(s["volume"] for s in series) == len(stream(3, bursts=()))
    assert all(0 <= s["negative_share"] <= 1 for s in series)


def counts(app: MonitorApp) -> tuple:
    return (app.status()["items"], tuple((t["topic"], t["volume"], t["negative"]) for t in app.topics()),
            tuple((a["topic"], a["window_start"], a["negative"]) for a in app.alerts()))


def test_a_restart_resumes_without_double_counting(tmp_path, monkeypatch):
    items = stream(4)
    once = monitor(tmp_path / "once")
    once.ingest(items)
    half = len(items) // 2
    first = monitor(tmp_path / "again")
    first.ingest(items[:half])
    first.close()  # the process ends
    again = load_monitor(tmp_path / "again" / "app", sentiment=keyword_sentiment, source=SOURCE)

    def crash(*args):
        raise KeyboardInterrupt  # killed in the middle of a batch: its transaction is rolled back

    monkeypatch.setattr(again, "_close_windows", crash)
    with pytest.raises(KeyboardInterrupt):
        again.ingest(items[half:])
    monkeypatch.undo()
    assert again.status()["items"] == half
    again.ingest(items)  # the whole file again, as a restarted `run` would read it
    again.ingest(items[:10])
    assert counts(again) == counts(once)


def test_alerts_go_to_a_webhook(tmp_path):
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        app = monitor(tmp_path, webhook=f"http://127.0.0.1:{server.server_port}/alerts")
        alerts = app.ingest(stream(0))
    finally:
        server.shutdown()
        server.server_close()
    assert alerts and [a["id"] for a in received] == [a["id"] for a in alerts]
    assert received[0]["topic"] == alerts[0]["topic"]


def test_a_report_has_counts_plots_alerts_and_a_summary(tmp_path):
    app = monitor(tmp_path)
    app.ingest(stream(0))
    report = app.report(["all", "$ACME"], hours=48)
    topics = {t.topic: t for t in report.topics}
    assert topics["all"].volume == len(stream(0)) and topics["$ACME"].alerts
    assert topics["$ACME"].png.startswith(b"\x89PNG") and 1 <= len(topics["$ACME"].summary) <= 3
    assert "## $ACME" in to_markdown(report) and "<h2>$ACME</h2>" in to_html(report)
    files = write_report(report, tmp_path / "report")
    assert (tmp_path / "report" / "report.html").read_text().count("data:image/png;base64,") == len(report.topics)
    assert files["png:$ACME"].endswith("trend_ACME.png")
    with pytest.raises(DataError, match="unknown topic"):
        app.report(["$NOPE"])


def test_the_prototype_tagger_is_the_fallback_and_says_so(tmp_path):
    build_monitor(tmp_path / "app", {"similarity_threshold": 0.5})
    app = load_monitor(tmp_path / "app", encoder=HashEncoder())
    assert app.source == TAGGER_SOURCE and app.status()["sentiment_source"] == TAGGER_SOURCE
    app.ingest(stream(0)[:20])
    assert app.status()["items"] == 20


def test_cusum_accumulates_a_sustained_rise_that_ewma_misses():
    ewma = Detector("ewma", alpha=0.02, threshold=4.0, min_negative=1, min_share=0)
    cusum = Detector("cusum", alpha=0.02, h=5.0, min_negative=1, min_share=0)
    states = TopicState(mean=4, var=4, volume=10), TopicState(mean=4, var=4, volume=10)  # a settled baseline
    fired = {"ewma": [], "cusum": []}
    for window in range(40):
        negative = 4 if window < 20 else 7  # a small, lasting shift
        for detector, state in zip((ewma, cusum), states, strict=True):
            fired[detector.name].append(detector.update(state, window, negative, 10).alert)
    assert not any(fired["ewma"]) and any(fired["cusum"][20:]) and not any(fired["cusum"][:20])


def test_bad_settings_and_items(tmp_path):
    with pytest.raises(ConfigError, match="valid"):
        build_monitor(tmp_path / "a", {"window": 5})
    with pytest.raises(ConfigError, match="http"):
        build_monitor(tmp_path / "a", {"webhook": "ftp://example.com"})
    with pytest.raises(ConfigError, match="not a classification run"):
        build_monitor(tmp_path / "a", {"classifier": str(tmp_path)})
    with pytest.raises(ConfigError, match="no app.yaml"):
        load_monitor(tmp_path / "missing")
    with pytest.raises(DataError, match="not a time"):
        check_items([{"text": "hi", "time": "yesterday"}])
    for far in ("0001-01-01T00:00:00", -1e20, 1e20):
        with pytest.raises(DataError, match="not a time|outside the years"):
            check_items([{"text": "hi", "time": far}])
    with pytest.raises(DataError, match="no 'text'"):
        check_items([{"time": "2026-01-01T00:00:00"}])
    file = tmp_path / "items.jsonl"
    file.write_text('{"text": "a", "time": "2026-01-01T00:00:00Z", "id": "x"}\n{"text": "b"}\n')
    with pytest.raises(DataError):
        read_items(file)


def test_empty_windows_fold_in_closed_form():
    detector = Detector("ewma", alpha=0.2)
    stepped, jumped = TopicState(mean=6.0, var=3.0, volume=20.0, last=0), TopicState(mean=6.0, var=3.0, volume=20.0,
                                                                                     last=0)
    for _ in range(7):
        detector._fold(stepped, 0.0, 0.0)  # seven empty windows, one at a time
    detector.skip_to(jumped, 8)
    # different float paths (a power against repeated products): equal to rounding
    np.testing.assert_allclose([jumped.mean, jumped.var, jumped.volume], [stepped.mean, stepped.var, stepped.volume],
                               rtol=1e-9)


def test_a_classifier_run_is_mapped_to_negative_neutral_positive(monkeypatch):
    class Fake:
        def __init__(self, run_dir, device="auto"):
            self.names = names

        def probabilities(self, texts):
            return np.tile([[0.7, 0.2, 0.1]], (len(texts), 1))  # Bearish, Bullish, Neutral

    monkeypatch.setattr(monitor_module, "IntentClassifier", Fake)
    names = ["Bearish", "Bullish", "Neutral"]
    sentiment = monitor_module.ClassifierSentiment("runs/fin-sentiment")
    np.testing.assert_array_equal(sentiment(["a"]), [[0.7, 0.1, 0.2]])  # columns now negative, neutral, positive
    assert sentiment.source == "classifier runs/fin-sentiment"
    names = ["billing", "refund"]
    with pytest.raises(ConfigError, match="not Bearish/Bullish/Neutral"):
        monitor_module.ClassifierSentiment("runs/intents")


def test_late_items_are_counted_but_never_rescored(tmp_path):
    app = monitor(tmp_path)
    items = stream(0)
    app.ingest(items)
    alerts = app.status()["alerts"]
    late = Item("$ACME misses again, sued and downgraded", items[0].time)
    assert app.ingest([late] * 3) == [] and app.status()["late_items"] == 1
    assert app.status()["alerts"] == alerts and sum(s["volume"] for s in app.series("all")) == len(items) + 1
