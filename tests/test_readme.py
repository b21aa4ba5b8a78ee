"""The README is tested: every bash block runs here, command by command, as a reader would paste it.

What the harness changes, and nothing else:
- recipes train at tiny sizes: ``luoxia train|finetune RECIPE …`` (and ``torchrun … train``) get
  ``TINY`` overrides appended after the reader's own, and a few other commands ``SMALLER`` options;
- inputs that are only read (``luoxia classify --input shared:…``) are cut to their first rows
  (``HEAD_ROWS``): the command is the same, the harness checks it runs, not the model's accuracy;
- the placeholder inputs a reader would bring (``my_texts/``, ``reviews.csv``, ``path/to/hf-llama`` …)
  are made small in the workspace first, and ``make demo`` runs as ``luoxia demo`` at tiny size (it
  trains ``runs/demo-pydoc``, which later blocks use);
- long-running commands (``luoxia serve``) are started, must answer ``/health``, and are stopped (one
  with ``--app`` becomes the running server later requests go to, so they reach its applications); a
  ``curl`` block gets a running server (on a free port instead of 8000) and must get HTTP 2xx, and so
  does any other command naming ``http://127.0.0.1:8000`` (``luoxia generate --model openai:…``);
- skipped, with the reason printed: ``make test``/``make install`` (CI's ``.ci/run`` runs them), the
  benchmark scripts (not tests), ``tensorboard`` (a UI), and commands that need ``../shared/data`` when
  it is absent (under ``LUOXIA_REQUIRE_SHARED_DATA=1`` those fail instead).
The README runs as two chains side by side, in one test, each in its own workspace and in README
order: the sections before `SPLIT_AT` (later blocks use what earlier ones trained), and the sections
from it on, which first run `SETUP` (what they use of the first chain: the demo run). Either chain
failing stops the other at its next command.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from luoxia.data.corpora import resolve_data_path
from tests.conftest import REQUIRE_SHARED, missing_shared
from tests.helpers import TEXT

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
LOOP = "max_steps=2 eval_interval=2 checkpoint_interval=2 log_interval=1 eval_batches=1"
# A recipe's task → the overrides that make it tiny (later overrides win over the reader's own).
TINY = {"lm": f"{LOOP} data.max_documents=300",  # 300 Tang poems, not 28k
        "moderation": "train.folds=2 data.chinese.max_rows=1000",  # logistic heads: fewer folds and rows
        "token_classify": f"{LOOP} train.batch_size=8",  # MiniLM on 8 sentences a step
        "mlm": f"{LOOP} data.max_documents=300 model.n_layer=1",  # 300 poems or pydoc topics, one block
        "classify": f"{LOOP} train.batch_size=8"}  # MiniLM on 8 texts a step
# Other commands made small the same way (appended options win): the support build tunes on 100 OOD questions.
SMALLER = {r"^luoxia apps support build .*--ood ": "--ood-limit 100",
           r"^luoxia watermark calibrate ": "--samples 10 --max-tokens 120"}  # 10 texts a side up to 120 tokens
TIMEOUT_S = 300
SHOW_SLOWEST = 25  # commands whose seconds the test reports
LOCAL_SERVER = "http://127.0.0.1:8000"  # a command naming it gets the running `luoxia serve`, on its own port
# ../shared files that README commands only read, cut to this many rows in the workspace.
HEAD_INPUTS = ("shared:fin_sentiment_en/sent_valid.csv",)
HEAD_ROWS = 64

# A command mentioning one of these needs that ../shared/data folder.
NEEDS_SHARED = {
    r"shakespeare": "tinyshakespeare",
    r"tang_poems|tang-poems-titled|runs/(mlm-)?poems|gru_poems|apps/tang-poems": "chinese_poetry_tang",
    r"mnist|classifier\.yaml|runs/classifier": "mnist",
    r"fin_sentiment": "fin_sentiment_en",
    r"configs/safety/moderation\.yaml": "safety_moderation",
    r"ner_zh_uner|runs/ner-": "ner_zh_uner",
    r"customer_support_faq|support_intents|apps/support|faq/train|\"model\": \"support\"": "customer_support_faq",
    r"banking77": "banking77",
    r"summarize prepare|summarize_scitldr|summarize-(en|base|scitldr)": "summarization_en_scitldr",
}
# Commands that are not run, and why.
NOT_RUN = {
    r"^make (test|install|lint)\b": "CI's .ci/run runs it",
    r"^source ": "the harness already has the virtualenv's bin/ on PATH",
    r"^tensorboard ": "a long-running UI; the training tests check what it reads",
    r"^\.venv/bin/python bench/": "a benchmark, not a test (see Benchmarks)",
}


@dataclass
class Block:
    line: int
    commands: list[str]


def strip_comment(line: str) -> str:
    """The command without a trailing ``# comment`` (a ``#`` outside quotes after a space)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote and line[i - 1] != "\\":
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def bash_blocks(text: str) -> list[Block]:
    """Each ```bash block's commands (continuation lines joined, comments dropped)."""
    blocks, current, pending = [], None, ""
    for number, line in enumerate(text.splitlines(), 1):
        if current is None:
            if line.strip() == "```bash":
                current = Block(number, [])
            continue
        if line.strip() == "```":
            blocks.append(current)
            current = None
            continue
        line = pending + line
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        command = strip_comment(line)
        if command.strip():
            current.commands.append(command.strip())
    return blocks


