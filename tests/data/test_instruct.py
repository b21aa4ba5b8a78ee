"""Instruction and chat data: format detection, one-line validation errors, the assistant-only loss
mask under the default and a tokenizer's own chat template, packing and the preview."""

from __future__ import annotations

import json
import string
from itertools import groupby
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from luoxia.data.instruct import IGNORE, detect_format, pack, preview, tokenize_conversation, validate_file
from luoxia.data.tokenizer import train_bpe_tokenizer, train_char_tokenizer
from luoxia.errors import ConfigError, DataError
from tests.helpers import TEXT

CHATML = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT = [
    {"role": "system", "content": "Speak as Hamlet."},
    {"role": "user", "content": "To be?"},
    {"role": "assistant", "content": "Or not to be, that is the question."},
    {"role": "user", "content": "And then?"},
    {"role": "assistant", "content": "To die, to sleep."},
]
# A tokenizer's own template (Alpaca-like): the assistant turn ends with the end-of-text token.
OWN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}### Reply: {{ m['content'] }}<|endoftext|>\n"
    "{% else %}### {{ m['role'] }}: {{ m['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Reply: {% endif %}"
)


def hf_tokenizer(kind: str, chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """A tiny character-level or byte-level BPE tokenizer that knows the ChatML markers as tokens."""
    corpus = [TEXT + string.printable] * 4
    backend = (train_char_tokenizer(corpus, special_tokens=CHATML) if kind == "char"
               else train_bpe_tokenizer(corpus, vocab_size=400, special_tokens=CHATML)).backend
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    tokenizer.chat_template = chat_template
    return tokenizer


def write_lines(path: Path, records: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def labelled_runs(ids: list[int], labels: list[int], tokenizer) -> tuple[list[str], str]:
    """The decoded runs of loss-carrying tokens, and all the other tokens decoded together."""
    runs = [tokenizer.decode([i for i, _ in run])
            for carries, run in groupby(zip(ids, labels, strict=True), key=lambda p: p[1] != IGNORE) if carries]
    rest = tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label == IGNORE])
    return runs, rest


@pytest.mark.parametrize("kind", ["char", "bpe"])
@pytest.mark.parametrize("template, end", [(None, "<|im_end|>"), (OWN_TEMPLATE, "<|endoftext|>")])
def test_loss_mask_covers_exactly_the_assistant_turns(kind: str, template: str | None, end: str):
    tokenizer = hf_tokenizer(kind, template)
    ids, labels = tokenize_conversation(CHAT, tokenizer, max_length=1000)
    assert [label for label in labels if label != IGNORE] == [i for i, label in zip(ids, labels, strict=True)
                                                              if label != IGNORE]
    runs, rest = labelled_runs(ids, labels, tokenizer)
    answers = [m["content"] for m in CHAT if m["role"] == "assistant"]
    # byte-level BPE may merge the space that ends "### Reply: " into the answer's first token
    assert [run.removeprefix(" " if kind == "bpe" else "") for run in runs] == [answer + end for answer in answers]
    assert all(answer not in rest for answer in answers)
    assert all(m["content"] in rest for m in CHAT if m["role"] != "assistant")
    assert tokenizer.decode(ids).startswith("<|im_start|>system\n" if template is None else "### system: ")


def test_truncation_cuts_ids_and_labels_alike():
    tokenizer = hf_tokenizer("char")
    full = tokenize_conversation(CHAT, tokenizer)
    ids, labels = tokenize_conversation(CHAT, tokenizer, max_length=20)
    assert (ids, labels) == (full[0][:20], full[1][:20])


