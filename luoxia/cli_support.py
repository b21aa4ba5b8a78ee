"""``luoxia apps support …``: split an FAQ, build the assistant's directory, chat with it."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from luoxia.apps.faq import FAQColumns, write_split
from luoxia.apps.interface import AppReply, Message
from luoxia.apps.support import SupportApp, SupportConfig, build_support, load_support
from luoxia.cli_options import config_options
from luoxia.config import load_config
from luoxia.errors import ConfigError
from luoxia.registry import load_writer
from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import Guard, GuardPolicy

console = Console()
support_app = typer.Typer(no_args_is_help=True, help="A customer-service assistant from your FAQ: split it, build "
                          "the assistant (index, slots, hand-off thresholds), chat with it.")

QuestionColumn = Annotated[str | None, typer.Option(help="the question column (default: question or instruction)")]
AnswerColumn = Annotated[str | None, typer.Option(help="the answer column (default: answer or response)")]
IntentColumn = Annotated[str | None, typer.Option(help="the intent column (default: intent, label or category)")]


def _columns(question: str | None, answer: str | None, intent: str | None) -> FAQColumns:
    return FAQColumns(question=question, answer=answer, intent=intent)


@support_app.command("split")
def split(
    faq: Annotated[str, typer.Argument(help="FAQ CSV/JSONL (question, answer, intent); shared:… for ../shared/data")],
    out: Annotated[Path, typer.Option("--out", "-o", help="directory for train/dev/test files")],
    dev: Annotated[float, typer.Option(help="share of questions for dev (thresholds)")] = 0.1,
    test: Annotated[float, typer.Option(help="share of questions held out for test")] = 0.1,
    seed: Annotated[int, typer.Option(help="seed of the split")] = 1337,
    question_column: QuestionColumn = None, answer_column: AnswerColumn = None, intent_column: IntentColumn = None,
) -> None:
    """Split by question (stratified by intent, seeded) into OUT/train, dev and test files."""
    written = write_split(faq, out, dev, test, seed, _columns(question_column, answer_column, intent_column))
    for name, path in written.items():
        console.print(f"{name}: {path}", highlight=False, markup=False)


@support_app.command("build")
@config_options(SupportConfig, into="settings", exclude=("kind", "intents", "writer", "slots", "constants",
                                                                 "tuning"))
def build(
    faq: Annotated[str, typer.Argument(help="the FAQ's train split (CSV/JSONL)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the application directory to write")],
    intents: Annotated[Path | None, typer.Option(help="intent classifier: a task: classify run "
                                                 "(configs/apps/support_intents.yaml)")] = None,
    writer: Annotated[str | None, typer.Option(help="a model that rephrases answers: a run, a Hugging Face "
                                               "directory or openai:BASE_URL#MODEL")] = None,
    dev: Annotated[str | None, typer.Option(help="dev split: tune the hand-off thresholds on it")] = None,
    ood: Annotated[str | None, typer.Option(help="out-of-domain questions for tuning (CSV/JSONL with text), "
                                            "e.g. shared:banking77/train.csv")] = None,
    ood_limit: Annotated[int, typer.Option(help="a seeded sample of this many out-of-domain questions")] = 1000,
    constant: Annotated[list[str] | None, typer.Option(help="a shop constant as NAME=VALUE, e.g. "
                                                       "'Customer Support Phone Number=+1-800-555-0199' "
                                                       "(repeatable; or edit app.yaml)")] = None,
    device: Annotated[str, typer.Option(help="device for the encoder and classifier")] = "auto",
    question_column: QuestionColumn = None, answer_column: AnswerColumn = None, intent_column: IntentColumn = None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Index the FAQ, learn its slots and shop constants, tune hand-off thresholds on --dev; writes OUT."""
    constants = dict(_constant(item) for item in constant or [])
    config = build_support(faq, out, intents, {**(settings or {}), "constants": constants, "writer": writer}, (),
                           _columns(question_column, answer_column, intent_column), dev, ood, ood_limit=ood_limit,
                           device=device)
    console.print(f"wrote {out} ({len(config.slots)} slots: {', '.join(config.slots) or 'none'}; "
                  f"hand-off below confidence {config.confidence_threshold:.3f} or similarity "
                  f"{config.ood_threshold:.3f})", highlight=False, markup=False)
    if config.tuning:
        console.print(f"tuned on dev: {json.dumps(config.tuning)}", highlight=False, markup=False)


def _constant(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"--constant '{item}' is not of the form NAME=VALUE")
    return name.strip(), value.strip()


def _print(reply: AppReply, as_json: bool) -> None:
    if as_json:
        print(json.dumps(reply.to_json(), ensure_ascii=False))
        return
    console.print(escape(reply.answer), highlight=False)
    detail = f"intent {reply.intent} ({reply.confidence})" if reply.intent else ""
    if reply.handoff:
        detail += f"; handed off: {reply.reason} (review item {reply.review_id})"
    if reply.slots:
        detail += f"; slots {reply.slots}"
    console.print(f"[dim]{escape(detail)}[/dim]", highlight=False)


def _app(app_dir: Path, guard: bool, policy_file: Path | None, data_dir: Path | None, writer: str | None,
         device: str) -> SupportApp:
    checks = None
    if guard:
        policy = load_config(GuardPolicy, policy_file) if policy_file else GuardPolicy()
        checks = Guard(policy, audit=AuditStore(data_dir), model_name="support")
    generator = load_writer(writer, device) if writer else None
    app = load_support(app_dir, checks, generator, device, audit=AuditStore(data_dir) if data_dir else None)
    if checks is not None:
        checks.model_name = app.name
    return app


@support_app.command("chat")
def chat(
    app_dir: Annotated[Path, typer.Argument(help="the application directory (luoxia apps support build)")],
    message: Annotated[str | None, typer.Argument(help="one message; none: a conversation read line by line "
                                                  "from standard input")] = None,
    conversation: Annotated[str | None, typer.Option(help="conversation id (kept with hand-offs)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print each reply as JSON (AppReply)")] = False,
    guard: Annotated[bool, typer.Option(help="moderate messages and redact personal data in answers")] = True,
    policy: Annotated[Path | None, typer.Option(help="guard policy YAML (configs/safety/guard.yaml)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="audit and review database (default $LUOXIA_HOME)")] = None,
    writer: Annotated[str | None, typer.Option(help="a model that rephrases answers (overrides app.yaml)")] = None,
    device: Annotated[str, typer.Option(help="device for the encoder and classifier")] = "auto",
) -> None:
    """Answer one message, or hold a conversation (one user turn per line of standard input)."""
    app = _app(app_dir, guard, policy, data_dir, writer, device)
    conversation = conversation or uuid.uuid4().hex[:12]
    if message is not None:
        _print(app.reply([{"role": "user", "content": message}], conversation), as_json)
        return
    history: list[Message] = []
    for line in sys.stdin:
        if not line.strip():
            continue
        history.append({"role": "user", "content": line.strip()})
        reply = app.reply(history, conversation)
        history.append({"role": "assistant", "content": reply.answer})
        _print(reply, as_json)
