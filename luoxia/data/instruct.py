"""Instruction and chat data for supervised fine-tuning: format detection, validation with one-line
errors, rendering through the model's chat template with the loss on the assistant's tokens only,
packing and a preview of what the model will see.

Accepted JSON Lines records (one per line, one format per file):

- chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``
- instruction: ``{"instruction": "...", "input": "..." (optional), "output": "..."}``

Anything that is not JSON Lines is plain text (continued pre-training, loss on every token).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby
from pathlib import Path

from jinja2 import TemplateError

from luoxia.data.readers import infer_format, list_files, read_documents, read_jsonl_records
from luoxia.errors import ConfigError, DataError

Conversation = list[dict[str, str]]
ROLES = ("system", "user", "assistant")
IGNORE = -100  # the label cross-entropy skips
LOSS_START, LOSS_END = "[[", "]]"  # how `preview` marks the tokens that carry the loss

# ChatML, for tokenizers without a chat template of their own (base models). Where the tokenizer does
# not know <|im_start|> and <|im_end|> as tokens they are learned as ordinary text.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_SHAPES = "'messages' (chat), 'instruction' and 'output' (instruction) or 'text' (plain text)"


def _fields(record: dict) -> str:
    return ", ".join(record) or "none"


def _record_format(record: dict, origin: str) -> str:
    """``chat``, ``instruction`` or ``text``, from the fields of one JSONL record."""
    if "messages" in record:
        return "chat"
    if "instruction" in record:
        return "instruction"
    if "text" in record:
        return "text"
    raise DataError(f"{origin}: unknown record shape (fields: {_fields(record)}); expected {_SHAPES}")


def detect_format(path: Path) -> str:
    """``text``, ``instruction`` or ``chat``: the first record of the first JSONL file decides;
    files that are not JSON Lines are plain text."""
    first = list_files(path)[0]
    if infer_format(first) != "jsonl":
        return "text"
    for origin, record in read_jsonl_records(first):
        return _record_format(record, origin)
    raise DataError(f"{first}: empty file, no records")


def _require(record: dict, field: str, origin: str) -> object:
    if field not in record:
        raise DataError(f"{origin}: field '{field}' is missing; fields present: {_fields(record)}")
    return record[field]


def _text(record: dict, field: str, origin: str) -> str:
    value = _require(record, field, origin)
    if not isinstance(value, str):
        raise DataError(f"{origin}: field '{field}' holds {type(value).__name__}, expected text")
    return value


def instruction_conversation(record: dict, origin: str) -> Conversation:
    """An instruction record as a chat: the instruction (and its input) from the user, the output
    from the assistant."""
    prompt = _text(record, "instruction", origin)
    extra = _text(record, "input", origin) if record.get("input") is not None else ""
    return [{"role": "user", "content": prompt + ("\n\n" + extra if extra else "")},
            {"role": "assistant", "content": _text(record, "output", origin)}]


def _message(message: object, where: str) -> dict[str, str]:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise DataError(f"{where} needs a 'role' and a 'content'")
    if message["role"] not in ROLES:
        raise DataError(f"{where} has unknown role {message['role']!r}; valid: {', '.join(ROLES)}")
    if not isinstance(message["content"], str):
        raise DataError(f"{where}: content holds {type(message['content']).__name__}, expected text")
    return {"role": message["role"], "content": message["content"]}


def chat_conversation(record: dict, origin: str) -> Conversation:
    messages = _require(record, "messages", origin)
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{origin}: 'messages' must be a non-empty list of {{role, content}} objects")
    conversation = [_message(m, f"{origin}: message {i}") for i, m in enumerate(messages, start=1)]
    if not any(m["role"] == "assistant" for m in conversation):
        raise DataError(f"{origin}: no assistant message, so nothing to learn from")
    return conversation


_CONVERTERS = {"chat": chat_conversation, "instruction": instruction_conversation}


def validate_file(path: Path, fmt: str) -> list[Conversation]:
    """Every record of every JSONL file under ``path`` as a conversation; ``fmt`` is ``instruction``,
    ``chat`` or ``auto`` (`detect_format`). The first bad line stops with a one-line error."""
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind not in _CONVERTERS:
        raise DataError(f"{path}: {kind} data where instruction or chat JSONL is expected")
    conversations = []
    for file in list_files(path):
        records = [_CONVERTERS[kind](record, origin) for origin, record in read_jsonl_records(file)]
        if not records:
            raise DataError(f"{file}: empty file, no records")
        conversations += records
    return conversations


def chat_template(tokenizer) -> str:
    """The tokenizer's own chat template, or ChatML where it has none."""
    return getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE


