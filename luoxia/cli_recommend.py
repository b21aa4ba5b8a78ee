"""``luoxia apps recommend …``: simulate impressions over a catalogue, train the interest model, rank and write copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from luoxia.apps.recommend import (
    RecommendApp,
    RecommendConfig,
    build_recommend,
    bundled_books_path,
    encode_catalogue,
    genre_names,
    load_recommend,
    read_books,
    simulate_catalogue,
)
from luoxia.apps.recsim import SimConfig, read_impressions, write_impressions
from luoxia.cli_options import config_options
from luoxia.config import build_config
from luoxia.encoders import load_encoder
from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import Guard

console = Console()
recommend_app = typer.Typer(no_args_is_help=True, help="Recommendation with interest scores and personalised copy.")
EXAMPLE = "example"  # --catalogue example: Luoxia's 40 bundled books
Catalogue = Annotated[str, typer.Option("--catalogue", help="books CSV (goodbooks' books.csv, e.g. "
                                        "shared:books_goodbooks/books.csv, or book_id,title,authors,year,"
                                        "average_rating,ratings_count,tags); 'example': Luoxia's 40 books")]
MaxBooks = Annotated[int | None, typer.Option("--books", help="read only the first N books")]
AppDir = Annotated[Path, typer.Argument(help="the application directory `luoxia apps recommend build` wrote")]
User = Annotated[str, typer.Argument(help="a user id of the simulated log, or liked titles/keywords separated "
                                     "by ';' (e.g. 'Dracula; Frankenstein')")]


def _books(catalogue: str, limit: int | None) -> list:
    return read_books(bundled_books_path() if catalogue == EXAMPLE else catalogue, limit)


@recommend_app.command()
@config_options(SimConfig, into="sim")
def simulate(
    out: Annotated[Path, typer.Option("--out", help="the impressions JSONL to write")],
    catalogue: Catalogue = EXAMPLE,
    books: MaxBooks = None,
    encoder: Annotated[str, typer.Option(help="the encoder that tags untagged books")] = "minilm",
    sim: dict | None = None,
) -> None:
    """Write simulated impressions (user, session, time, item, position, clicked, purchased) as JSONL."""
    found, names = _books(catalogue, books), genre_names()
    encode_catalogue(found, load_encoder(encoder), names, RecommendConfig().tags_per_item)
    log = simulate_catalogue(found, names, build_config(SimConfig, sim or {}, "options"))
    write_impressions(out, log)
    console.print(f"{out}: {len(log)} impressions, {sum(i.clicked for i in log)} clicks", highlight=False)


@recommend_app.command()
@config_options(RecommendConfig, into="settings",
                exclude={"kind", "writer", "interest_weight", "popularity_weight", "recency_weight"})
def build(
    out: Annotated[Path, typer.Option("--out", help="the application directory to write")],
    catalogue: Catalogue = EXAMPLE,
    books: MaxBooks = None,
    impressions: Annotated[Path | None, typer.Option(help="impressions JSONL (`simulate`); default: simulate "
                                                      "--users users with the simulator's defaults")] = None,
    users: Annotated[int, typer.Option(help="simulated users when no --impressions is given")] = 300,
    settings: dict | None = None,
) -> None:
    """Tag and encode the catalogue, train the interest head on the train sessions and fit the ranking
    weights on the dev session; write app.yaml, the catalogue, vectors, head and impressions."""
    config = build_config(RecommendConfig, settings or {}, "options")
    log = read_impressions(impressions) if impressions else None
    summary = build_recommend(out, _books(catalogue, books), config, SimConfig(users=users), impressions=log)
    console.print(f"{out}: {json.dumps(summary)}", highlight=False)


def _load(app_dir: Path, guard: bool, data_dir: Path | None) -> RecommendApp:
    return load_recommend(app_dir, Guard(audit=AuditStore(data_dir), model_name="recommend") if guard else None)


@recommend_app.command()
def rank(
    app_dir: AppDir,
    user: User,
    k: Annotated[int | None, typer.Option("--k", help="items to return (default: app.yaml's k)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the ranking as JSON")] = False,
) -> None:
    """The best items for a user, with the interest, popularity and recency parts of each score."""
    ranked = _load(app_dir, False, None).rank(user, k)
    if as_json:
        print(json.dumps([r.to_json() for r in ranked], ensure_ascii=False))
        return
    for r in ranked:
        parts = " ".join(f"{p} {v:+.2f}" for p, v in r.parts.items())
        console.print(f"{r.score:6.2f}  {escape(r.book.title)} — {escape(r.book.authors)}  ({parts})", highlight=False)


@recommend_app.command()
def copy(
    app_dir: AppDir,
    user: User,
    item: Annotated[str, typer.Argument(help="the item's book_id or title")],
    as_json: Annotated[bool, typer.Option("--json", help="print the copy and its check as JSON")] = False,
    guard: Annotated[bool, typer.Option("--guard/--no-guard", help="moderate the history and the copy")] = True,
    data_dir: Annotated[Path | None, typer.Option(help="where the guard's audit database lives")] = None,
) -> None:
    """Personalised copy for one item, fact-checked against the item and released through the guard."""
    made = _load(app_dir, guard, data_dir).copy(user, item)
    if as_json:
        print(json.dumps(made.to_json(), ensure_ascii=False))
        return
    console.print(escape(made.text), highlight=False)
    console.print(f"({made.source}; fact check {'passed' if made.passed else 'FAILED'})", highlight=False)
