"""Financial-headline sentiment: LoRA on the bundled MiniLM encoder vs a TF-IDF + logistic-regression baseline.

    python bench/classify_fin.py [--max-steps N] [--set key=value ...] [--skip-finetune]

Data: the Twitter financial news sentiment set in ../shared/data/fin_sentiment_en (or
$LUOXIA_DATA_DIR): sent_train.csv (9,543 rows) to train, sent_valid.csv (2,388 rows) to score;
labels 0=Bearish, 1=Bullish, 2=Neutral. Luoxia fine-tunes configs/finetune/classify_fin_sentiment.yaml
(``--set`` adds recipe overrides, ``--max-steps`` sets train.max_steps) into a temporary run directory;
``train_seconds`` is the wall time of the whole fine-tuning call (model and data loading, the loop
and its periodic evaluations), ``eval_seconds`` that of labelling the validation split with
``luoxia.evaluate.classify.classify_file`` on the CPU; ``luoxia.loop_seconds`` is the training loop
alone (steps, evaluations, checkpoints). The run keeps the weights of its best
validation loss, measured on that same split, so Luoxia's scores carry a little selection on it.
The baseline (word 1-2-gram + char_wb 2-5-gram TF-IDF, sublinear tf, LogisticRegression with a
fixed C) sees the same splits and is never tuned on validation. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from report import print_report

RECIPE = "finetune/classify_fin_sentiment.yaml"


def load_split(path: str, data, label_names: list[str]) -> tuple[list[str], list[str]]:
    """Texts and gold label names of one labelled CSV, read the way fine-tuning reads it."""
    from luoxia.data.finetune import label_index, read_labelled

    pairs = read_labelled(path, data)
    return [text for text, _ in pairs], [label_names[label_index(label, label_names, path)] for _, label in pairs]


def per_class(report: dict, labels: list[str]) -> dict[str, float]:
    return {name: round(report[name]["f1-score"], 4) for name in labels}


def tfidf_logreg(train: tuple[list[str], list[str]], val: tuple[list[str], list[str]], labels: list[str],
                 c: float) -> dict:
    """Word + character TF-IDF features and a logistic regression, trained on train, scored on val."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, classification_report, f1_score
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
    ])
    model = make_pipeline(features, LogisticRegression(C=c, max_iter=2000))
    start = time.perf_counter()
    model.fit(*train)
    seconds = time.perf_counter() - start
    predicted = model.predict(val[0])
    report = classification_report(val[1], predicted, labels=labels, output_dict=True, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(val[1], predicted)), 4),
        "macro_f1": round(float(f1_score(val[1], predicted, labels=labels, average="macro", zero_division=0)), 4),
        "per_class_f1": per_class(report, labels),
        "C": c,
        "train_seconds": round(seconds, 2),
    }


def describe_base(recipe) -> str:
    from luoxia.runs import BUNDLED_MODELS

    base = recipe.base_model
    if base in BUNDLED_MODELS:
        package, what = BUNDLED_MODELS[base]
        base = f"{base}: {what} from {package.replace('_', '-')}"
    method = recipe.method
    rank = f" r={method.r}" if method.name in ("lora", "adalora") else ""
    return f"{base}, {method.name}{rank}"


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=RECIPE, help=f"classification recipe (default: configs/{RECIPE})")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (default: the recipe's train.max_steps)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="an extra recipe override (repeatable), e.g. train.eval_interval=100")
    parser.add_argument("--skip-finetune", action="store_true", help="the TF-IDF baseline only (a quick check)")
    parser.add_argument("--tfidf-c", type=float, default=10.0, help="the baseline's inverse regularisation C")
    args = parser.parse_args()

    from luoxia.data.corpora import resolve_data_path
    from luoxia.evaluate.classify import classify_file
    from luoxia.registry import load_recipe
    from luoxia.train.finetune import finetune, resolve_label_names

    overrides = [*([f"train.max_steps={args.max_steps}"] if args.max_steps is not None else []), *args.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(args.recipe, [f"out_dir={tmp}/run", "progress=false", *overrides],
                             allowed=("classify",))
        data = recipe.data
        if data.val is None:
            parser.error("the recipe needs data.val: both systems are scored on the same validation file")
        for path in (data.train, data.val):  # a missing ../shared fails here, before any model loads
            resolve_data_path(path)
        labels = resolve_label_names(recipe)
        train, val = load_split(data.train, data, labels), load_split(data.val, data, labels)
        result: dict = {
            "benchmark": "classify_fin",
            "base_model": describe_base(recipe),
            "method": recipe.method.model_dump(),
            "max_steps": recipe.train.max_steps,
            "batch_size": recipe.train.batch_size,
            "train_seconds": None,
            "eval_seconds": None,
            "luoxia": None,
        }
        if not args.skip_finetune:
            start = time.perf_counter()
            state = finetune(recipe)
            result["train_seconds"] = round(time.perf_counter() - start, 2)
            start = time.perf_counter()
            metrics = classify_file(recipe.out_dir, data.val, data.text_field, data.label_field,
                                    batch_size=recipe.train.eval_batch_size or recipe.train.batch_size,
                                    device="cpu")["metrics"]
            result["eval_seconds"] = round(time.perf_counter() - start, 2)
            result["luoxia"] = {
                "accuracy": round(metrics["accuracy"], 4),
                "macro_f1": round(metrics["macro_f1"], 4),
                "per_class_f1": per_class(metrics["report"], metrics["labels"]),
                "steps": state.step,
                "loop_seconds": round(state.elapsed_s, 2),
                "best_val_loss": round(state.best_val, 4) if state.best_val != float("inf") else None,
            }
    result["tfidf_logreg"] = tfidf_logreg(train, val, labels, args.tfidf_c)
    result.update({"n_train": len(train[0]), "n_val": len(val[0]), "overrides": overrides,
                   "threads": torch.get_num_threads()})
    return result


if __name__ == "__main__":
    print_report(main)
