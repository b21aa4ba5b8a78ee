"""End-to-end: the ``luoxia`` command on tiny data, as a user runs it."""

import json
from pathlib import Path

import pytest

from tests.helpers import TEXT, luoxia


@pytest.mark.slow
def test_prepare_train_generate_eval(tmp_path: Path):
    corpus = tmp_path / "poems.jsonl"
    lines = [json.dumps({"title": f"t{i}", "paragraphs": [TEXT.splitlines()[i % 6], f"第{i}首：床前明月光。"]},
                        ensure_ascii=False) for i in range(60)]
    corpus.write_text("\n".join(lines), encoding="utf-8")
    prepared = tmp_path / "prepared"
    out = luoxia("prepare", str(corpus), "--out", str(prepared), "--field", "paragraphs", "--tokenizer", "char")
    assert "prepared" in out.stdout and (prepared / "train.bin").exists()

    run = tmp_path / "run"
    luoxia("train", "configs/lm/tiny.yaml", f"out_dir={run}", f"prepared_data={prepared}", "max_steps=20",
           "eval_interval=10", "progress=false", "device=cpu")
    assert (run / "model.safetensors").exists()

    generated = luoxia("generate", "--model", str(run), "-p", "To", "-p", "第", "--max-new-tokens", "12",
                       "--seed", "1", "--json")
    rows = [json.loads(line) for line in generated.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["To", "第"] and all(r["completion_tokens"] <= 12 for r in rows)

    streamed = luoxia("generate", "--model", str(run), "-p", "To", "--max-new-tokens", "12", "--temperature", "0")
    assert streamed.stdout.startswith("To")

    report_path = tmp_path / "report.json"
    luoxia("eval", "--model", str(run), "--samples", "3", "--json-out", str(report_path))
    report = json.loads(report_path.read_text())
    assert report["perplexity"] > 1 and report["diversity"]["samples"] == 3


@pytest.mark.parametrize("args, message", [
    (["prepare", "missing.txt", "--out", "x"], "missing.txt: no such file or directory"),
    (["train", "configs/lm/tiny.yaml", "train.bogus=1"], "unknown config key 'train.bogus'"),
    (["train", "nope.yaml"], "config file not found: nope.yaml"),
    (["generate", "--model", "/nonexistent-run", "--prompt", "x"],
     "no run at /nonexistent-run; train one with `luoxia train"),
    (["finetune", "configs/finetune/lora_chat.yaml", "--check", "base_model=/nonexistent-base"],
     "base model /nonexistent-base: no such run or Hugging Face model directory"),
    (["demo", "--corpus", "klingon"], "unknown demo corpus 'klingon'"),
])
def test_bad_input_is_one_clear_line(args: list[str], message: str):
    result = luoxia(*args, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "hf download" not in result.stderr  # a mistyped path is not a Hugging Face hub name


def test_finetune_without_its_base_is_one_clear_line(tmp_path: Path):
    result = luoxia("finetune", "configs/finetune/lora_chat.yaml", "base_model=/nonexistent-base",
                    f"out_dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: base model /nonexistent-base: no such run")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_jsonl_line_names_the_line(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json at all\n')
    result = luoxia("prepare", str(bad), "--out", str(tmp_path / "out"), check=False)
    assert result.returncode == 2 and "bad.jsonl:2: line 2 is not valid JSON" in result.stderr


def test_keys_get_roles_and_a_file_as_data_dir_is_one_line(tmp_path: Path):
    created = luoxia("keys", "create", "--name", "rev", "--role", "reviewer", "--data-dir", str(tmp_path))
    assert "reviewer" in created.stdout and created.stdout.strip().splitlines()[-1].startswith("lx-")
    listed = luoxia("keys", "list", "--data-dir", str(tmp_path)).stdout
    assert "reviewer" in listed
    bad_role = luoxia("keys", "create", "--role", "root", "--data-dir", str(tmp_path), check=False)
    assert bad_role.returncode == 2 and "unknown role 'root'" in bad_role.stderr
    file = tmp_path / "a-file"
    file.write_text("not a directory")
    for args in (["keys", "create"], ["keys", "list"], ["purge", "--retention-days", "1"]):
        result = luoxia(*args, "--data-dir", str(file), check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith("error:") and "not a directory" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
