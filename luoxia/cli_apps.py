"""``luoxia apps …``: the applications (`luoxia.apps`), one sub-command group per kind."""

from __future__ import annotations

import typer

from luoxia.cli_ask import ask_app
from luoxia.cli_support import support_app

apps_app = typer.Typer(no_args_is_help=True, help="Applications: a support assistant from your FAQ (support) and "
                       "knowledge-grounded answers with citations (ask).")

apps_app.add_typer(ask_app, name="ask")
apps_app.add_typer(support_app, name="support")


def register(app: typer.Typer) -> None:
    app.add_typer(apps_app, name="apps")
