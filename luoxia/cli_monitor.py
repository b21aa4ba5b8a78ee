"""``luoxia apps monitor …``: watch a stream of timestamped texts by topic and sentiment, alert on bursts, report."""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from luoxia.apps.monitor import MonitorApp, MonitorConfig, build_monitor, load_monitor, open_monitor
from luoxia.apps.monitor_report import write_report
from luoxia.apps.monitor_stream import (
    Burst,
    Item,
    new_files,
    parse_time,
    read_items,
    read_labelled,
    read_stdin_items,
    simulate_stream,
)
from luoxia.cli_options import config_options
from luoxia.errors import ConfigError

err = Console(stderr=True)
monitor_app = typer.Typer(no_args_is_help=True,
                          help="Financial sentiment monitoring: topics, sentiment, alerts, reports.")


def _print(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@monitor_app.command("build")
@config_options(MonitorConfig, into="settings", exclude=("kind", "writer"))
def build(
    out: Annotated[Path, typer.Option("--out", "-o", help="the application directory to write")],
    settings: dict[str, Any] | None = None,
) -> None:
    """Write a monitor's app.yaml (topics, sentiment classifier, window, detector, webhook, reports)."""
    config = build_monitor(out, settings)
    source = f"classifier {config.classifier}" if config.classifier else "the prototype tagger (no --classifier)"
    err.print(f"monitor '{config.name}' in {out}: {config.detector} detector, {config.window_minutes:g}-minute "
              f"windows, sentiment from {source}", highlight=False, markup=False)


def _parse_burst(text: str) -> Burst:
    """TICKER@HOURS[xCOUNT][/MINUTES], e.g. ACME@10x40/30."""
    try:
        ticker, rest = text.split("@", 1)
        rest, minutes = (rest.split("/", 1) + ["30"])[:2]
        hours, count = (rest.split("x", 1) + ["40"])[:2]
        return Burst(ticker.strip(), float(hours), int(count), float(minutes))
    except ValueError:
        raise ConfigError(f"--burst '{text}': expected TICKER@HOURS[xCOUNT][/MINUTES], e.g. ACME@10x40/30") from None


@monitor_app.command("simulate")
def simulate(
    corpus: Annotated[str | None, typer.Argument(help="labelled CSV/JSONL (text, label: 0/1/2 = Bearish/Bullish/"
                                                 "Neutral), e.g. shared:fin_sentiment_en/sent_valid.csv; none: the "
                                                 "small sample shipped with Luoxia")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="the JSONL stream to write")] = Path("stream.jsonl"),
    start: Annotated[str, typer.Option(help="time of the first item (ISO 8601)")] = "2026-01-05T00:00:00Z",
    rate: Annotated[float, typer.Option(help="items per hour")] = 60.0,
    burst: Annotated[list[str] | None, typer.Option(help="inject a burst of negative items: TICKER@HOURS[xCOUNT]"
                                                    "[/MINUTES] (repeatable)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the order, the times and the bursts")] = 0,
    limit: Annotated[int | None, typer.Option(help="replay at most this many corpus texts")] = None,
) -> None:
    """Replay a labelled corpus as a timestamped stream (seeded times, injected bursts)."""
    texts, labels = read_labelled(corpus)
    items = simulate_stream(texts, labels, parse_time(start, "--start"), rate,
                            [_parse_burst(b) for b in burst or []], seed, limit)
    out.write_text("".join(json.dumps(i.to_json(), ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    err.print(f"{len(items)} items, {items[0].time:%Y-%m-%d %H:%M} to {items[-1].time:%Y-%m-%d %H:%M} → {out}",
              highlight=False, markup=False)


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _ingest(app: MonitorApp, items: Iterable[Item], batch: int, alerts_file: Path | None) -> int:
    count = 0
    for chunk in _batches(items, batch):
        for alert in app.ingest(chunk):
            count += 1
            _print(alert)
            if alerts_file is not None:
                with alerts_file.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(alert, ensure_ascii=False) + "\n")
    return count


@monitor_app.command("run")
def run(
    app_dir: Annotated[Path, typer.Argument(help="the monitor directory (luoxia apps monitor build)")],
    inputs: Annotated[list[str] | None, typer.Argument(help="JSONL/CSV files of items (text, time, optional id); "
                                                       "- for JSON lines on stdin")] = None,
    watch: Annotated[Path | None, typer.Option(help="also process every new JSONL/CSV file in this folder")] = None,
    poll: Annotated[float, typer.Option(help="seconds between looks at --watch")] = 5.0,
    polls: Annotated[int | None, typer.Option(help="stop watching after this many looks (none: until Ctrl-C)")] = None,
    batch: Annotated[int, typer.Option(min=1, help="items per transaction")] = 256,
    alerts: Annotated[Path | None, typer.Option(help="also append each alert to this JSONL file")] = None,
    flush: Annotated[bool, typer.Option(help="at the end, close the last window too (a finite stream)")] = False,
    device: Annotated[str, typer.Option(help="device for the encoder and classifier")] = "auto",
) -> None:
    """Process items incrementally (a restart skips what is stored); print each new alert as a JSON line."""
    if not inputs and watch is None:
        raise ConfigError("give files to process, - for stdin, or --watch FOLDER")
    if watch is not None and not watch.is_dir():
        raise ConfigError(f"--watch {watch}: not a folder")
    app = load_monitor(app_dir, device=device)
    err.print(f"sentiment: {app.source}", highlight=False, markup=False)
    found = 0
    for source in inputs or []:
        found += _ingest(app, read_stdin_items() if source == "-" else read_items(source), batch, alerts)
    seen: set[str] = set()
    for look in itertools.count(1):
        if watch is None:
            break
        for file in new_files(watch, seen):
            found += _ingest(app, read_items(file), batch, alerts)
        if polls is not None and look >= polls:
            break
        time.sleep(poll)
    if flush:
        for alert in app.flush():
            found += 1
            _print(alert)
    status = app.status()
    err.print(f"{status['items']} items stored, {found} new alert(s), {status['alerts']} in all, "
              f"{status['late_items']} late", highlight=False, markup=False)


@monitor_app.command("alerts")
def alerts_command(
    app_dir: Annotated[Path, typer.Argument(help="the monitor directory")],
    topic: Annotated[str | None, typer.Option(help="only this topic (e.g. earnings, $AAPL)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="most alerts to list")] = 100,
) -> None:
    """The stored alerts, newest first, as JSON lines."""
    for alert in open_monitor(app_dir).alerts(topic, limit):
        _print(alert)


@monitor_app.command("report")
def report(
    app_dir: Annotated[Path, typer.Argument(help="the monitor directory")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for report.md, report.html and the plots")],
    topic: Annotated[list[str] | None, typer.Option(help="topics to report (default: all and the busiest)")] = None,
    hours: Annotated[float | None, typer.Option(help="hours up to the newest item (default: report_hours)")] = None,
) -> None:
    """Write the periodic report (counts, trend plots, alerts, summaries of the negative items)."""
    files = write_report(open_monitor(app_dir).report(topic, hours), out)
    err.print(f"report: {files['markdown']}, {files['html']}", highlight=False, markup=False)
