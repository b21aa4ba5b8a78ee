"""Train the learned layer of `luoxia.safety.moderation`: per-category logistic regressions on
sentence embeddings, with thresholds tuned by cross-validation on the training part only and
precision/recall measured on a held-out part.

    luoxia train configs/safety/moderation.yaml     # rewrites luoxia/safety/classifier/

Deterministic: the split, the folds and the solver are seeded or exact, and the embeddings are
computed on the CPU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import Field
from rich.console import Console
from rich.table import Table

from luoxia.checkpoint import atomic_directory
from luoxia.config import Config
from luoxia.data.corpora import resolve_data_path
from luoxia.data.readers import read_jsonl_records
from luoxia.encoders import load_encoder
from luoxia.errors import DataError
from luoxia.models.moderation_head import CATEGORIES, ModerationHead
from luoxia.runs import CONFIG_FILE

# The keys of OpenAI's moderation evaluation set (Markov et al. 2022) → Luoxia's category names.
OPENAI_LABELS = {"S": "sexual", "S3": "sexual/minors", "H": "hate", "H2": "hate/threatening", "HR": "harassment",
                 "SH": "self-harm", "V": "violence", "V2": "violence/graphic"}


class ModerationData(Config):
    path: str = Field("shared:safety_moderation/samples-1680.jsonl.gz",
                      description="JSONL(.gz) with a text field and 0/1 label keys (missing key: unknown)")
    text_field: str = Field("prompt", description="field holding the text")
    labels: dict[str, str] = Field(default_factory=lambda: dict(OPENAI_LABELS),
                                   description="label key in the data → moderation category")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share for the precision/recall report")


class ModerationTrain(Config):
    C: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic regressions")
    folds: int = Field(5, ge=2, description="cross-validation folds for the thresholds")
    min_threshold: float = Field(0.3, gt=0, lt=1, description="lowest threshold tuning may pick")


class ModerationRecipe(Config):
    task: Literal["moderation"] = Field("moderation", description="recipe kind")
    out_dir: str = Field("luoxia/safety/classifier", description="where the classifier is written")
    seed: int = Field(1337, description="seed of the split and the folds")
    encoder: str = Field("minilm", description="sentence encoder (a bundled name or a local directory)")
    data: ModerationData = Field(default_factory=ModerationData)
    train: ModerationTrain = Field(default_factory=ModerationTrain)


def read_moderation_data(data: ModerationData) -> tuple[list[str], np.ndarray, list[str], str]:
    """Texts, labels (N, C) with −1 for unknown, the categories, and the file's SHA-256."""
    path = resolve_data_path(data.path)
    if not path.is_file():
        raise DataError(f"{path}: moderation data not found")
    unknown = sorted(set(data.labels.values()) - set(CATEGORIES))
    if unknown:
        raise DataError(f"data.labels maps to unknown categories {unknown}; valid: {', '.join(CATEGORIES)}")
    keys, texts, rows = list(data.labels), [], []
    for origin, record in read_jsonl_records(path):
        text = record.get(data.text_field)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{origin}: no text in field '{data.text_field}'")
        texts.append(text)
        rows.append([int(record[k]) if k in record else -1 for k in keys])
    if not texts:
        raise DataError(f"{path}: no records")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return texts, np.array(rows, dtype=np.int64), [data.labels[k] for k in keys], digest


def tune_threshold(labels: np.ndarray, probabilities: np.ndarray, lowest: float) -> float:
    """The threshold in [lowest, 0.95] with the best F1 on out-of-fold probabilities."""
    from sklearn.metrics import f1_score

    grid = np.round(np.arange(lowest, 0.951, 0.025), 3)
    scores = [f1_score(labels, probabilities >= t, zero_division=0) for t in grid]
    return float(grid[int(np.argmax(scores))])


def fit_category(x: np.ndarray, y: np.ndarray, recipe: ModerationRecipe) -> tuple[np.ndarray, float, float]:
    """Weights, bias and tuned threshold of one category's logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    def model() -> LogisticRegression:
        return LogisticRegression(C=recipe.train.C, class_weight="balanced", max_iter=2000)

    folds = StratifiedKFold(recipe.train.folds, shuffle=True, random_state=recipe.seed)
    out_of_fold = cross_val_predict(model(), x, y, cv=folds, method="predict_proba")[:, 1]
    fitted = model().fit(x, y)
    return fitted.coef_[0], float(fitted.intercept_[0]), tune_threshold(y, out_of_fold, recipe.train.min_threshold)


def evaluate_head(head: ModerationHead, x: np.ndarray, labels: np.ndarray) -> dict[str, dict]:
    """Precision, recall, F1 and support per category on labelled rows, at the head's thresholds."""
    from sklearn.metrics import precision_recall_fscore_support

    flags = head.probabilities(x) >= head.thresholds
    report = {}
    for i, category in enumerate(head.categories):
        known = labels[:, i] >= 0
        p, r, f, _ = precision_recall_fscore_support(labels[known, i], flags[known, i], average="binary",
                                                     zero_division=0)
        report[category] = {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
                            "support": int(labels[known, i].sum()), "threshold": float(head.thresholds[i])}
    return report


def train_moderation(recipe: ModerationRecipe, resume: bool = False, console: Console | None = None) -> dict[str, dict]:
    """Fit, evaluate on the held-out part, and write the classifier and its report to ``out_dir``.
    ``resume`` is accepted like every family's and ignored: fitting takes seconds, there is nothing to resume."""
    from sklearn.model_selection import train_test_split

    texts, labels, categories, digest = read_moderation_data(recipe.data)
    x = load_encoder(recipe.encoder, device="cpu").encode(texts)
    train_idx, eval_idx = train_test_split(np.arange(len(texts)), test_size=recipe.data.eval_fraction,
                                           random_state=recipe.seed, stratify=(labels > 0).any(1))
    weights, bias, thresholds = [], [], []
    for i, category in enumerate(categories):
        rows = train_idx[labels[train_idx, i] >= 0]
        if labels[rows, i].sum() < recipe.train.folds:
            raise DataError(f"category '{category}': fewer than {recipe.train.folds} positive training examples")
        w, b, t = fit_category(x[rows], labels[rows, i], recipe)
        weights.append(w), bias.append(b), thresholds.append(t)
    info = {"data": recipe.data.path, "data_sha256": digest, "train_rows": len(train_idx), "eval_rows": len(eval_idx),
            "seed": recipe.seed}
    head = ModerationHead(categories, np.stack(weights), np.array(bias), np.array(thresholds), recipe.encoder, info)
    report = evaluate_head(head, x[eval_idx], labels[eval_idx])
    head.info["eval"] = report
    with atomic_directory(Path(recipe.out_dir)) as tmp:
        head.save(tmp)
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(recipe.model_dump(), sort_keys=False), encoding="utf-8")
    (console or Console()).print(report_table(report))
    return report


def report_table(report: dict[str, dict]) -> Table:
    table = Table(title="moderation classifier, held-out part")
    for column in ("category", "precision", "recall", "f1", "support", "threshold"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, row in report.items():
        table.add_row(category, *(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k])
                                  for k in ("precision", "recall", "f1", "support", "threshold")))
    return table