def render(messages: Conversation, tokenizer, add_generation_prompt: bool = False) -> str:
    try:
        return tokenizer.apply_chat_template(messages, chat_template=chat_template(tokenizer), tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except TemplateError as error:
        raise DataError(f"the chat template cannot render a conversation that starts "
                        f"{messages[0]['content'][:40]!r}: {error}") from None


def assistant_spans(messages: Conversation, tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn in it.

    Turn ``i`` starts where the prompt for it ends — ``render(messages[:i], add_generation_prompt=True)``,
    the role header included — and ends where ``render(messages[:i + 1])`` ends, less trailing
    whitespace: its content and its end-of-turn marker. This holds for any template that renders a
    conversation's beginning the same whatever follows; templates that do not (that rewrite earlier
    turns) are refused rather than mis-masked.
    """
    text = render(messages, tokenizer)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(messages[:i], tokenizer, add_generation_prompt=True)
        turn = render(messages[: i + 1], tokenizer)
        if not (text.startswith(prompt) and text.startswith(turn) and len(prompt) <= len(turn)):
            raise ConfigError("the tokenizer's chat template renders a conversation's first turns differently "
                              "once more turns follow, so the assistant's tokens cannot be located")
        spans.append((len(prompt), max(len(prompt), len(turn.rstrip()))))
    return text, spans


def tokenize_conversation(messages: Conversation, tokenizer,
                          max_length: int | None = None) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a conversation rendered through the chat template, cut to ``max_length``.

    Labels equal the ids on the assistant turns (content and end-of-turn marker) and are -100
    elsewhere. The text is tokenized once, as a whole, so the tokens are those the model sees at
    inference; a token is labelled when any of its characters lies in an assistant span (the fast
    tokenizer's offset mapping says which characters each token covers). A token that straddles
    the boundary — byte-level BPE's `` To`` after a template's ``Reply: `` — is the assistant's.
    """
    text, spans = assistant_spans(messages, tokenizer)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoding["input_ids"])
    labels = [token if any(start < hi and end > lo for lo, hi in spans) else IGNORE
              for token, (start, end) in zip(ids, encoding["offset_mapping"], strict=True)]
    return ids[:max_length], labels[:max_length]


def pack(rows: Iterable[tuple[list[int], list[int]]], max_length: int,
         pad_id: int) -> Iterator[tuple[list[int], list[int], list[int]]]:
    """Greedy packing: (ids, labels, position_ids) rows of exactly ``max_length`` tokens.

    Examples are concatenated in order and the stream is cut every ``max_length`` tokens (an example
    may continue on the next row); only the last row is padded, with ``pad_id`` and label -100. No
    token is dropped. A plain causal mask lets attention cross example boundaries inside a row (naive
    packing; the labels still keep the loss where it belongs); the position ids restart at 0 at each
    example's start, which is what attention implementations that keep packed examples apart
    (flash-attention's variable-length path, HF's ``DataCollatorWithFlattening``) read.
    """
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for example_ids, example_labels in rows:
        start = 0
        while start < len(example_ids):
            take = min(len(example_ids) - start, max_length - len(ids))
            ids += example_ids[start : start + take]
            labels += example_labels[start : start + take]
            positions += range(take)
            start += take
            if len(ids) == max_length:
                yield ids, labels, positions
                ids, labels, positions = [], [], []
    if ids:
        padding = max_length - len(ids)
        yield ids + [pad_id] * padding, labels + [IGNORE] * padding, positions + [0] * padding


def marked(ids: list[int], labels: list[int], tokenizer) -> str:
    """Decoded tokens with every run of loss-carrying tokens wrapped in ``[[`` … ``]]``."""
    pieces = []
    for carries_loss, run in groupby(zip(ids, labels, strict=True), key=lambda pair: pair[1] != IGNORE):
        text = tokenizer.decode([token for token, _ in run])
        pieces.append(f"{LOSS_START}{text}{LOSS_END}" if carries_loss else text)
    return "".join(pieces)


def preview(path: Path, fmt: str, tokenizer, n: int = 2) -> str:
    """Validate every record under ``path`` and show the first ``n`` examples as the model sees them,
    the loss-carrying tokens between ``[[`` and ``]]`` (plain text carries the loss everywhere)."""
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "text":
        documents = list(read_documents([path]))
        examples = [f"{LOSS_START}{document.text}{LOSS_END}" for document in documents[:n]]
    else:
        examples = [marked(*tokenize_conversation(conversation, tokenizer), tokenizer)
                    for conversation in validate_file(path, kind)[:n]]
    return "\n".join(f"--- example {i} ---\n{example}" for i, example in enumerate(examples, start=1))
