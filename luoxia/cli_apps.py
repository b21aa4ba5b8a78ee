"""``luoxia apps …``: the applications (`luoxia.apps`), one sub-command group per kind."""

from __future__ import annotations

import typer

from luoxia.cli_ask import ask_app
from luoxia.cli_monitor import monitor_app
from luoxia.cli_recommend import recommend_app
from luoxia.cli_support import support_app

apps_app = typer.Typer(no_args_is_help=True, help="Applications: a support assistant from your FAQ (support), "
                       "knowledge-grounded answers with citations (ask), financial sentiment monitoring with alerts "
                       "(monitor) and recommendation with personalised copy (recommend).")

apps_app.add_typer(ask_app, name="ask")
apps_app.add_typer(support_app, name="support")
apps_app.add_typer(monitor_app, name="monitor")
apps_app.add_typer(recommend_app, name="recommend")


def register(app: typer.Typer) -> None:
    app.add_typer(apps_app, name="apps")
