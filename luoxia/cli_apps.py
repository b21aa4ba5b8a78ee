"""``luoxia apps …``: the applications (`luoxia.apps`), one sub-command group per kind."""

from __future__ import annotations

import typer

apps_app = typer.Typer(no_args_is_help=True, help="Applications: a support assistant from your FAQ (support) and "
                       "knowledge-grounded answers with citations (ask).")


def register(app: typer.Typer) -> None:
    app.add_typer(apps_app, name="apps")
