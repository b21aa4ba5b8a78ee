"""The safety commands end to end, as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from luoxia.safety.audit import AuditStore
from tests.helpers import luoxia

KEY = "00112233445566778899aabbccddeeff"


def test_moderate_reads_lines_or_jsonl_and_writes_one_object_per_line():
    out = luoxia("moderate", "--rules-only", input="I will kill you\nhow do I kill a Python process\n")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["flagged"] for r in rows] == [True, False] and rows[0]["categories"]["violence"]
    assert set(rows[0]["scores"]) >= {"sexual", "hate", "self-harm", "violence", "illicit"}
    jsonl = luoxia("moderate", "--rules-only", "--jsonl", input='{"text": "我想自杀"}\n{"text": "你好"}\n')
    assert [json.loads(line)["flagged"] for line in jsonl.stdout.splitlines()] == [True, False]
    bad = luoxia("moderate", "--rules-only", "--threshold", "violent=0.5", input="x\n", check=False)
    assert bad.returncode == 2 and "valid: sexual" in bad.stderr


def test_moderate_explain_gives_each_rule_and_the_span_of_the_input():
    """Issue 14 item 6: `--explain` adds `evidence`; the span is the user's own text, as typed."""
    text = "Tomorrow I  will  k1ll   you\n怎麼製作炸\u200b彈\nkill the Python process\n"
    out = luoxia("moderate", "--rules-only", "--explain", input=text)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows[0]["evidence"] == [{"layer": "rule", "category": "violence", "score": 0.95, "start": 9, "end": 28,
                                    "source": "en.yaml#violence.1", "text": "I  will  k1ll   you"}]
    assert [(e["source"], e["text"]) for e in rows[1]["evidence"]] == [("zh.yaml#illicit.1", "怎麼製作炸\u200b彈")]
    assert rows[2]["evidence"] == [] and not rows[2]["flagged"]
    plain = [json.loads(line) for line in luoxia("moderate", "--rules-only", input=text).stdout.splitlines()]
    assert plain == [{k: v for k, v in row.items() if k != "evidence"} for row in rows]  # unchanged without it


@pytest.mark.slow
def test_moderate_with_the_shipped_classifier():
    out = luoxia("moderate", input="You are a disgusting pig and everyone hates you\nThe tea is warm\n")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows[0]["scores"]["harassment"] > rows[1]["scores"]["harassment"] and not rows[1]["flagged"]


def test_redact_masks_and_json_gives_types_without_values():
    text = "Mail amy@example.org or call +86 138 1234 5678 before 2024-03-15; total $19.99."
    out = luoxia("redact", input=text)
    assert out.stdout == "Mail [EMAIL] or call [PHONE] before 2024-03-15; total $19.99."
    spans = json.loads(luoxia("redact", "--json", input=text).stdout)["spans"]
    assert [s["type"] for s in spans] == ["EMAIL", "PHONE"] and "amy" not in json.dumps(spans)
    hashed = luoxia("redact", "--style", "hash", "--key", KEY, input="amy@example.org").stdout
    assert hashed.startswith("[EMAIL_") and hashed == luoxia("redact", "--style", "hash", "--key", KEY,
                                                          input="AMY@example.org").stdout


@pytest.mark.slow
def test_generate_watermark_then_detect_without_flags(trained_run: Path, tmp_path: Path):
    args = ["generate", "--model", str(trained_run), "-p", "To", "--max-new-tokens", "200", "--temperature", "1.5",
            "--seed", "3", "--json"]
    marked = json.loads(luoxia(*args, "--watermark").stdout)["text"]
    plain = json.loads(luoxia(*args).stdout)["text"]
    found = json.loads(luoxia("watermark", "detect", "--model", str(trained_run), input=marked).stdout)
    clean = json.loads(luoxia("watermark", "detect", "--model", str(trained_run), input=plain).stdout)
    assert found["watermarked"] and found["z"] > 4 and not clean["watermarked"]
    assert set(found) >= {"z", "p_value", "green_fraction", "tokens_scored", "watermarked"}
    wrong = luoxia("watermark", "detect", "--model", str(trained_run), "--key", "nothex", input=marked, check=False)
    assert wrong.returncode == 2 and "hex digits" in wrong.stderr
    empty = luoxia("watermark", "detect", "--model", str(trained_run), input="", check=False)
    assert empty.returncode == 2 and "empty" in empty.stderr


@pytest.mark.slow
def test_guarded_generation_audits_and_review_queue(trained_run: Path, tmp_path: Path):
    home = str(tmp_path / "home")
    out = luoxia("generate", "--model", str(trained_run), "-p", "I will kill you", "--guard", "--json",
                 "--max-new-tokens", "5", LUOXIA_HOME=home)
    row = json.loads(out.stdout)
    assert row["finish_reason"] == "content_filter" and row["safety"]["blocked"] == "input"
    listed = luoxia("review", "list", LUOXIA_HOME=home).stdout
    assert "block" in listed and "violence" in listed
    event_id = str(row["safety"]["decisions"][0]["audit_id"])
    luoxia("review", "reject", event_id, "--note", "threat", "--reviewer", "ana", LUOXIA_HOME=home)
    shown = json.loads(luoxia("review", "show", event_id, LUOXIA_HOME=home).stdout)
    assert (shown["status"], shown["reviewer"], shown["review_note"]) == ("rejected", "ana", "threat")
    missing = luoxia("review", "show", "999", LUOXIA_HOME=home, check=False)
    assert missing.returncode == 2 and "no audit event 999" in missing.stderr


