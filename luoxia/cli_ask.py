"""``luoxia apps ask …``: build a knowledge base (triples and/or passages), ask it, check statements against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from luoxia.apps.ask import AskApp, AskSettings, build_ask, passages
from luoxia.apps.interface import AppReply
from luoxia.apps.knowledge import Triple, bundled_triples_path, poem_triples, read_triples
from luoxia.cli_options import config_options
from luoxia.config import build_config
from luoxia.errors import DataError
from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import Guard

console = Console()
ask_app = typer.Typer(no_args_is_help=True, help="Knowledge-grounded answers: every fact cited from your "
                      "triples (subject, relation, object, source) or passages.")
EXAMPLE = "example"  # --triples example: the bundled luoxia/apps/data/ask_triples.csv
AppDir = Annotated[Path, typer.Argument(help="the application directory `luoxia apps ask build` wrote")]


@ask_app.command()
@config_options(AskSettings, into="settings", exclude={"kind"})
def build(
    out: Annotated[Path, typer.Option("--out", help="the application directory to write")],
    triples: Annotated[list[Path] | None, typer.Option("--triples", help="CSV/JSONL with columns subject, "
                       "relation, object[, source] (repeatable); 'example': Luoxia's 58 Tang-poem triples")] = None,
    poems: Annotated[bool, typer.Option("--poems", help="the Tang poems in ../shared/data as (title, author, "
                     "first line) triples")] = False,
    max_poems: Annotated[int | None, typer.Option(help="read only the first N poems")] = None,
    passages_from: Annotated[str | None, typer.Option("--passages", help="'pydoc' (the Python reference topics) "
                             "or files/directories of text, CSV or JSONL to retrieve passages from")] = None,
    max_documents: Annotated[int | None, typer.Option(help="read only the first N passage documents")] = None,
    settings: dict | None = None,
) -> None:
    """Write an ask application: app.yaml, triples.jsonl and, with passages, a retrieval index."""
    found: list[Triple] = [t for path in triples or [] for t in read_triples(
        bundled_triples_path() if str(path) == EXAMPLE and not path.exists() else path)]
    if poems:
        found += poem_triples(max_poems)
    documents = passages(passages_from, max_documents) if passages_from else []
    if not found and not documents:
        raise DataError("nothing to build from: give --triples FILE, --poems and/or --passages pydoc|FILE")
    build_ask(out, found, documents, build_config(AskSettings, settings or {}, "options"))
    console.print(f"{out}: {len(found)} triples, {len(documents)} passages", highlight=False)


def _load(app_dir: Path, guard: bool, data_dir: Path | None) -> AskApp:
    return AskApp.load(app_dir, Guard(audit=AuditStore(data_dir), model_name="ask") if guard else None)


@ask_app.command()
def query(
    app_dir: AppDir,
    question: Annotated[str, typer.Argument(help="the question, e.g. '《登鹳雀楼》的作者是谁？'")],
    as_json: Annotated[bool, typer.Option("--json", help="print the whole reply as JSON")] = False,
    guard: Annotated[bool, typer.Option("--guard/--no-guard", help="moderate the question and the answer")] = True,
    data_dir: Annotated[Path | None, typer.Option(help="where the guard's audit database lives")] = None,
) -> None:
    """Answer a question from the knowledge base, with a citation for every fact."""
    reply = _load(app_dir, guard, data_dir).reply([{"role": "user", "content": question}])
    if as_json:
        print(json.dumps(reply.to_json(), ensure_ascii=False))
        return
    _print(reply)


def _print(reply: AppReply) -> None:
    console.print(escape(reply.answer), highlight=False)
    for number, citation in enumerate(reply.citations, 1):
        console.print(f"  [{number}] {escape(citation.fact)} — {escape(citation.source)} ({citation.document_id})",
                      highlight=False, soft_wrap=True)
    for warning in reply.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


@ask_app.command()
def check(
    app_dir: AppDir,
    statement: Annotated[str, typer.Argument(help="text to check, e.g. '《登鹳雀楼》的作者是李白。'")],
    as_json: Annotated[bool, typer.Option("--json", help="print the contradictions as JSON")] = False,
) -> None:
    """List the claims of a text that contradict the knowledge base (none: says so)."""
    found = AskApp.load(app_dir).check(statement)
    if as_json:
        print(json.dumps([c.to_json() for c in found], ensure_ascii=False))
    elif not found:
        console.print("no contradiction with the knowledge base", highlight=False)
    for contradiction in [] if as_json else found:
        console.print(f"[red]{escape(contradiction.message())}[/red]", highlight=False, soft_wrap=True)
