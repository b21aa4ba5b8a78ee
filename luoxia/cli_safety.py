"""The safety commands of ``luoxia``: moderate, redact, watermark, provenance and review."""

from __future__ import annotations

import getpass
import json
import sys
import unicodedata
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from luoxia.config import build_config
from luoxia.errors import ConfigError, LuoxiaError
from luoxia.generate.load import load_tokenizer
from luoxia.registry import load
from luoxia.safety.audit import AuditStore
from luoxia.safety.image_mark import detect_image_watermark
from luoxia.safety.moderation import CLASSIFIER_DIR, Moderator, RuleSet
from luoxia.safety.pii import PII_TYPES
from luoxia.safety.pii import redact as run_redact
from luoxia.safety.pii_key import resolve_pii_key
from luoxia.safety.provenance import verify_provenance
from luoxia.safety.watermark import WatermarkConfig, WatermarkDetector, resolve_key
from luoxia.safety.watermark_calibration import (
    CALIBRATION_FILE,
    calibrate,
    calibrated_min_tokens,
    load_calibration,
    save_calibration,
)

console = Console()
KeyOption = Annotated[str | None, typer.Option("--key", help="secret key in hex (default: $LUOXIA_WATERMARK_KEY, "
                                                  "$LUOXIA_WATERMARK_KEY_FILE, else the public demo key)")]
KeyFileOption = Annotated[Path | None, typer.Option(help="file holding the secret key in hex")]
DataDirOption = Annotated[Path | None, typer.Option(help="where the audit database lives (default $LUOXIA_HOME "
                                                       "or ~/.luoxia)")]


def _read_input(file: Path | None) -> str:
    """The text of ``file`` (standard input for none or ``-``)."""
    if file is None or str(file) == "-":
        return decode_utf8(sys.stdin.buffer.read(), "standard input")
    if not file.is_file():
        raise LuoxiaError(f"{file}: no such file")
    return read_text_file(file)


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's contents; other bytes are a one-line error naming the file."""
    return decode_utf8(path.read_bytes(), str(path))


