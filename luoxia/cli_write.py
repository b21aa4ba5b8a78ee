"""``luoxia write …``: the writing assistant — genre templates, keywords that must appear, form checks, reranking."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``luoxia`` app (the helper owning it fills this in)."""
