"""The monitor's periodic report: per topic the counts, a trend plot (volume and negative share per
window, PNG via matplotlib's Agg backend), the alerts and an extractive summary (TextRank,
`luoxia.apps.summarize.extract`) of the most negative items, as Markdown and as one self-contained HTML page.

Everything in it comes from the database, so every text is already PII-redacted.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from luoxia.apps.summarize import extract
from luoxia.checkpoint import atomic_write_text
from luoxia.errors import DataError

SUMMARY_POOL = 30  # the most negative items the summary chooses from


class _Monitor(Protocol):  # `luoxia.apps.monitor.MonitorApp`, which imports this module
    name: str
    source: str
    config: Any

    def newest(self) -> datetime | None: ...
    def topics(self) -> list[dict[str, Any]]: ...
    def series(self, topic: str = "all", since: datetime | None = None) -> list[dict[str, Any]]: ...
    def items(self, topic: str, start: datetime, end: datetime, negative_only: bool = False,
              limit: int = 200) -> list[dict[str, Any]]: ...
    def alerts(self, topic: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...


@dataclass
class TopicReport:
    topic: str
    volume: int
    negative: int
    negative_share: float
    alerts: list[dict[str, Any]]
    summary: list[str]
    png: bytes = field(repr=False)


@dataclass
class Report:
    start: datetime
    end: datetime
    sentiment_source: str
    topics: list[TopicReport]

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "sentiment_source": self.sentiment_source,
                "topics": [{k: v for k, v in t.__dict__.items() if k != "png"} for t in self.topics]}


def trend_png(series: list[dict[str, Any]], title: str) -> bytes:
    """Volume bars and negative share line per window, as PNG bytes."""
    # matplotlib's own Figure, not pyplot: no global state (reports are drawn in server threads), and
    # imported here because it costs every `luoxia` command about a second when imported with the CLI
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 2.6), dpi=90)
    volume_axis = figure.subplots()
    x = list(range(len(series)))
    volume_axis.bar(x, [s["volume"] for s in series], color="#9bb7d4", label="volume")
    volume_axis.set_ylabel("items per window")
    share_axis = volume_axis.twinx()
    share_axis.plot(x, [s["negative_share"] for s in series], color="#c0392b", label="negative share")
    share_axis.set_ylim(0, 1)
    share_axis.set_ylabel("negative share")
    step = max(1, len(series) // 6)
    volume_axis.set_xticks(x[::step], [s["window_start"][5:16].replace("T", " ") for s in series][::step],
                           fontsize=7)
    volume_axis.set_title(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def build_report(app: _Monitor, topics: list[str] | None = None, hours: float | None = None,
                 max_topics: int = 8) -> Report:
    """The report of the ``hours`` (app.yaml's ``report_hours``) up to the newest item, for ``topics``
    (default: ``all`` and the busiest topics)."""
    end = app.newest()
    if end is None:
        raise DataError(f"monitor '{app.name}' has no items yet; ingest some with `luoxia apps monitor run`")
    end = end + timedelta(seconds=1)
    start = end - timedelta(hours=hours or app.config.report_hours)
    known = [t["topic"] for t in app.topics()]
    chosen = topics or (["all"] + [t for t in known if t != "all"])[:max_topics]
    unknown = [t for t in chosen if t not in known]
    if unknown:
        raise DataError(f"unknown topic {', '.join(unknown)}; known: {', '.join(known[:20])}")
    out = []
    for topic in chosen:
        series = app.series(topic, since=start)
        volume, negative = sum(s["volume"] for s in series), sum(s["negative"] for s in series)
        items = app.items(topic, start, end, negative_only=True, limit=SUMMARY_POOL)
        sentences = [item["text"] for item in items]
        summary = [sentences[i] for i in extract(sentences, app.config.summary_sentences)] if sentences else []
        alerts = [a for a in app.alerts(topic) if a["window_start"] >= start.isoformat(timespec="seconds")]
        out.append(TopicReport(topic, volume, negative, round(negative / volume, 4) if volume else 0.0, alerts,
                               summary, trend_png(series, f"{topic}: volume and negative share")))
    return Report(start, end, app.source, out)


def _slug(topic: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in topic.lstrip("$")) or "topic"


def to_markdown(report: Report, images: dict[str, str] | None = None) -> str:
    """Markdown; ``images`` maps a topic to its PNG's path or URL (none: no image lines)."""
    lines = [f"# Sentiment report {report.start:%Y-%m-%d %H:%M} – {report.end:%Y-%m-%d %H:%M} UTC", "",
             f"Sentiment: {report.sentiment_source}.", ""]
    for t in report.topics:
        lines += [f"## {t.topic}", "", f"{t.volume} items, {t.negative} negative ({t.negative_share:.0%}), "
                  f"{len(t.alerts)} alert(s).", ""]
        if images and t.topic in images:
            lines += [f"![{t.topic} trend]({images[t.topic]})", ""]
        for a in t.alerts:
            lines.append(f"- Alert {a['window_start']}: {a['negative']} of {a['volume']} negative "
                         f"({a['negative_share']:.0%}; baseline {a['baseline']:.1f}), score {a['score']:.1f}")
        if t.summary:
            lines += ["", "Summary of the most negative items:", ""] + [f"> {s}" for s in t.summary]
        lines.append("")
    return "\n".join(lines)


def to_html(report: Report) -> str:
    """One self-contained page (plots inline as data URIs); every text escaped."""
    parts = [f"<h1>Sentiment report {report.start:%Y-%m-%d %H:%M} – {report.end:%Y-%m-%d %H:%M} UTC</h1>",
             f"<p>Sentiment: {html.escape(report.sentiment_source)}.</p>"]
    for t in report.topics:
        image = base64.b64encode(t.png).decode()
        parts += [f"<h2>{html.escape(t.topic)}</h2>",
                  f"<p>{t.volume} items, {t.negative} negative ({t.negative_share:.0%}), {len(t.alerts)} alert(s).</p>",
                  f'<img alt="{html.escape(t.topic)} trend" src="data:image/png;base64,{image}">']
        if t.alerts:
            parts.append("<ul>" + "".join(
                f"<li>{html.escape(a['window_start'])}: {a['negative']} of {a['volume']} negative, "
                f"baseline {a['baseline']:.1f}, score {a['score']:.1f}</li>" for a in t.alerts) + "</ul>")
        if t.summary:
            parts.append("<blockquote>" + "<br>".join(html.escape(s) for s in t.summary) + "</blockquote>")
    return "<!doctype html><meta charset=utf-8><title>Luoxia sentiment report</title>\n" + "\n".join(parts) + "\n"


def write_report(report: Report, out_dir: str | Path) -> dict[str, str]:
    """report.md, report.html and one PNG per topic in ``out_dir``; their paths."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for t in report.topics:
        name = f"trend_{_slug(t.topic)}.png"
        (folder / name).write_bytes(t.png)
        images[t.topic] = name
    atomic_write_text(folder / "report.md", to_markdown(report, images))
    atomic_write_text(folder / "report.html", to_html(report))
    return {"markdown": str(folder / "report.md"), "html": str(folder / "report.html"),
            **{f"png:{topic}": str(folder / name) for topic, name in images.items()}}
