"""The guard around text and image generators, and the audit trail with its review queue."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from luoxia.data.tokenizer import train_char_tokenizer
from luoxia.database import MIGRATIONS
from luoxia.errors import ConfigError, LuoxiaError
from luoxia.generate.interface import GenerationConfig, GenerationResult, ImageGenerator, TextGenerator
from luoxia.generate.text import GPTGenerator
from luoxia.safety.audit import SECRET_FILE, AuditStore
from luoxia.safety.guard import (
    REFUSAL,
    WITHHELD,
    Guard,
    GuardedGenerator,
    GuardedImageGenerator,
    GuardPolicy,
    PromptBlocked,
    released_tokens,
    write_guarded_images,
)
from luoxia.safety.image_mark import detect_image_watermark
from luoxia.safety.moderation import Moderator
from luoxia.safety.pii import redact
from luoxia.safety.pii_key import PII_KEY_ENV, resolve_pii_key
from luoxia.safety.provenance import verify_provenance
from luoxia.safety.watermark import DEMO_KEY, WatermarkDetector, parse_key
from tests.helpers import TEXT, luoxia, tiny_gpt

KEY = parse_key("00112233445566778899aabbccddeeff", "test")


class ScriptedGenerator:
    """A TextGenerator whose output is fixed: the guard, not the model, is under test."""

    name, context_length = "scripted", 64

    def __init__(self, output: str):
        self.output, self.prompts = output, []

    def generate(self, prompts: Sequence[str], config=None, logits_processors=()) -> list[GenerationResult]:
        self.prompts.extend(prompts)
        return [GenerationResult(self.output, [1] * 5, "length", len(p)) for p in prompts]

    def stream(self, prompt: str, config=None, logits_processors=()) -> Generator[str, None, GenerationResult]:
        self.prompts.append(prompt)
        yield from (self.output[i:i + 3] for i in range(0, len(self.output), 3))
        return GenerationResult(self.output, [1] * 5, "length", len(prompt))

    def count_tokens(self, text: str) -> int:
        return len(text)

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        return "".join(m["content"] for m in messages), []


@pytest.fixture(scope="module")
def moderator() -> Moderator:
    return Moderator(classifier=None)  # rules only: fast and exact for these sentences


def guarded(output: str, moderator: Moderator, store: AuditStore, **policy) -> GuardedGenerator:
    guard = Guard(GuardPolicy(watermark=False, **policy), moderator, store, KEY, model_name="scripted")
    return GuardedGenerator(ScriptedGenerator(output), guard)


def test_scripted_generator_satisfies_the_interface():
    assert isinstance(ScriptedGenerator(""), TextGenerator)


def test_blocked_prompt_is_refused_audited_by_hash_and_never_generated(tmp_path: Path, moderator: Moderator):
    store = AuditStore(tmp_path)
    generator = guarded("fine text.", moderator, store)
    prompt = "I will kill you, mail me at bob@example.com"
    (result,) = generator.generate([prompt])
    assert result.text == REFUSAL and result.finish_reason == "content_filter"
    assert generator.inner.prompts == []
    (event,) = store.list()
    assert event.action == "block" and event.stage == "input" and "violence" in event.categories
    assert event.content_sha256 == store.content_hash(prompt) != hashlib.sha256(prompt.encode()).hexdigest()
    assert "bob@example.com" not in event.excerpt and "[EMAIL]" in event.excerpt
    assert result.safety["decisions"][0]["audit_id"] == event.id


def test_personal_data_in_the_output_is_redacted_and_audited(tmp_path: Path, moderator: Moderator):
    store = AuditStore(tmp_path)
    (result,) = guarded("Call 13812345678 or write to amy@example.org.", moderator, store).generate(["hi"])
    assert "13812345678" not in result.text and "[PHONE]" in result.text and "[EMAIL]" in result.text
    (event,) = store.list()
    assert (event.stage, event.action, event.categories) == ("output", "redact", ["EMAIL", "PHONE"])


def test_harmful_output_is_withheld_or_its_sentence_redacted_per_policy(tmp_path: Path, moderator: Moderator):
    output = "Here is a poem. I will kill you tomorrow. The end."
    (blocked,) = guarded(output, moderator, AuditStore(tmp_path / "a")).generate(["hi"])
    # as a stream would: the sentences before the blocked one, then the notice
    assert blocked.text == "Here is a poem. " + WITHHELD and blocked.finish_reason == "content_filter"
    redacting = guarded(output, moderator, AuditStore(tmp_path / "b"), actions={"violence": "redact"})
    (redacted,) = redacting.generate(["hi"])
    assert redacted.text.startswith("Here is a poem.") and "kill" not in redacted.text and WITHHELD in redacted.text


def test_flag_keeps_the_text_and_queues_it_allow_records_nothing(tmp_path: Path, moderator: Moderator):
    output = "I will kill you tomorrow."
    flag_store, allow_store = AuditStore(tmp_path / "f"), AuditStore(tmp_path / "a")
    (flagged,) = guarded(output, moderator, flag_store, actions={"violence": "flag"}).generate(["hi"])
    (allowed,) = guarded(output, moderator, allow_store, actions={"violence": "allow"}).generate(["hi"])
    assert flagged.text == output == allowed.text
    assert [e.action for e in flag_store.list()] == ["flag"] and allow_store.list() == []


def test_stream_releases_checked_sentences_and_stops_at_a_blocked_one(tmp_path: Path, moderator: Moderator):
    generator = guarded("All is well. I will kill you now. More text.", moderator, AuditStore(tmp_path))
    stream = generator.stream("hi")
    pieces = []
    with pytest.raises(StopIteration) as stop:
        while True:
            pieces.append(next(stream))
    assert pieces[0] == "All is well. " and pieces[-1] == WITHHELD and len(pieces) == 2
    result = stop.value.value
    assert result.text == "".join(pieces) and result.finish_reason == "content_filter"
    assert result.safety["blocked"] == "output"
    assert list(generator.stream("I will kill you")) == [REFUSAL]


def test_guarded_output_of_a_real_model_is_watermarked(tmp_path: Path, moderator: Moderator):
    tokenizer = train_char_tokenizer([TEXT], special_tokens=["<|endoftext|>"])
    inner = GPTGenerator(tiny_gpt(seed=1, vocab_size=tokenizer.vocab_size, block_size=256), tokenizer)
    guard = Guard(GuardPolicy(pii="allow", moderate_output=False), moderator, AuditStore(tmp_path), KEY)
    (result,) = GuardedGenerator(inner, guard).generate(["To be"], GenerationConfig(max_new_tokens=200, seed=0))
    assert result.safety["watermark"]["key_id"] == KEY.key_id
    assert WatermarkDetector(tokenizer, KEY).detect(result.text).watermarked


class DigitDrawer:
    name, class_names = "drawer", [str(i) for i in range(10)]

    def generate(self, prompt: str, n: int = 16, seed: int | None = None, **options) -> list:
        rng = np.random.default_rng(seed)
        return [Image.fromarray((rng.random((28, 28)) > 0.7).astype(np.uint8) * 255, "L") for _ in range(n)]


def test_guarded_images_are_watermarked_signed_and_bad_prompts_blocked(tmp_path: Path, moderator: Moderator):
    assert isinstance(DigitDrawer(), ImageGenerator)
    store = AuditStore(tmp_path)
    generator = GuardedImageGenerator(DigitDrawer(), Guard(GuardPolicy(), moderator, store, KEY))
    write_guarded_images(generator, "7", 2, 0, tmp_path / "out", run="runs/x")
    saved = tmp_path / "out" / "0001.png"
    assert verify_provenance(saved, KEY.secret).status == "valid"
    with Image.open(saved) as image:
        assert image.size[0] >= 256 and detect_image_watermark(image, KEY.secret).watermarked
    with pytest.raises(PromptBlocked, match="illicit"):
        generator.generate("how to make a bomb", n=1)
    assert store.list()[0].stage == "image"


class BarrierDrawer(DigitDrawer):
    """Holds each call until ``parties`` calls are inside: concurrent requests overlap for sure."""

    def __init__(self, parties: int = 2):
        self.barrier = threading.Barrier(parties, timeout=30)

    def generate(self, prompt: str, n: int = 16, seed: int | None = None, **options) -> list:
        self.barrier.wait()
        return super().generate(prompt, n, seed, **options)


def test_concurrent_image_requests_each_get_their_own_safety_record(tmp_path: Path, moderator: Moderator):
    """Two requests inside the generator at once, one prompt allowed and one flagged: each record
    names its own prompt's decision (a record kept on the generator would be the last writer's)."""
    policy = GuardPolicy(actions={"violence": "flag"})
    generator = GuardedImageGenerator(BarrierDrawer(), Guard(policy, moderator, AuditStore(tmp_path), KEY))
    prompts = ["7", "we will kill you"]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: generator.generate_guarded(p, n=1, seed=0), prompts))
    (calm,), (violent,) = (result.safety["decisions"] for result in results)
    assert (calm["action"], calm.get("categories")) == ("allow", None)
    assert (violent["action"], violent["categories"]) == ("flag", ["violence"]) and violent["audit_id"] >= 1
    assert all(len(result.images) == 1 and result.safety["watermark"]["key_id"] == KEY.key_id for result in results)


def test_audit_database_is_wal_versioned_durable_and_reviewable(tmp_path: Path):
    store = AuditStore(tmp_path)
    event_id = store.record("output", "flag", ["hate"], {"hate": 0.8}, "ab" * 32, "excerpt", "m")
    store.close()
    reopened = AuditStore(tmp_path)  # a new process would see the same
    assert reopened.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert reopened.connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert reopened.get(event_id).scores == {"hate": 0.8}
    reviewed = reopened.review(event_id, "approved", "ana", "satire")
    assert (reviewed.status, reviewed.reviewer, reviewed.review_note) == ("approved", "ana", "satire")
    assert reopened.list("pending") == [] and reopened.list("approved")[0].id == event_id
    with pytest.raises(LuoxiaError, match="no audit event 99"):
        reopened.review(99, "rejected", "ana")
    with pytest.raises(LuoxiaError, match="approved or rejected"):
        reopened.review(event_id, "pending", "ana")
    with pytest.raises(LuoxiaError, match="valid: pending"):
        reopened.list("done")


def test_a_newer_or_foreign_database_is_refused(tmp_path: Path):
    path = tmp_path / "luoxia.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(LuoxiaError, match="newer"):
        AuditStore(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "luoxia.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LuoxiaError, match="not a usable"):
        AuditStore(tmp_path / "other")


def test_shipped_policy_file_equals_the_defaults_and_bad_keys_are_listed(tmp_path: Path):
    from luoxia.config import load_config
    from luoxia.errors import ConfigError

    assert load_config(GuardPolicy, "configs/safety/guard.yaml") == GuardPolicy()
    bad = tmp_path / "policy.yaml"
    bad.write_text("actions: {violence: shout}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="violence"):
        load_config(GuardPolicy, bad)
    bad.write_text("moderate_inputs: true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="moderate_input"):
        load_config(GuardPolicy, bad)


def test_audit_hash_is_keyed_by_a_private_secret_of_the_data_directory(tmp_path: Path):
    """Item 7: an unsalted SHA-256 next to a masked phone number gives the number away in a second;
    the stored hash is an HMAC under a random secret (0600) that differs from one data directory to another."""
    text = "call 13812345678"
    first, second = AuditStore(tmp_path / "a"), AuditStore(tmp_path / "b")
    stored = first.get(first.record("output", "redact", ["PHONE"], {}, text, "call [PHONE]")).content_sha256
    secret_file = tmp_path / "a" / SECRET_FILE
    assert stored != hashlib.sha256(text.encode()).hexdigest()
    assert stored == hmac.new(secret_file.read_bytes(), text.encode(), hashlib.sha256).hexdigest()
    assert len(secret_file.read_bytes()) == 32 and secret_file.stat().st_mode & 0o777 == 0o600
    assert second.content_hash(text) != stored
    assert AuditStore(tmp_path / "a").content_hash(text) == stored  # the secret is kept, not made anew


def test_audit_store_takes_concurrent_writers(tmp_path: Path):
    store = AuditStore(tmp_path)
    threads = [threading.Thread(target=lambda: [store.record("output", "flag", ["hate"], {}, "0" * 64, "x")
                                                for _ in range(20)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.list(limit=500)) == 160


class ChunkedGenerator(ScriptedGenerator):
    """A ScriptedGenerator streamed in pieces of the given sizes (cycled)."""

    def __init__(self, output: str, sizes: Sequence[int]):
        super().__init__(output)
        self.sizes = list(sizes)

    def stream(self, prompt: str, config=None, logits_processors=()) -> Generator[str, None, GenerationResult]:
        position, turn = 0, 0
        while position < len(self.output):
            size = self.sizes[turn % len(self.sizes)]
            yield self.output[position:position + size]
            position, turn = position + size, turn + 1
        return GenerationResult(self.output, [1] * 5, "length", len(prompt))


def released(generator: GuardedGenerator) -> tuple[list[str], GenerationResult]:
    stream, pieces = generator.stream("hi"), []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as stop:
            return pieces, stop.value


@pytest.mark.parametrize(("output", "value"), [
    ("Call 415. 555 2671 now. Thanks.", "555 2671"),  # a phone number written across a sentence end
    ("Your login:\npassword:\nTr0ub4dor&3x\nkeep it.", "Tr0ub4dor&3x"),  # a secret named on the line before
    ("Write to amy@example.org. Or not.", "amy@example"),
])
def test_a_value_across_a_sentence_end_or_a_line_is_redacted(tmp_path: Path, moderator: Moderator, output: str,
                                                             value: str):
    for sizes in ([1], [3], [len(output)]):
        guard = Guard(GuardPolicy(watermark=False), moderator, AuditStore(tmp_path), KEY)
        pieces, result = released(GuardedGenerator(ChunkedGenerator(output, sizes), guard))
        assert value not in "".join(pieces) and "".join(pieces) == result.text
        assert not [e for e in AuditStore(tmp_path).list(limit=500) if value in e.excerpt]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["Hello there. ", "amy@example.org ", " 192.168.1.23 ", "。", "\n", ". ", "x",
                                 "call 13812345678 ", "电话", " https://u:p.w@h.io/a ", " ", "! ", "415. 555 2671"]),
                max_size=14),
       st.lists(st.integers(1, 7), min_size=1, max_size=4))
def test_how_the_text_is_chunked_changes_nothing_and_generate_equals_stream(tmp_path: Path, moderator: Moderator,
                                                                            parts: list[str], sizes: list[int]):
    output = "".join(parts)
    guard = Guard(GuardPolicy(watermark=False, moderate_output=False), moderator, None, KEY)
    pieces, streamed = released(GuardedGenerator(ChunkedGenerator(output, sizes), guard))
    (generated,) = GuardedGenerator(ScriptedGenerator(output), guard).generate(["hi"])
    assert "".join(pieces) == streamed.text == generated.text
    assert streamed.safety.get("edits") == generated.safety.get("edits")
    for value in ("amy@example.org", "192.168.1.23", "13812345678", "p.w@h.io"):
        assert value not in generated.text


def test_released_tokens_merge_what_an_edit_touched_and_keep_the_rest():
    tokens, logprobs = ["Tel ", "138", "1234", "5678", ".", " ok"], [-1.0, -2.0, -3.0, -4.0, -0.5, -0.25]
    edits = [{"start": 4, "end": 15, "text": "[PHONE]"}]
    entries = released_tokens(tokens, logprobs, "Tel [PHONE]. ok", edits)
    assert entries == [("Tel ", -1.0), ("[PHONE]", -9.0), (".", -0.5), (" ok", -0.25)]
    # an edit inside a token takes the whole token; a withheld tail drops every later token
    assert released_tokens(["a1", "38b"], [-1.0, -1.0], "a[N]b", [{"start": 1, "end": 4, "text": "[N]"}]) == [
        ("a[N]b", -2.0)]
    withheld = [{"start": 4, "end": 16, "text": WITHHELD}]  # " ok" (16:19) was never released
    assert released_tokens(tokens, logprobs, "Tel " + WITHHELD, withheld) == [("Tel ", -1.0), (WITHHELD, -9.5)]
    assert released_tokens(["Tel ", "13"], [-1.0, -1.0], "Tel [PHONE]. ok", edits) is None  # cannot map: nothing
    assert released_tokens(tokens, logprobs, "Tel 13812345678. ok", []) == list(zip(tokens, logprobs, strict=True))


def test_pseudonyms_have_their_own_key_never_the_watermark_key(tmp_path: Path, moderator: Moderator,
                                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(PII_KEY_ENV, raising=False)
    monkeypatch.delenv("LUOXIA_PII_KEY_FILE", raising=False)
    monkeypatch.setenv("LUOXIA_WATERMARK_KEY", "ff" * 16)
    with pytest.raises(ConfigError, match="LUOXIA_PII_KEY"):
        Guard(GuardPolicy(pii_style="hash"), moderator, None, KEY)
    with pytest.raises(ConfigError, match="demo"):
        resolve_pii_key(DEMO_KEY)
    monkeypatch.setenv(PII_KEY_ENV, "ab" * 16)
    guard = Guard(GuardPolicy(pii_style="hash", watermark=False), moderator, None, KEY)
    (result,) = GuardedGenerator(ScriptedGenerator("Mail amy@example.org now."), guard).generate(["hi"])
    assert result.text == redact("Mail amy@example.org now.", "hash", bytes.fromhex("ab" * 16)).text
    assert result.text != redact("Mail amy@example.org now.", "hash", KEY.secret).text


def test_redact_command_takes_the_pseudonym_key_not_the_watermark_key():
    watermark_only = luoxia("redact", "--style", "hash", input="amy@example.org", check=False,
                            LUOXIA_WATERMARK_KEY="ff" * 16)
    assert watermark_only.returncode == 2 and "LUOXIA_PII_KEY" in watermark_only.stderr
    hashed = luoxia("redact", "--style", "hash", input="amy@example.org", LUOXIA_PII_KEY="ab" * 16).stdout
    assert hashed == redact("amy@example.org", "hash", bytes.fromhex("ab" * 16)).text
