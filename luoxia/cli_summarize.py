"""``luoxia summarize …``: extractive (lead, TextRank) and fine-tuned abstractive summaries with length control."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``luoxia`` app (the helper owning it fills this in)."""
