"""``luoxia apps monitor …``: watch a stream of timestamped texts by topic and sentiment, alert on bursts, report."""

from __future__ import annotations

import typer

monitor_app = typer.Typer(no_args_is_help=True,
                          help="Financial sentiment monitoring: topics, sentiment, alerts, reports.")