BLOCKS = bash_blocks(README.read_text(encoding="utf-8"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_placeholders(work: Path) -> None:
    """The reader's own files that README commands name, small."""
    lines = TEXT.splitlines()
    for folder in ("my_texts", "my_corpus"):
        (work / folder).mkdir()
        for i in range(3):
            (work / folder / f"part{i}.txt").write_text("\n".join(lines[i::3]) * 5 + "\nmail amy@example.org\n",
                                                         encoding="utf-8")
    poems = [{"paragraphs": ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
             {"paragraphs": ["春眠不覺曉，處處聞啼鳥。", "夜來風雨聲，花落知多少。"]}] * 3
    with gzip.open(work / "poems.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in poems)
    (work / "reviews.csv").write_text("text,stars\n" + "".join(f"\"{line}\",{i % 5}\n" for i, line in
                                                              enumerate(lines)), encoding="utf-8")
    (work / "other.txt").write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n" * 20,
                                    encoding="utf-8")
    (work / "notes.txt").write_text("Call 13812345678 or write to amy@example.org.\n", encoding="utf-8")
    (work / "posts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in
                                              ["hello there", "how do I kill a Python process"]), encoding="utf-8")
    make_tiny_llama(work / "path" / "to" / "hf-llama")


def make_tiny_llama(out: Path) -> None:
    """A random 2-layer Llama with a byte-level tokenizer, saved as a local Hugging Face directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(out)
    vocab = {chr(i): i for i in range(256)} | {"<s>": 256, "</s>": 257}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="</s>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer.decoder = decoders.Fuse()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>").save_pretrained(out)


def make_workspace(work: Path, seconds: list[tuple[float, str]]) -> dict:
    """A directory with the reader's placeholder files, ``configs/``, and its own data directory."""
    (work / "configs").symlink_to(ROOT / "configs")
    make_placeholders(work)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "LUOXIA_HOME": str(work / ".luoxia"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return {"dir": work, "env": env, "server": None, "seconds": seconds}


def head_inputs(command: str, work: Path) -> str:
    """``command`` reading the first `HEAD_ROWS` rows of each `HEAD_INPUTS` file it names."""
    for name in HEAD_INPUTS:
        if name in command:
            source = resolve_data_path(name)
            target = work / "head" / source.name
            if not target.exists():
                target.parent.mkdir(exist_ok=True)
                with source.open(encoding="utf-8") as f:  # the header and HEAD_ROWS rows
                    target.write_text("".join(itertools.islice(f, HEAD_ROWS + 1)), encoding="utf-8")
            command = command.replace(name, str(target))
    return command


def tiny(command: str) -> str:
    """Tiny-size overrides after a training command's own (later overrides win)."""
    match = re.match(r"^(?:luoxia (?:train|finetune)|torchrun .* train) (\S+)", command)
    if match and "--check" not in command:
        task = yaml.safe_load((ROOT / match[1]).read_text(encoding="utf-8")).get("task", "lm")
        return f"{command} {TINY.get(task, LOOP)}"
    if command.startswith("make demo"):
        return "luoxia demo " + " ".join(f"--set {o}" for o in LOOP.split())
    for pattern, options in SMALLER.items():
        if re.search(pattern, command):
            return f"{command} {options}"
    return command


def why_not_run(command: str) -> str | None:
    for pattern, reason in NOT_RUN.items():
        if re.search(pattern, command):
            return reason
    needed = tuple(name for pattern, name in NEEDS_SHARED.items() if re.search(pattern, command))
    missing = missing_shared(needed)
    if missing:
        reason = f"needs ../shared/data/{', '.join(missing)}"
        if REQUIRE_SHARED:
            pytest.fail(f"LUOXIA_REQUIRE_SHARED_DATA=1 but `{command}` {reason}", pytrace=False)
        return reason
    return None


def wait_healthy(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the server did not answer /health within 120 s")


def start_server(command: str, ws: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = open(ws["dir"] / f"serve-{port}.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(f"exec {command} --port {port}", shell=True, cwd=ws["dir"], env=ws["env"],
                               stdout=log, stderr=subprocess.STDOUT)
    wait_healthy(port, process)
    return process, port


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def run(command: str, ws: dict) -> str:
    """Run one command in the workspace; its output (stdout + stderr). Fails the test on exit ≠ 0."""
    if command.startswith("luoxia serve") and "--app " in command:  # later requests go to its applications
        if ws["server"] is not None:
            stop(ws["server"][0])
        ws["server"] = start_server(command, ws)
        return "served /health"
    if command.startswith("luoxia serve"):
        process, _ = start_server(command, ws)
        stop(process)
        return "served /health"
    if command.startswith("curl ") or LOCAL_SERVER in command:  # curl, or `--model openai:http://127.0.0.1:8000/v1#…`
        if ws["server"] is None:
            ws["server"] = start_server("luoxia serve", ws)
        command = command.replace(LOCAL_SERVER, f"http://127.0.0.1:{ws['server'][1]}")
    if command.startswith("curl "):
        command = "curl -sS --fail-with-body " + command.removeprefix("curl ")
    start = time.monotonic()
    done = subprocess.run(command, shell=True, executable="/bin/bash", cwd=ws["dir"], env=ws["env"],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    ws["seconds"].append((time.monotonic() - start, command))
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"`{command}` exited with {done.returncode}:\n{output[-3000:]}"
    if command.startswith("luoxia keys create"):
        ws["env"]["KEY"] = done.stdout.strip().splitlines()[-1].strip()
    return output


SPLIT_AT = "## Images"  # the second chain's first section: images, safety, retrieval, serving, applications
SETUP = ["make demo"]  # what the second chain uses of the first: runs/demo-pydoc (the server's default model)


def chains(blocks: list[Block], text: str) -> list[tuple[list[str], list[Block]]]:
    """(setup commands, blocks) of each chain: the blocks before the `SPLIT_AT` heading, and from it on."""
    split = text.splitlines().index(SPLIT_AT) + 1
    return [([], [b for b in blocks if b.line < split]), (SETUP, [b for b in blocks if b.line > split])]


def run_chain(setup: list[str], blocks: list[Block], work: Path, failed: threading.Event,
              seconds: list[tuple[float, str]]) -> list[str]:
    """Run ``setup`` then every command of ``blocks`` in a new workspace ``work``; the commands not
    run, with why (each run's seconds go to ``seconds``). Stops (passing) once ``failed`` is set: the
    other chain's failure is the report."""
    ws, not_run = make_workspace(work, seconds), []
    try:
        for command in setup:
            run(tiny(command), ws)
        for block in blocks:
            for command in block.commands:
                if failed.is_set():
                    return not_run
                reason = why_not_run(command)
                if reason:
                    not_run.append(f"README line {block.line}: `{command}`: {reason}")
                else:
                    run(head_inputs(tiny(command), ws["dir"]), ws)
    except BaseException:
        failed.set()
        raise
    finally:
        if ws["server"] is not None:
            stop(ws["server"][0])
        shutil.rmtree(ws["dir"] / ".luoxia", ignore_errors=True)
    return not_run


@pytest.mark.slow
def test_readme_commands_run_as_pasted(tmp_path_factory):
    """Every block in README order, in two chains side by side (see the module's docstring)."""
    failed, seconds = threading.Event(), []
    parts = chains(BLOCKS, README.read_text(encoding="utf-8"))
    with ThreadPoolExecutor(len(parts)) as pool:
        futures = [pool.submit(run_chain, setup, blocks, tmp_path_factory.mktemp(f"readme{i}"), failed, seconds)
                   for i, (setup, blocks) in enumerate(parts)]
        not_run = [line for future in futures for line in future.result()]  # the first failure is raised
    slowest = sorted(seconds, reverse=True)[:SHOW_SLOWEST]  # where CI's time goes, in the warnings summary
    warnings.warn(f"README: {len(seconds)} commands, {sum(s for s, _ in seconds):.0f} s; the slowest:\n"
                  + "\n".join(f"{s:6.1f} s  {c}" for s, c in slowest), stacklevel=1)
    if not_run:  # shown in pytest's warnings summary, so a skipped command is never silent
        warnings.warn("README commands not run:\n" + "\n".join(not_run), stacklevel=1)


def test_readme_chains_cover_every_block():
    """Both chains together run every block once, the second from `SPLIT_AT` on."""
    parts = chains(BLOCKS, README.read_text(encoding="utf-8"))
    assert [b for _, blocks in parts for b in blocks] == BLOCKS
    assert all(blocks for _, blocks in parts)
    assert all(any(c.startswith(s.split()[0]) for b in BLOCKS for c in b.commands) for s in SETUP)


def test_readme_parser_sees_the_blocks():
    """The harness itself: comments dropped outside quotes, continuation lines joined."""
    assert strip_comment('luoxia generate -p "a # b" --x 1   # note') == 'luoxia generate -p "a # b" --x 1'
    blocks = bash_blocks("x\n```bash\nluoxia a \\\n  --b 1  # c\n\n# only a comment\n```\n")
    assert blocks == [Block(2, ["luoxia a   --b 1"])]
    assert sum(len(b.commands) for b in BLOCKS) > 30

