"""``luoxia write …``: the writing assistant — genre templates, keywords that must appear, form checks, reranking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from luoxia.apps.write import GENRE_NAMES, WriteRequest, WriteResult, load_writer, write
from luoxia.cli_options import config_options
from luoxia.config import build_config
from luoxia.data.readers import read_text_file
from luoxia.safety.guard import Guard, GuardedGenerator

console = Console()
OWN = {"genre", "keywords", "title", "mode", "draft", "n", "constraint", "seed"}  # options of their own below


@config_options(WriteRequest, into="settings", exclude=OWN)
def write_command(
    model: Annotated[str, typer.Argument(help="a text model: a run or Hugging Face directory")],
    genre: Annotated[str, typer.Argument(help=f"the genre: {', '.join(GENRE_NAMES)}")] = "五言绝句",
    keyword: Annotated[list[str] | None, typer.Option("--keyword", "-k", help="a word that must appear "
                       "(repeatable)")] = None,
    title: Annotated[str, typer.Option(help="the title or topic")] = "",
    mode: Annotated[str, typer.Option(help="draft, continue, rewrite or polish")] = "draft",
    draft: Annotated[Path | None, typer.Option(help="a file holding your draft (continue, rewrite, polish)")] = None,
    n: Annotated[int, typer.Option("-n", help="candidates to generate and rank")] = WriteRequest.model_fields["n"]
    .default,
    constraint: Annotated[str, typer.Option(help="none, boost or beam")] = WriteRequest.model_fields["constraint"]
    .default,
    seed: Annotated[int | None, typer.Option(help="seed: candidate i samples with seed + i")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one JSON line")] = False,
    guard: Annotated[bool, typer.Option("--guard/--no-guard", help="moderate and redact as the server "
                     "does (its watermark changes the text)")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps")] = "auto",
    settings: dict | None = None,
) -> None:
    """Write text of a genre from keywords and a title: n candidates, each keyword made to appear,
    checked for form and ranked (coverage, likelihood, form)."""
    values = {**(settings or {}), "genre": genre, "keywords": keyword or [], "title": title, "mode": mode,
              "draft": read_text_file(draft) if draft else "", "n": n, "constraint": constraint, "seed": seed}
    request = build_config(WriteRequest, values, "options")
    writer = load_writer(model, device)
    if guard:
        writer.guard = Guard(model_name=writer.generator.name)
        writer.generator = GuardedGenerator(writer.generator, writer.guard)
    result = write(writer, request)
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return
    _print(result)


def _print(result: WriteResult) -> None:
    for rank, candidate in enumerate(result.candidates, 1):
        scores = ", ".join(f"{k} {v}" for k, v in candidate.scores.items())
        missing = [k for k, found in candidate.keywords.items() if not found]
        form = "form ok" if candidate.form["ok"] else "form off"
        console.print(f"[bold]#{rank}[/bold] ({scores}; {form}"
                      f"{'; missing ' + escape('、'.join(missing)) if missing else ''})", highlight=False)
        console.print(escape(candidate.text), highlight=False)
        console.print()


def register(app: typer.Typer) -> None:
    """Add ``luoxia write`` to the ``luoxia`` app."""
    app.command("write")(write_command)
