"""``luoxia classify``: label a file with a fine-tuned classifier and, where the file has gold
labels, measure it (accuracy, macro-F1, confusion matrix, scikit-learn's classification report)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from luoxia.data.corpora import resolve_data_path
from luoxia.data.readers import list_files, read_records
from luoxia.errors import DataError
from luoxia.generate.load import load_finetuned
from luoxia.runs import run_recipe


def classification_metrics(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1, the confusion matrix (rows: gold, columns: predicted) and the report."""
    # scikit-learn (with scipy) takes seconds to import: here, not at the top, so `luoxia --help` stays quick
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    labels = list(labels)
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)),
        "labels": labels,
        "confusion_matrix": confusion_matrix(gold, predicted, labels=labels).tolist(),
        "report": classification_report(gold, predicted, labels=labels, output_dict=True, zero_division=0),
        "report_text": classification_report(gold, predicted, labels=labels, digits=4, zero_division=0),
    }


@torch.no_grad()
def predict(model, tokenizer, texts: Sequence[str], batch_size: int = 32, max_length: int = 256) -> list[int]:
    """Class indices for ``texts``, in batches (right padding: a decoder's head finds the last real
    token through the pad id, an encoder's reads the first)."""
    model.eval()
    device = next(model.parameters()).device
    tokenizer.padding_side = "right"
    predicted: list[int] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        predicted += logits.argmax(-1).tolist()
    return predicted


def read_inputs(path: str | Path, text_field: str, label_field: str) -> tuple[list[str], list[str] | None]:
    """Texts, and gold labels when every record has one."""
    texts, labels = [], []
    for file in list_files(resolve_data_path(path)):
        for _, record in read_records(file, [text_field]):
            texts.append(str(record[text_field]))
            labels.append(record.get(label_field))
    if not texts:
        raise DataError(f"{path}: nothing to classify")
    return texts, ([str(label) for label in labels] if all(label is not None for label in labels) else None)


def gold_names(labels: list[str], names: list[str]) -> list[str]:
    """Gold labels as names (files may store 0..n-1)."""
    return [names[int(label)] if label not in names and label.isdigit() and int(label) < len(names) else label
            for label in labels]


def classify_file(run_dir: str | Path, path: str | Path, text_field: str = "text", label_field: str = "label",
                  batch_size: int = 32, device: str = "auto") -> dict:
    """Predictions for every text in ``path``, plus metrics when it carries labels."""
    model, tokenizer = load_finetuned(run_dir, device)
    names = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    max_length = run_recipe(run_dir)["data"]["max_length"]  # cut texts exactly as in training
    texts, gold = read_inputs(path, text_field, label_field)
    predicted = [names[i] for i in predict(model, tokenizer, texts, batch_size, max_length)]
    result: dict = {"run": str(run_dir), "input": str(path), "predictions": predicted}
    if gold is not None:
        result["metrics"] = classification_metrics(gold_names(gold, names), predicted, names)
    return result