def test_template_that_rewrites_earlier_turns_is_refused():
    counting = ("{{ messages | length }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(ConfigError, match="renders a conversation's first turns differently"):
        tokenize_conversation(CHAT, hf_tokenizer("char", counting))


def test_detect_format(tmp_path: Path):
    assert detect_format(write_lines(tmp_path / "c.jsonl", [{"messages": CHAT}])) == "chat"
    assert detect_format(write_lines(tmp_path / "i.jsonl", [{"instruction": "a", "output": "b"}])) == "instruction"
    assert detect_format(write_lines(tmp_path / "t.txt", ["plain text"])) == "text"
    unknown = write_lines(tmp_path / "u.jsonl", [{"prompt": "a", "completion": "b"}])
    with pytest.raises(DataError, match=r"u\.jsonl:1: unknown record shape \(fields: prompt, completion\); "
                                        r"expected 'messages'"):
        detect_format(unknown)


def test_instruction_records_become_conversations(tmp_path: Path):
    path = write_lines(tmp_path / "i.jsonl", [
        {"instruction": "Summarise.", "input": "A long text.", "output": "Short."},
        {"instruction": "Say hi.", "output": "Hi."},
    ])
    assert validate_file(path, "auto") == [
        [{"role": "user", "content": "Summarise.\n\nA long text."}, {"role": "assistant", "content": "Short."}],
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi."}],
    ]


@pytest.mark.parametrize("fmt, bad, problem", [
    ("chat", "not json", "line 2 is not valid JSON"),
    ("chat", {"conversation": []}, "field 'messages' is missing; fields present: conversation"),
    ("chat", {"messages": []}, "'messages' must be a non-empty list"),
    ("chat", {"messages": [{"role": "user"}]}, "message 1 needs a 'role' and a 'content'"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]},
     "message 2 has unknown role 'bot'; valid: system, user, assistant"),
    ("chat", {"messages": [{"role": "assistant", "content": 5}]}, "message 1: content holds int, expected text"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}]}, "no assistant message"),
    ("instruction", {"output": "b"}, "field 'instruction' is missing; fields present: output"),
    ("instruction", {"instruction": "a"}, "field 'output' is missing"),
    ("auto", {"instruction": "a", "output": "b"}, "field 'messages' is missing; fields present: instruction, output"),
])
def test_validator_names_the_file_the_line_and_the_problem(tmp_path: Path, fmt: str, bad, problem: str):
    good = {"messages": CHAT} if fmt != "instruction" else {"instruction": "a", "output": "b"}
    path = write_lines(tmp_path / "data.jsonl", [good, bad])
    with pytest.raises(DataError) as error:
        validate_file(path, fmt)
    message = str(error.value)
    assert message.startswith(f"{path}:2: ") and problem in message and "\n" not in message


def test_empty_file_and_plain_text_are_errors(tmp_path: Path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.jsonl: empty file"):
        validate_file(path, "chat")
    with pytest.raises(DataError, match="notes.txt: text data where instruction or chat JSONL is expected"):
        validate_file(write_lines(tmp_path / "notes.txt", ["just text"]), "auto")


def test_pack_fills_rows_and_keeps_every_token():
    rows = [([1, 2, 3], [IGNORE, 2, 3]), ([4, 5, 6, 7, 8], [4, 5, IGNORE, 7, 8]), ([9, 10], [9, 10])]
    packed = list(pack(rows, max_length=4, pad_id=0))
    assert all(len(ids) == len(labels) == len(positions) == 4 for ids, labels, positions in packed)
    assert [token for ids, _, _ in packed for token in ids] == list(range(1, 11)) + [0, 0]
    assert [label for _, labels, _ in packed for label in labels] == \
        [IGNORE, 2, 3, 4, 5, IGNORE, 7, 8, 9, 10, IGNORE, IGNORE]
    assert [positions for _, _, positions in packed] == [[0, 1, 2, 0], [0, 1, 2, 3], [0, 1, 0, 0]]


def test_preview_marks_the_loss_carrying_part(tmp_path: Path):
    short = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi."}]
    path = write_lines(tmp_path / "chat.jsonl", [{"messages": CHAT}, {"messages": short},
                                                 {"messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(DataError, match="chat.jsonl:3: no assistant message"):
        preview(path, "auto", hf_tokenizer("char"))  # the whole file is validated
    write_lines(path, [{"messages": CHAT}, {"messages": short}])
    shown = preview(path, "auto", hf_tokenizer("char"))
    assert "[[Or not to be, that is the question.<|im_end|>]]" in shown
    assert "<|im_start|>user\nTo be?<|im_end|>\n<|im_start|>assistant\n[[" in shown
    assert "--- example 2 ---\n<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n[[Hi.<|im_end|>]]" in shown


def test_preview_of_plain_text_shows_documents(tmp_path: Path):
    for i in range(3):
        (tmp_path / f"doc{i}.txt").write_text(f"document {i}", encoding="utf-8")
    shown = preview(tmp_path, "auto", hf_tokenizer("char"), n=2)
    assert "[[document 0]]" in shown and "[[document 1]]" in shown and "document 2" not in shown
