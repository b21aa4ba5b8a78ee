"""Fine-tuning data → token rows: labelled texts for classification; plain text, instructions or
chats for generation (loss on the assistant's tokens only), packed or one example per row."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from luoxia.data.augment import augment, load_synonyms
from luoxia.data.corpora import resolve_data_path
from luoxia.data.instruct import IGNORE, detect_format, pack, tokenize_conversation, validate_file
from luoxia.data.readers import list_files, read_documents, read_records
from luoxia.errors import ConfigError, DataError

Row = tuple[list[int], object]  # (input_ids, labels: per-token list or a class index)


def read_labelled(path: str | Path, data) -> list[tuple[str, str]]:
    """(text, label) pairs from every CSV/JSONL file under ``path``; labels as strings."""
    pairs = []
    for file in list_files(resolve_data_path(path)):
        for origin, record in read_records(file, [data.text_field, data.label_field]):
            text, label = record[data.text_field], record[data.label_field]
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{origin}: field '{data.text_field}' is empty or not text")
            pairs.append((text, str(label)))
    if not pairs:
        raise DataError(f"{path}: no labelled examples")
    return pairs


def label_index(label: str, label_names: list[str], origin: str) -> int:
    """A label given by name, or by its number when the data stores 0..n-1."""
    if label in label_names:
        return label_names.index(label)
    if label.isdigit() and int(label) < len(label_names):
        return int(label)
    raise DataError(f"{origin}: label '{label}' is not one of {', '.join(label_names)}")


def encode_labelled(pairs: list[tuple[str, str]], data, tokenizer, label_names: list[str],
                    source: str | Path) -> list[Row]:
    return [(list(tokenizer(text, truncation=True, max_length=data.max_length)["input_ids"]),
             label_index(label, label_names, f"{source} (example {number + 1})"))
            for number, (text, label) in enumerate(pairs)]


def augmented(pairs: list[tuple[str, str]], data, seed: int) -> list[tuple[str, str]]:
    """Each example followed by ``data.augment`` EDA variants with the same label."""
    synonyms = load_synonyms(data.synonyms)
    out = []
    for i, (text, label) in enumerate(pairs):
        out.append((text, label))
        out.extend((variant, label) for variant in augment(text, data.augment, data.augment_alpha, seed + i, synonyms))
    return out


def document_ids(path: str | Path, tokenizer) -> list[list[int]]:
    """Continued pre-training: the tokens of every document, each followed by an end-of-text."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    documents = [list(tokenizer(document.text)["input_ids"]) + eos for document in read_documents([path])]
    if not documents:
        raise DataError(f"{path}: no text")
    return documents


def conversation_rows(path: str | Path, data, tokenizer) -> list[Row]:
    rows = [tokenize_conversation(conv, tokenizer, data.max_length) for conv in validate_file(Path(path), data.format)]
    # A row whose assistant turns all lie past max_length teaches nothing (and a batch of such
    # rows has no loss at all): drop it, and say so.
    kept = [(ids, labels) for ids, labels in rows if any(label != IGNORE for label in labels)]
    if not kept:
        raise DataError(f"{path}: no conversation has an assistant token within data.max_length="
                        f"{data.max_length}; raise it")
    if len(kept) < len(rows):
        warnings.warn(f"{path}: {len(rows) - len(kept)} of {len(rows)} conversations have no assistant token "
                      f"within data.max_length={data.max_length} and are skipped", stacklevel=2)
    return kept


def generation_rows(path: str | Path, data, tokenizer) -> list[Row]:
    path = resolve_data_path(path)
    fmt = data.format if data.format != "auto" else detect_format(Path(path))
    if fmt == "text":  # long documents become several rows, nothing is cut away
        size = data.max_length
        return [(ids[i : i + size], ids[i : i + size]) for ids in document_ids(path, tokenizer)
                for i in range(0, len(ids), size)]
    return conversation_rows(path, data.model_copy(update={"format": fmt}), tokenizer)


def packed(rows: list[Row], data, tokenizer) -> list[Row]:
    if not data.packing:
        return rows

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return [(ids, labels) for ids, labels, *_ in pack(rows, data.max_length, pad)]


def split_examples(examples: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """A seeded share of the examples held out for validation (at least one)."""
    order = np.random.default_rng(seed).permutation(len(examples))
    n_val = max(1, round(len(examples) * val_fraction))
    if len(examples) < 2:
        raise ConfigError("need at least two examples to hold one out for validation (or give data.val)")
    val_index = set(order[:n_val].tolist())
    return ([e for i, e in enumerate(examples) if i not in val_index],
            [e for i, e in enumerate(examples) if i in val_index])


def train_and_val(train: list, val: list | None, recipe) -> tuple[list, list]:
    return (train, val) if val is not None else split_examples(train, recipe.data.val_fraction, recipe.seed)


def load_rows(recipe, tokenizer, label_names: list[str] | None) -> tuple[list[Row], list[Row]]:
    """Training and validation rows for a recipe; validation is a seeded share when no file is given.
    Augmentation touches the training examples only."""
    data = recipe.data
    if recipe.task == "classify":
        train, val = train_and_val(read_labelled(data.train, data),
                                   read_labelled(data.val, data) if data.val else None, recipe)
        if data.augment:
            train = augmented(train, data, recipe.seed)
        return (encode_labelled(train, data, tokenizer, label_names, data.train),
                encode_labelled(val, data, tokenizer, label_names, data.val or data.train))
    train, val = train_and_val(generation_rows(data.train, data, tokenizer),
                               generation_rows(data.val, data, tokenizer) if data.val else None, recipe)
    return packed(train, data, tokenizer), packed(val, data, tokenizer)
