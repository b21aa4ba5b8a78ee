"""End-to-end: the ``luoxia`` command on tiny data, as a user runs it."""

import io
import json
import sys
from pathlib import Path

import pytest
import uvicorn

from luoxia import cli as cli_module
from luoxia import cli_serve
from luoxia.cli import main
from luoxia.config import dump_config, load_config
from luoxia.errors import ConfigError, LuoxiaError
from luoxia.train.lm import LMRecipe
from tests.helpers import REPO, TEXT, luoxia


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
# In-process runs of `luoxia.cli.main` (the entry point, with its error handling): much faster than a subprocess.
def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str,
             stdin: bytes | None = None) -> tuple[int, str, str]:
    """``luoxia ARGS`` through `main`: (exit status, stdout, stderr); the server never starts."""
    def no_server(*_args, **_kwargs):
        raise AssertionError("the server started")

    monkeypatch.setattr(uvicorn, "run", no_server)
    monkeypatch.setattr(sys, "argv", ["luoxia", *args])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    try:
        main()
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def lm_run(directory: Path, weights: bytes, *overrides: str) -> Path:
    """A run directory with a tiny recipe and the given bytes as its weights."""
    directory.mkdir()
    dump_config(load_config(LMRecipe, REPO / "configs/lm/tiny.yaml", list(overrides)), directory / "config.yaml")
    (directory / "model.safetensors").write_bytes(weights)
    return directory


@pytest.mark.parametrize("case, message", [
    ("garbage weights", "model.safetensors: corrupt or truncated weights"),
    ("config without vocabulary", "config.yaml: cannot build the model"),
    ("missing model", "--model {tmp}/nope: no such run directory"),
    ("missing image model", "--image-model {tmp}/nope: no such run directory"),
    ("model is a file", "--model {tmp}/file: is not a directory"),
    ("missing policy", "config file not found: {tmp}/nope.yaml"),
    ("policy not YAML", "bad.yaml is not valid YAML"),
    ("policy with an unknown key", "unknown config key 'bogus'"),
    ("empty policy", "empty.yaml is empty"),
])
def test_serve_with_a_bad_model_or_policy_is_one_line_before_the_server_starts(
        case: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    garbage = lm_run(tmp_path / "garbage", b"garbage" * 10, "model.vocab_size=32")
    (tmp_path / "file").write_text("x")
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    (tmp_path / "unknown.yaml").write_text("bogus: 1\n")
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    args = {
        "garbage weights": ["-m", str(garbage)],
        "config without vocabulary": ["-m", str(lm_run(tmp_path / "novocab", b""))],
        "missing model": ["-m", str(tmp_path / "nope")],
        "missing image model": ["--image-model", str(tmp_path / "nope")],
        "model is a file": ["-m", str(tmp_path / "file")],
        "missing policy": ["-m", str(garbage), "--policy", str(tmp_path / "nope.yaml")],
        "policy not YAML": ["-m", str(garbage), "--policy", str(tmp_path / "bad.yaml")],
        "policy with an unknown key": ["-m", str(garbage), "--policy", str(tmp_path / "unknown.yaml")],
        "empty policy": ["-m", str(garbage), "--policy", str(tmp_path / "empty.yaml")],
    }[case]
    code, out, err = run_main(monkeypatch, capsys, "serve", "--data-dir", str(tmp_path / "data"), *args)
    assert_one_line_error(code, err, message.format(tmp=tmp_path))
    assert "hf download" not in err and "serving on" not in out


def test_serve_loads_the_models_before_the_server_and_hands_them_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    run = tmp_path / "run"
    run.mkdir()
    loaded, handed = object(), {}
    monkeypatch.setattr(cli_serve, "load_models", lambda settings: loaded)
    monkeypatch.setattr(cli_serve, "create_app", lambda settings, models=None: handed.setdefault("m", models))
    with pytest.raises(AssertionError, match="the server started"):
        run_main(monkeypatch, capsys, "serve", "-m", str(run), "--data-dir", str(tmp_path / "data"))
    assert handed["m"] is loaded  # the app the server was given holds the models loaded beforehand


@pytest.mark.parametrize("out, message", [("afile", "afile is a file"),
                                          ("afile/sub", "afile/sub is inside {tmp}/afile, which is a file")])
def test_prepare_out_a_file_is_one_line(out: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 5, encoding="utf-8")
    (tmp_path / "afile").write_text("x")
    code, _, err = run_main(monkeypatch, capsys, "prepare", str(corpus), "--out", str(tmp_path / out),
                            "--tokenizer", "char")
    assert_one_line_error(code, err, message.format(tmp=tmp_path))


@pytest.mark.parametrize("command", [["moderate", "--rules-only"], ["redact"]])
@pytest.mark.parametrize("from_stdin", [False, True])
def test_moderate_and_redact_on_text_that_is_not_utf8_is_one_line(
        command: list[str], from_stdin: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture):
    latin1 = "café au lait\n".encode("latin-1")
    path = tmp_path / "latin1.txt"
    path.write_bytes(latin1)
    args = [*command, "-"] if from_stdin else [*command, str(path)]
    code, out, err = run_main(monkeypatch, capsys, *args, stdin=latin1 if from_stdin else None)
    where = "standard input" if from_stdin else str(path)
    assert_one_line_error(code, err, f"{where}: not UTF-8 text (byte 0xe9 at offset 3)")
    assert out == ""


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n", "- task: lm\n"])
def test_training_an_empty_recipe_is_an_error(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    code, _, err = run_main(monkeypatch, capsys, "train", str(recipe), f"out_dir={tmp_path / 'run'}", "max_steps=1")
    assert_one_line_error(code, err, "is empty" if text != "- task: lm\n" else "not list")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("error, line", [
    (PermissionError(13, "Permission denied", "/srv/x"), "/srv/x: permission denied"),
    (IsADirectoryError(21, "Is a directory", "/srv"), "/srv: is a directory"),
    (NotADirectoryError(20, "Not a directory", "/f/x"), "/f/x: not a directory"),
    (FileNotFoundError(2, "No such file or directory", "/gone"), "/gone: no such file or directory"),
    (UnicodeDecodeError("utf-8", b"ab\xff", 2, 3, "invalid start byte"), "input is not UTF-8 text (byte 0xff at"),
    (ConfigError("first line\n  second\x1b[31m line"), "first line; second[31m line"),
])
def test_every_user_error_reaching_main_is_one_line(error: Exception, line: str, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture):
    def failing_app() -> None:
        raise error

    monkeypatch.setattr(cli_module, "app", failing_app)
    with pytest.raises(SystemExit) as exit:
        main()
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.startswith(f"error: {line}") and len(err.strip().splitlines()) == 1
    assert "\x1b" not in err


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch):
    def buggy_app() -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(cli_module, "app", buggy_app)
    with pytest.raises(KeyError):
        main()


def test_a_prompt_file_that_is_not_utf8_is_a_user_error_naming_it(tmp_path: Path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("Once\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(LuoxiaError, match=r"prompts.txt: not UTF-8 text \(byte 0xe9 at offset 8\)"):
        cli_module._read_prompts(None, prompts)
