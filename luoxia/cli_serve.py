"""``luoxia serve``, ``luoxia keys`` and ``luoxia purge``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from luoxia.cli_options import config_options
from luoxia.config import load_config
from luoxia.errors import ConfigError
from luoxia.safety.guard import GuardPolicy
from luoxia.serve.app import create_app
from luoxia.serve.models import load_models
from luoxia.serve.settings import ServeSettings
from luoxia.serve.store import ROLES, Store

console = Console()
DataDir = Annotated[Path | None, typer.Option(help="database directory (default $LUOXIA_HOME or ~/.luoxia)")]


@config_options(ServeSettings, into="options",
                flags={"models": ("--model", "-m"), "image_models": ("--image-model",), "policy_file": ("--policy",),
                       "apps": ("--app",)})
def serve(options: dict) -> None:
    """Serve models over an OpenAI-compatible HTTP API, with the web studio at /. Options not given
    come from LUOXIA_SERVE_* environment variables, else the defaults shown."""
    import uvicorn

    settings = _settings(options)
    # models loaded and the app made before the server starts: a bad model or key is a one-line error
    app = create_app(settings, models=load_models(settings))
    console.print(f"Luoxia serving on http://{settings.host}:{settings.port} (studio at /, API at /v1)",
                  highlight=False)
    # proxy headers (X-Forwarded-For) believed only from the configured proxies: uvicorn's default trusts 127.0.0.1
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                proxy_headers=bool(settings.trusted_proxies), forwarded_allow_ips=settings.trusted_proxies or None,
                server_header=False)


def _settings(values: dict) -> ServeSettings:
    """Validated settings whose files exist: every model path, and the policy (read and checked now)."""
    try:
        settings = ServeSettings(**values)
    except ValidationError as error:
        raise ConfigError("; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())) from None
    for flag, paths in (("--model", settings.models), ("--image-model", settings.image_models)):
        for path in paths:
            if not Path(path).is_dir():
                what = "is not a directory" if Path(path).exists() else "no such run directory"
                raise ConfigError(f"{flag} {path}: {what} (Luoxia serves local run or Hugging Face model "
                                  "directories, never hub names)")
    if settings.policy_file is not None:
        load_config(GuardPolicy, settings.policy_file)
    return settings


keys_app = typer.Typer(no_args_is_help=True, help="API keys of `luoxia serve` (stored hashed).")


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="what the key is for")] = "default",
                role: Annotated[str, typer.Option(help=f"{', '.join(ROLES)}: users generate; reviewers also list "
                                                       "and decide the review queue; admins also reopen verdicts")]
                = "user",
                data_dir: DataDir = None):
    """Create a key; the key itself is printed once, as the last line."""
    key, secret = Store(data_dir).create_key(name, role)
    console.print(f"key {key.id} ({escape(key.name)}, {key.role}) created; store it now, it cannot be shown again:",
                  highlight=False)
    print(secret)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None):
    """Every key: id, name, role, first characters, created, revoked."""
    table = Table(title="API keys")
    for column in ("id", "name", "role", "prefix", "created", "revoked"):
        table.add_column(column)
    for key in Store(data_dir).list_keys():
        table.add_row(str(key.id), escape(key.name), key.role, key.prefix + "…", key.created, key.revoked or "")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="key id (from `keys list`)")], data_dir: DataDir = None):
    """Revoke a key: requests with it get 401 from now on."""
    key = Store(data_dir).revoke_key(key_id)
    console.print(f"key {key.id} ({key.name}) revoked at {key.revoked}", highlight=False)


def purge(retention_days: Annotated[int, typer.Option(min=1, help="delete what is older than this many days")],
          data_dir: DataDir = None) -> None:
    """Delete generations, conversations and reviewed audit events older than --retention-days (the
    server does it hourly with its --retention-days); pending review items are kept."""
    store = Store(data_dir)
    try:
        deleted = store.purge(retention_days)
    finally:
        store.close()
    console.print(", ".join(f"{count} {table.replace('_', ' ')}" for table, count in deleted.items()) + " deleted",
                  highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(keys_app, name="keys")
    app.command()(purge)
