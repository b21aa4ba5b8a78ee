"""The support assistant end to end on the bundled FAQ: Python, the CLI, hand-off into the review
queue, slots asked and filled, the guard on, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from luoxia.apps.faq import BUNDLED_FAQ, FAQColumns, read_faq, split_faq, write_split
from luoxia.apps.interface import ChatApp
from luoxia.apps.registry import AppContext, load_app
from luoxia.apps.sentiment import SentimentTagger
from luoxia.apps.slots import find_slots, learn_slots, templatize
from luoxia.apps.support import build_support, load_support, tune_thresholds
from luoxia.cli import app as cli
from luoxia.config import load_config
from luoxia.encoders import Encoder, load_encoder
from luoxia.errors import ConfigError, DataError
from luoxia.generate.interface import GenerationResult
from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import REFUSAL, Guard, GuardPolicy
from luoxia.safety.moderation import Moderator
from luoxia.serve.app import create_app
from luoxia.serve.models import serve_app
from luoxia.train.finetune import FinetuneRecipe, finetune
from tests.echo import LOOPBACK, echo_models, echo_settings
from tests.helpers import REPO

PHONE = "+1-800-555-0199"
OUT_OF_DOMAIN = "How do I activate the new credit card my bank sent me?"


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder("minilm", device="cpu")


@pytest.fixture(scope="module")
def mood() -> SentimentTagger:
    return SentimentTagger()


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory, encoder: Encoder) -> Path:
    """The bundled FAQ built into an app without a classifier (intent: the best entry's), so the
    flow under test does not hang on a tiny classifier's guesses."""
    out = tmp_path_factory.mktemp("support") / "app"
    build_support(BUNDLED_FAQ, out, settings={"constants": {"Customer Support Phone Number": PHONE},
                                              "sentiment": False}, encoder=encoder)  # tests lend `mood`
    return out


def invoke(*args: str) -> str:
    """A `luoxia` command in this process (the models' imports are paid once); its output."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    return result.output


@pytest.fixture
def guard(tmp_path: Path) -> Guard:
    return Guard(GuardPolicy(watermark=False), Moderator(classifier=None), AuditStore(tmp_path / "home"),
                 model_name="support")


def test_split_is_by_question_seeded_and_stratified(tmp_path: Path):
    entries = read_faq(BUNDLED_FAQ)
    parts = split_faq(entries, dev=0.25, test=0.25, seed=3)
    assert parts == split_faq(entries, dev=0.25, test=0.25, seed=3)  # same seed, same split
    questions = [{e.question.lower() for e in part} for part in parts.values()]
    assert sum(map(len, questions)) == len(set.union(*questions))  # no question in two splits
    assert sum(len(p) for p in parts.values()) == len(entries)
    assert {e.intent for e in parts["train"]} == {e.intent for e in entries}
    written = write_split(BUNDLED_FAQ, tmp_path / "faq", dev=0.25, test=0.25, seed=3)
    assert [e.question for e in read_faq(written["test"])] == [e.question for e in parts["test"]]


def test_slots_are_learnt_from_entity_offsets():
    entries = read_faq(BUNDLED_FAQ)
    slots = learn_slots(entries)
    assert {"order_id", "invoice_id", "account_type"} <= set(slots)
    found = find_slots(slots, "my parcel 998877665544 and invoice #55555 for a gold account")
    assert found == {"order_id": "998877665544", "invoice_id": "#55555", "account_type": "gold"}
    assert find_slots(slots, "feel free to call") == {}  # "free" counts only as an account type
    first = next(e for e in entries if e.entities and e.entities[0].type == "order_id")
    assert first.entities[0].value not in templatize(first, slots) and "{{Order Number}}" in templatize(first, slots)


def test_slot_is_asked_for_then_filled_on_the_next_turn(app_dir: Path, tmp_path: Path, encoder: Encoder,
                                                        mood: SentimentTagger):
    app = load_support(app_dir, audit=AuditStore(tmp_path), encoder=encoder, sentiment=mood.label)
    angry = "Where is my parcel? It is a week late and I am really angry."
    asked = app.reply([user(angry)])
    assert asked.missing_slots == ["order_id"] and not asked.handoff and asked.intent == "track_order"
    assert asked.sentiment == "negative"  # the customer's mood, per turn
    conversation = [user(angry), {"role": "assistant", "content": asked.answer}, user("it is 123456789012")]
    answered = app.reply(conversation)
    assert answered.slots == {"order_id": "123456789012"} and "123456789012" in answered.answer
    assert answered.missing_slots == [] and "{{" not in answered.answer and answered.sources


def test_handoff_out_of_domain_and_on_request_lands_in_the_review_queue(app_dir: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LUOXIA_HOME", str(tmp_path))  # where hand-offs go without a guard
    app = load_app(app_dir, AppContext(device="cpu"))
    assert isinstance(app, ChatApp) and app.name == "support"
    store = AuditStore(tmp_path)
    away = app.reply([user(OUT_OF_DOMAIN)], "c1")
    assert away.handoff and away.reason.startswith("out of domain") and away.review_id is not None
    human = app.reply([user("let me speak with a real person")])
    assert human.handoff and "contact_human_agent" in human.reason
    assert [e.stage for e in store.list()] == ["handoff", "handoff"]
    assert "activate the new credit card" in store.get(away.review_id).excerpt


def test_guard_refuses_a_blocked_message_and_redacts_a_phone_number(app_dir: Path, guard: Guard, encoder: Encoder,
                                                                     mood: SentimentTagger):
    app = load_support(app_dir, guard, encoder=encoder, sentiment=mood.label)
    refused = app.reply([user("I will kill you")])
    assert refused.answer == REFUSAL and refused.safety["blocked"] == "input" and refused.intent is None
    phone = app.reply([user("what is your customer service phone number")])
    assert PHONE not in phone.answer and "[PHONE]" in phone.answer and phone.safety["edits"]
    assert app.reply([user(OUT_OF_DOMAIN)]).review_id in [e.id for e in guard.audit.list()]


class Writer:
    """A writer that shows what it was given: the reply must come only from the retrieved answers."""

    name, context_length = "scripted", 512

    def __init__(self):
        self.prompts: list[str] = []

    def render_chat(self, messages):
        return "\n".join(m["content"] for m in messages), ["\n\n"]

    def generate(self, prompts, config=None, logits_processors=()):
        self.prompts += prompts
        return [GenerationResult("Sure: sign in, then reset it.", [], "stop", 1) for _ in prompts]


def test_writer_rephrases_from_the_retrieved_answers_only(app_dir: Path, tmp_path: Path, encoder: Encoder,
                                                         mood: SentimentTagger):
    writer = Writer()
    app = load_support(app_dir, writer=writer, audit=AuditStore(tmp_path), encoder=encoder, sentiment=mood.label)
    reply = app.reply([user("I forgot my password")])
    assert reply.answer == "Sure: sign in, then reset it." and "rephrased by scripted" in reply.warnings[0]
    (prompt,) = writer.prompts
    assert "Forgot password" in prompt and "I forgot my password" in prompt and "Visa" not in prompt


def test_thresholds_tune_on_dev_with_out_of_domain_questions(app_dir: Path, tmp_path: Path, encoder: Encoder,
                                                             mood: SentimentTagger):
    app = load_support(app_dir, audit=AuditStore(tmp_path), encoder=encoder, sentiment=mood.label)
    dev = read_faq(BUNDLED_FAQ)[:12]
    tuning = tune_thresholds(app, dev, [OUT_OF_DOMAIN, "What is the exchange rate for euros?"])
    assert tuning["ood_questions"] == 2 and 0 <= tuning["handoff_f1"] <= 1
    assert app.config.ood_threshold == tuning["ood_threshold"]


def test_bad_inputs_are_one_line_errors(tmp_path: Path):
    with pytest.raises(DataError, match="no such FAQ file"):
        read_faq(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("question,answer,intent\n", encoding="utf-8")
    with pytest.raises(DataError, match="holds no entries"):
        read_faq(tmp_path / "empty.csv")
    (tmp_path / "cols.csv").write_text("q,a,intent\nhi,hello,greet\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no question column .*; columns: q, a, intent"):
        read_faq(tmp_path / "cols.csv")
    assert read_faq(tmp_path / "cols.csv", FAQColumns(question="q", answer="a"))[0].answer == "hello"
    (tmp_path / "blank.jsonl").write_text('{"question": "hi", "answer": "", "intent": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"blank.jsonl:1: the answer"):
        read_faq(tmp_path / "blank.jsonl")
    with pytest.raises(ConfigError, match="not an application directory"):
        load_support(tmp_path)
    with pytest.raises(ConfigError, match="not an application directory"):
        load_app(tmp_path)


def test_cli_chat_holds_a_conversation_from_standard_input(app_dir: Path, tmp_path: Path):
    """One user turn per line, the history kept in the loop: the slot asked for, then filled."""
    result = CliRunner().invoke(cli, ["apps", "support", "chat", str(app_dir), "--json", "--no-guard", "--device",
                                      "cpu", "--conversation", "c9", "--data-dir", str(tmp_path)],
                                input="where is my parcel?\n\n123456789012\n")
    assert result.exit_code == 0, result.output
    asked, answered = (json.loads(line) for line in result.stdout.splitlines())
    assert asked["missing_slots"] == ["order_id"] and "123456789012" in answered["answer"]
    assert answered["intent"] == "track_order" and answered["slots"] == {"order_id": "123456789012"}


def test_cli_end_to_end_with_a_tiny_intent_classifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """split → a few LoRA steps of `configs/apps/support_intents.yaml` → build with --intents, --dev and
    --ood → chat (--json) → the hand-off in `luoxia review list`."""
    monkeypatch.setenv("LUOXIA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    invoke("apps", "support", "split", str(BUNDLED_FAQ), "--out", str(tmp_path / "faq"), "--dev", "0.25",
           "--test", "0.2")
    finetune(load_config(FinetuneRecipe, REPO / "configs/apps/support_intents.yaml", [
        f"out_dir={tmp_path / 'intents'}", f"data.train={tmp_path / 'faq/train.csv'}",
        f"data.val={tmp_path / 'faq/dev.csv'}", "data.text_field=question", "train.max_steps=2",
        "train.batch_size=8", "train.eval_interval=2", "train.eval_batches=1", "train.checkpoint_interval=2",
        "train.warmup_steps=0", "train.progress=false", "train.device=cpu", "train.num_threads=1"]))
    (tmp_path / "ood.csv").write_text(f"text,category\n{OUT_OF_DOMAIN},card\nWhat is my card's PIN?,card\n")
    built = invoke("apps", "support", "build", str(tmp_path / "faq/train.csv"), "--out", str(tmp_path / "app"),
                   "--intents", str(tmp_path / "intents"), "--dev", str(tmp_path / "faq/dev.csv"),
                   "--ood", str(tmp_path / "ood.csv"), "--constant", f"Customer Support Phone Number={PHONE}",
                   "--device", "cpu", "--no-sentiment")
    assert "tuned on dev" in built
    app_yaml = (tmp_path / "app" / "app.yaml").read_text()
    assert "intents:" in app_yaml and PHONE in app_yaml and "handoff_f1" in app_yaml
    reply = json.loads(invoke("apps", "support", "chat", str(tmp_path / "app"), OUT_OF_DOMAIN, "--json",
                              "--no-guard", "--device", "cpu", "--conversation", "c7"))
    assert reply["handoff"] and reply["review_id"] and reply["intent"] and 0 <= reply["confidence"] <= 1
    listed = invoke("review", "list")
    assert "handoff" in listed and "activate the new" in listed
    missing = CliRunner().invoke(cli, ["apps", "support", "build", str(tmp_path / "none.csv"), "--out",
                                       str(tmp_path / "x")])
    assert isinstance(missing.exception, DataError) and "no such FAQ file" in str(missing.exception)


def test_served_as_model_support_with_a_handoff_and_a_slot_over_two_turns(app_dir: Path, tmp_path: Path):
    settings = echo_settings(tmp_path / "data", open_access=True, apps=[app_dir])
    models = echo_models(settings)
    serve_app(models, app_dir)
    with TestClient(create_app(settings, models=models), **LOOPBACK) as client:
        def chat(*messages: dict[str, str]) -> dict:
            reply = client.post("/v1/chat/completions", json={"model": "support", "messages": list(messages)})
            assert reply.status_code == 200, reply.text
            return reply.json()

        away = chat(user(OUT_OF_DOMAIN))
        assert away["app"]["handoff"] and away["choices"][0]["message"]["content"].startswith("I'm passing")
        event = AuditStore(settings.data_dir).get(away["app"]["review_id"])
        assert event.stage == "handoff" and event.model == "support" and event.status == "pending"
        asked = chat(user("where is my parcel?"))
        assert asked["app"]["missing_slots"] == ["order_id"]
        answer = asked["choices"][0]["message"]["content"]
        done = chat(user("where is my parcel?"), {"role": "assistant", "content": answer}, user("998877665544"))
        assert "998877665544" in done["choices"][0]["message"]["content"]
        assert done["app"]["slots"] == {"order_id": "998877665544"} and done["app"]["sources"]
        assert done["app"]["sentiment"] is None  # off in this app.yaml (tests lend the tagger in Python)
        assert {"id": "support", "app": "support"}.items() <= {
            c["id"]: c for c in client.get("/v1/models").json()["data"]}["support"].items()


class CountingEncoder:
    """An encoder that counts the texts it encodes (the wrapped one does the work)."""

    def __init__(self, inner: Encoder):
        self.inner, self.name, self.dim, self.texts = inner, inner.name, inner.dim, 0

    def encode(self, texts, batch_size: int = 64):
        self.texts += len(texts)
        return self.inner.encode(texts)


def test_a_turn_encodes_the_question_once(app_dir: Path, tmp_path: Path, encoder: Encoder):
    """The closest-question similarity and the search share one encoding of the question."""
    counting = CountingEncoder(encoder)
    app = load_support(app_dir, audit=AuditStore(tmp_path), encoder=counting)
    (reading,) = app.read(["How do I reset my password?"])
    assert counting.texts == 1 and reading.hits
    assert app.read(["a", "b", "c"]) and counting.texts == 4
