"""``luoxia apps recommend …``: simulate impressions over a catalogue, train the interest model, rank and write copy."""

from __future__ import annotations

import typer

recommend_app = typer.Typer(no_args_is_help=True, help="Recommendation with interest scores and personalised copy.")