def decode_utf8(data: bytes, name: str) -> str:
    """``data`` as UTF-8, whatever the terminal's locale; anything else is a one-line error."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LuoxiaError(f"{name}: not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start})") from None


def _parse_thresholds(items: list[str] | None) -> dict[str, float]:
    thresholds = {}
    for item in items or []:
        name, _, value = item.partition("=")
        try:
            thresholds[name] = float(value)
        except ValueError:
            raise ConfigError(f"--threshold expects CATEGORY=NUMBER, got {item!r}") from None
    return thresholds


def _moderation_texts(raw: str, jsonl: bool, field: str) -> list[str]:
    if not jsonl:
        return raw.splitlines()
    texts = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            record = json.loads(line) if line.strip() else {}
        except json.JSONDecodeError as error:
            raise LuoxiaError(f"line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(field, ""), str):
            raise LuoxiaError(f"line {number}: expected an object with a string field '{field}'")
        texts.append(record.get(field, ""))
    return texts


def moderate(
    file: Annotated[Path | None, typer.Argument(help="one text per line (default: standard input)")] = None,
    jsonl: Annotated[bool, typer.Option(help="the input is JSON Lines; the text is in --field")] = False,
    field: Annotated[str, typer.Option(help="JSONL field holding the text")] = "text",
    threshold: Annotated[list[str] | None, typer.Option(help="CATEGORY=VALUE flag threshold (repeatable)")] = None,
    classifier: Annotated[Path | None, typer.Option(help="a moderation classifier directory "
                                                       "(default: the one shipped with Luoxia)")] = None,
    rules_only: Annotated[bool, typer.Option(help="skip the learned classifier (no model is loaded)")] = False,
    rules: Annotated[list[Path] | None, typer.Option(help="rules YAML file(s) instead of the shipped ones")] = None,
    explain: Annotated[bool, typer.Option(help="add `evidence`: which rule or learned head scored each category, "
                                          "with the span of the input (start, end, text)")] = False,
) -> None:
    """Moderate texts: one JSON object per input line with `flagged`, per-category `categories` and `scores`."""
    texts = _moderation_texts(_read_input(file), jsonl, field)
    moderator = Moderator(RuleSet.load(rules), None if rules_only else (classifier or CLASSIFIER_DIR),
                          _parse_thresholds(threshold))
    for text, result in zip(texts, moderator.moderate(texts, explain=explain), strict=True):
        record = result.to_json()
        if explain:
            record["evidence"] = [evidence.to_json(text) for evidence in result.evidence]
        print(json.dumps(record, ensure_ascii=False))


def redact(
    file: Annotated[Path | None, typer.Argument(help="text to redact (default: standard input)")] = None,
    style: Annotated[str, typer.Option(help="tag ([PHONE]), partial (138****5678) or hash (keyed pseudonym)")] = "tag",
    key: Annotated[str | None, typer.Option("--key", help="--style hash: the pseudonym key in hex (default: "
                                            "$LUOXIA_PII_KEY or $LUOXIA_PII_KEY_FILE; never the watermark key)")
                   ] = None,
    key_file: Annotated[Path | None, typer.Option(help="--style hash: file holding the pseudonym key in hex")] = None,
    region: Annotated[str | None, typer.Option(help="country whose national phone formats are recognised (default: "
                                               "CN for text with Chinese characters, else US)")] = None,
    types: Annotated[str | None, typer.Option(help="comma-separated types to mask (default: all but ORG): "
                                              f"{','.join(PII_TYPES)}")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the text and the spans' types and offsets")] = False,
) -> None:
    """Mask personal data: e-mails, phones, Chinese resident IDs, bank cards, IPs, credentials in URLs, API keys,
    names and addresses (organisations with --types)."""
    secret = resolve_pii_key(key, key_file) if style == "hash" else None
    chosen = [t.strip().upper() for t in types.split(",") if t.strip()] if types is not None else None
    result = run_redact(_read_input(file), style=style, key=secret, types=chosen, default_region=region)
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        sys.stdout.write(result.text)


watermark_app = typer.Typer(no_args_is_help=True, help="Detect the text watermark of `luoxia generate --watermark`, "
                            "and measure from which length detection is reliable on a model.")
GammaOption = Annotated[float, typer.Option(help="green share the text was generated with")]
ZOption = Annotated[float, typer.Option(help="z-score from which text counts as watermarked")]
EntropyOption = Annotated[float, typer.Option(help="score only tokens the model predicted with at least this "
                                              "entropy in nats (loads the whole model); 0: every token, "
                                              "tokenizer only")]


@watermark_app.command("detect")
def watermark_detect(
    model: Annotated[Path, typer.Option("--model", "-m", help="a run, prepared data or Hugging Face directory: "
                                        "its tokenizer, its calibration if any, the model itself only with "
                                        "--entropy-threshold")],
    file: Annotated[Path | None, typer.Argument(help="text to check (default: standard input)")] = None,
    key: KeyOption = None,
    key_file: KeyFileOption = None,
    gamma: GammaOption = 0.25,
    z_threshold: ZOption = 4.0,
    entropy_threshold: EntropyOption = 0.0,
    min_tokens: Annotated[int | None, typer.Option(min=0, help="shorter texts are 'too short to decide' (default: "
                                                   f"the model's {CALIBRATION_FILE}, from `luoxia watermark "
                                                   "calibrate`; 0: always decide)")] = None,
) -> None:
    """One JSON object: z, p_value, green_fraction, tokens_scored, tokens, min_tokens, watermarked and verdict
    (watermarked, not watermarked, or too short to decide)."""
    config = build_config(WatermarkConfig, {"gamma": gamma, "z_threshold": z_threshold,
                                            "entropy_threshold": entropy_threshold}, source="the command line")
    if min_tokens is None:
        min_tokens = calibrated_min_tokens(load_calibration(model), config)
        if min_tokens is None:
            print(f"note: no watermark calibration for these settings in {model}: run `luoxia watermark calibrate "
                  f"{model}` to learn from which length the verdict is reliable", file=sys.stderr)
    generator = load(model, device="cpu") if entropy_threshold > 0 else None
    tokenizer = generator.tokenizer if generator is not None else load_tokenizer(model)
    detector = WatermarkDetector(tokenizer, resolve_key(key, key_file), config, generator, min_tokens or None)
    print(json.dumps(detector.detect(_read_input(file)).to_json()))


@watermark_app.command("calibrate")
def watermark_calibrate(
    model: Annotated[Path, typer.Argument(help="a run or Hugging Face directory (the model generates)")],
    key: KeyOption = None,
    key_file: KeyFileOption = None,
    gamma: GammaOption = 0.25,
    delta: Annotated[float, typer.Option(help="added to the green logits, as generation does")] = 2.0,
    z_threshold: ZOption = 4.0,
    entropy_threshold: EntropyOption = 0.0,
    samples: Annotated[int, typer.Option(min=10, help="watermarked and plain samples each")] = 100,
    max_tokens: Annotated[int, typer.Option(min=25, help="longest length measured")] = 600,
    temperature: Annotated[float, typer.Option(min=0.0, help="sampling temperature")] = 1.0,
    seed: int = 0,
) -> None:
    """Sample watermarked and plain text, find the shortest length with TPR ≥ 0.98 clean and ≥ 0.90 after 20%
    random substitutions at FPR ≤ 0.01, and store it in MODEL/watermark_calibration.json for `watermark detect`."""
    config = build_config(WatermarkConfig, {"gamma": gamma, "delta": delta, "z_threshold": z_threshold,
                                            "entropy_threshold": entropy_threshold}, source="the command line")
    generator = load(model, device="cpu")
    result = calibrate(generator, resolve_key(key, key_file), config, samples, max_tokens, temperature, seed)
    path = save_calibration(model, result)
    print(json.dumps({"min_tokens": result["min_tokens"], "path": str(path), "table": result["table"]}))


provenance_app = typer.Typer(no_args_is_help=True, help="Check the signed provenance record of a generated image.")


@provenance_app.command("verify")
def provenance_verify(
    image: Annotated[Path, typer.Argument(help="a PNG written by `luoxia generate-image --watermark`")],
    key: KeyOption = None,
    key_file: KeyFileOption = None,
) -> None:
    """Prints valid, tampered or absent (and why) and the record; exit status 0 only when valid."""
    from PIL import Image

    secret = resolve_key(key, key_file).secret
    check = verify_provenance(image, secret)
    with Image.open(image) as opened:
        mark = detect_image_watermark(opened, secret).to_json() if min(opened.size) >= 256 else None
    print(json.dumps({**check.to_json(), "watermark": mark}, ensure_ascii=False))
    raise typer.Exit(0 if check.status == "valid" else 1)


review_app = typer.Typer(no_args_is_help=True, help="The human review queue of flagged and blocked content. "
                         "These commands act as the admin of the data directory they can read.")
UNPRINTABLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")  # controls, format (bidi, zero-width), unassigned


def terminal_safe(text: str, keep: str = "") -> str:
    """``text`` with every control, format (bidi override, zero-width) and line-separator character
    written as a visible ``\\uXXXX`` escape, so stored content cannot drive the reviewer's terminal
    (ANSI escapes, cursor moves, reordered text); characters in ``keep`` stay as they are."""
    return "".join(c if c in keep or unicodedata.category(c) not in UNPRINTABLE else _escape(c) for c in text)


def _escape(char: str) -> str:
    """``\\uXXXX`` (a UTF-16 surrogate pair beyond the BMP): the same character to a JSON reader."""
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _store(data_dir: Path | None):
    return AuditStore(data_dir)


@review_app.command("list")
def review_list(
    status: Annotated[str, typer.Option(help="pending, approved, rejected or all")] = "pending",
    limit: Annotated[int, typer.Option(help="newest N")] = 50,
    data_dir: DataDirOption = None,
) -> None:
    """The newest audit events with a given review status."""
    events = _store(data_dir).list(None if status == "all" else status, limit)
    table = Table(title=f"audit events ({status})")
    for column in ("id", "created", "stage", "action", "categories", "status", "excerpt"):
        table.add_column(column)
    for e in events:
        table.add_row(*(escape(terminal_safe(cell)) for cell in (
            str(e.id), e.created, e.stage, e.action, ", ".join(e.categories), e.status,
            e.excerpt[:60].replace("\n", " "))))
    console.print(table)


@review_app.command("show")
def review_show(event_id: Annotated[int, typer.Argument(help="event id")], data_dir: DataDirOption = None) -> None:
    """One event as JSON, with its review log (every verdict and reopening, by whom)."""
    store = _store(data_dir)
    record = {**store.get(event_id).to_json(), "decisions": store.decisions(event_id)}
    # JSON escapes C0 controls itself; the rest become \uXXXX escapes, which JSON reads back as the same text.
    print(terminal_safe(json.dumps(record, ensure_ascii=False, indent=2), keep="\n"))


def _review(event_id: int, status: str, reviewer: str | None, note: str | None, data_dir: Path | None) -> None:
    event = _store(data_dir).review(event_id, status, reviewer or getpass.getuser(), note)
    console.print(f"event {event.id}: {event.status} by {escape(terminal_safe(event.reviewer or ''))}",
                  highlight=False)


@review_app.command("approve")
def review_approve(
    event_id: Annotated[int, typer.Argument(help="event id")],
    note: Annotated[str | None, typer.Option(help="why")] = None,
    reviewer: Annotated[str | None, typer.Option(help="who (default: the login name)")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """The content was acceptable: a false positive."""
    _review(event_id, "approved", reviewer, note, data_dir)


@review_app.command("reject")
def review_reject(
    event_id: Annotated[int, typer.Argument(help="event id")],
    note: Annotated[str | None, typer.Option(help="why")] = None,
    reviewer: Annotated[str | None, typer.Option(help="who (default: the login name)")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """The content violated the policy: the decision stands."""
    _review(event_id, "rejected", reviewer, note, data_dir)


@review_app.command("reopen")
def review_reopen(
    event_id: Annotated[int, typer.Argument(help="event id")],
    note: Annotated[str | None, typer.Option(help="why")] = None,
    reviewer: Annotated[str | None, typer.Option(help="who (default: the login name)")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Undo a verdict: the event is pending again (a verdict is otherwise final)."""
    event = _store(data_dir).reopen(event_id, reviewer or getpass.getuser(), note)
    console.print(f"event {event.id}: reopened, {event.status}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(moderate)
    app.command()(redact)
    app.add_typer(watermark_app, name="watermark")
    app.add_typer(provenance_app, name="provenance")
    app.add_typer(review_app, name="review")
