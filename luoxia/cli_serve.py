"""``luoxia serve`` and ``luoxia keys``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
DataDir = Annotated[Optional[Path], typer.Option(help="database directory (default $LUOXIA_HOME or ~/.luoxia)")]


def serve(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="text model: run or Hugging Face "
                                                       "directory (repeatable; default: what `make demo` trained)")] = None,
    image_model: Annotated[Optional[list[str]], typer.Option(help="image run (repeatable)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    data_dir: DataDir = None,
    open_access: Annotated[bool, typer.Option(help="no API key needed (loopback addresses only)")] = False,
    batching: Annotated[bool, typer.Option(help="continuous batching")] = True,
    safety: Annotated[bool, typer.Option(help="moderation, PII redaction and watermark on every request")] = True,
    policy: Annotated[Optional[Path], typer.Option(help="guard policy YAML")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "auto",
) -> None:
    """Serve models over an OpenAI-compatible HTTP API, with the web studio at /."""
    import uvicorn

    from luoxia.serve.app import create_app

    values = dict(models=model or [], image_models=image_model or [], host=host, port=port,
                  open_access=open_access, batching=batching, safety=safety, policy_file=policy, device=device)
    if data_dir is not None:
        values["data_dir"] = data_dir
    settings = _settings(values)
    console.print(f"Luoxia serving on http://{host}:{port} (studio at /, API at /v1)", highlight=False)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def _settings(values: dict):
    from pydantic import ValidationError

    from luoxia.errors import ConfigError
    from luoxia.serve.settings import ServeSettings

    try:
        return ServeSettings(**values)
    except ValidationError as error:
        raise ConfigError("; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())) from None


keys_app = typer.Typer(no_args_is_help=True, help="API keys of `luoxia serve` (stored hashed).")


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="what the key is for")] = "default", data_dir: DataDir = None):
    """Create a key; the key itself is printed once, as the last line."""
    from luoxia.serve.store import Store

    key, secret = Store(data_dir).create_key(name)
    console.print(f"key {key.id} ({key.name}) created; store it now, it cannot be shown again:", highlight=False)
    print(secret)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None):
    """Every key: id, name, first characters, created, revoked."""
    from luoxia.serve.store import Store

    table = Table(title="API keys")
    for column in ("id", "name", "prefix", "created", "revoked"):
        table.add_column(column)
    for key in Store(data_dir).list_keys():
        table.add_row(str(key.id), key.name, key.prefix + "…", key.created, key.revoked or "")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="key id (from `keys list`)")], data_dir: DataDir = None):
    """Revoke a key: requests with it get 401 from now on."""
    from luoxia.serve.store import Store

    key = Store(data_dir).revoke_key(key_id)
    console.print(f"key {key.id} ({key.name}) revoked at {key.revoked}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(keys_app, name="keys")