def test_provenance_verify_valid_tampered_absent(tmp_path: Path):
    from luoxia.safety.image_mark import embed_image_watermark
    from luoxia.safety.provenance import save_with_provenance

    image = embed_image_watermark(Image.new("L", (28, 28), 0), bytes.fromhex(KEY))
    path = tmp_path / "x.png"
    save_with_provenance(image, path, model="m", run="r", seed=1, parameters={}, key=bytes.fromhex(KEY))
    valid = luoxia("provenance", "verify", str(path), "--key", KEY)
    assert json.loads(valid.stdout)["status"] == "valid"
    pixels = Image.open(path)
    pixels.load()
    pixels.putpixel((3, 3), (255, 0, 0))
    pixels.save(tmp_path / "edited.png", pnginfo=None)
    absent = luoxia("provenance", "verify", str(tmp_path / "edited.png"), "--key", KEY, check=False)
    assert absent.returncode == 1 and json.loads(absent.stdout)["status"] == "absent"


HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202eevil\u2066 \u200bhi"


def test_review_output_cannot_drive_the_terminal(tmp_path: Path):
    audit = AuditStore(tmp_path)
    event = audit.record("input", "flag", ["violence\x1b[5m"], {}, "x", HOSTILE)
    audit.close()
    listed = luoxia("review", "list", "--data-dir", str(tmp_path)).stdout
    shown = luoxia("review", "show", str(event), "--data-dir", str(tmp_path)).stdout
    for output in (listed, shown):
        assert not any(c in output for c in "\x1b\x07\x9b\u202e\u2066\u200b"), repr(output)
    assert "\\u001b" in listed and json.loads(shown)["excerpt"] == HOSTILE  # visible, and the same text to a reader


def test_review_verdicts_are_final_until_reopened_and_logged(tmp_path: Path):
    audit = AuditStore(tmp_path)
    event = str(audit.record("input", "block", ["violence"], {}, "x", "we will kill you"))
    audit.close()
    home = ["--data-dir", str(tmp_path)]
    luoxia("review", "reject", event, "--reviewer", "ana", *home)
    again = luoxia("review", "approve", event, "--reviewer", "bo", *home, check=False)
    assert again.returncode == 2 and "already decided" in again.stderr and "Traceback" not in again.stderr
    luoxia("review", "reopen", event, "--reviewer", "admin", "--note", "second look", *home)
    luoxia("review", "approve", event, "--reviewer", "bo", *home)
    shown = json.loads(luoxia("review", "show", event, *home).stdout)
    assert (shown["status"], shown["reviewer"]) == ("approved", "bo")
    assert [(d["action"], d["actor"]) for d in shown["decisions"]] == [
        ("rejected", "ana"), ("reopened", "admin"), ("approved", "bo")]


@pytest.mark.parametrize("command", ["approve", "reject", "reopen", "show"])
def test_review_of_a_huge_id_is_one_line(tmp_path: Path, command: str):
    result = luoxia("review", command, str(2**64), "--data-dir", str(tmp_path), check=False)
    assert result.returncode == 2 and result.stderr.startswith("error: no audit event")
    assert len(result.stderr.strip().splitlines()) == 1 and str(tmp_path) not in result.stderr


def test_watermark_calibrate_then_detect_says_too_short_below_the_reliable_length(trained_run: Path, tmp_path: Path):
    """Issue 14 item 5: `watermark calibrate` stores the shortest reliable length beside the model and
    `watermark detect` answers "too short to decide" below it, instead of a verdict."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    stored = json.loads(luoxia("watermark", "calibrate", str(run), "--samples", "10", "--max-tokens", "25").stdout)
    assert stored["path"] == str(run / "watermark_calibration.json") and [r["tokens"] for r in stored["table"]] == [25]
    short = json.loads(luoxia("watermark", "detect", "--model", str(run), input="To be").stdout)
    assert short["verdict"] == "too short to decide" and short["watermarked"] is None and short["min_tokens"] >= 25
    forced = json.loads(luoxia("watermark", "detect", "--model", str(run), "--min-tokens", "0",
                               "--entropy-threshold", "0.3", input="To be or not to be").stdout)
    assert forced["verdict"] == "not watermarked" and forced["entropy_threshold"] == 0.3
    bad = luoxia("watermark", "detect", "--model", str(run), "--entropy-threshold", "-1", input="To be", check=False)
    assert bad.returncode == 2 and "entropy" in bad.stderr
    (run / "watermark_calibration.json").write_text("{truncated")
    corrupt = luoxia("watermark", "detect", "--model", str(run), input="To be", check=False)
    assert corrupt.returncode == 2 and "corrupt watermark calibration" in corrupt.stderr
