"""Does masked-LM pre-training transfer? A small BERT pre-trained on the headlines' own text (and/or
pydoc), fine-tuned on financial-headline sentiment, vs the same network fine-tuned from scratch and
vs TF-IDF + logistic regression.

    python bench/mlm_transfer.py [--corpus fin|pydoc|both] [--mlm-steps N] [--mlm-seconds S]
                                 [--finetune-steps N] [--mlm-set key=value ...] [--set key=value ...]

Data: ../shared/data/fin_sentiment_en (or $LUOXIA_DATA_DIR): the text column of sent_train.csv,
labels dropped, one headline per document, is the pre-training corpus (``--corpus fin``; ``pydoc``
uses the bundled Python help topics instead, ``both`` joins them); sent_valid.csv is never seen in
pre-training. The masked LM is configs/mlm/pydoc.yaml (BPE, post-norm, 4 layers × 192) with
``--mlm-set`` overrides, trained for ``--mlm-steps`` steps (the schedule's length) or until
``--mlm-seconds`` of wall time, whichever comes first. Then:

- ``pretrained``: configs/finetune/classify_fin_sentiment.yaml with ``base_model`` = the MLM run
  (exported as BERT by `luoxia.models.mlm_hf`), ``--finetune-steps`` steps, method ``--method``;
- ``scratch``: the same architecture and tokenizer, randomly initialised (seed ``--seed``), exported
  and fine-tuned the same way for the same steps;
- ``tfidf_logreg``: bench/classify_fin.py's baseline on the same splits.

All three are scored on sent_valid.csv (accuracy, macro-F1), which none of them sees while training:
the fine-tuning runs keep the weights of their best validation loss on a seeded 10% of the train
split (``data.val=null``), so they train on 90% of it while the baseline trains on all of it.
``masked_lm`` scores the pre-trained model on sent_valid.csv's headlines with
15% of their tokens (seeded) replaced by [MASK]: top-1 accuracy at the masked positions against the
unigram baseline (always the most frequent token of the pre-training corpus). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's baseline and reader
from classify_fin import load_split, per_class, tfidf_logreg  # noqa: E402
from report import print_report  # noqa: E402

MLM_RECIPE = "mlm/pydoc.yaml"
CLASSIFY_RECIPE = "finetune/classify_fin_sentiment.yaml"
MASK_RATE = 0.15


def write_unlabelled(texts: list[str], path: Path) -> Path:
    """The headlines alone, one per line: the pre-training corpus (labels never reach it)."""
    path.write_text("\n".join(" ".join(t.split()) for t in texts) + "\n", encoding="utf-8")
    return path


def pretrain(args, corpus: list[str], out_dir: Path):
    """Train the masked LM; returns its recipe and the loop's final state."""
    from luoxia.config import load_config, resolve_recipe
    from luoxia.train.loop import TimeBudget
    from luoxia.train.mlm import MLMRecipe, train_mlm

    overrides = [f"out_dir={out_dir}", f"data.corpus=[{','.join(corpus)}]", "data.text_unit=line",
                 f"train.max_steps={args.mlm_steps}", "train.progress=false", f"seed={args.seed}", *args.mlm_set]
    recipe = load_config(MLMRecipe, resolve_recipe(MLM_RECIPE), overrides)
    return recipe, train_mlm(recipe, callbacks=[TimeBudget(args.mlm_seconds)] if args.mlm_seconds else [])


def scratch_run(mlm_dir: Path, out_dir: Path, seed: int) -> Path:
    """A run directory with the MLM run's recipe and tokenizer and a freshly initialised network."""
    from luoxia.checkpoint import save_weights
    from luoxia.generate.mlm import load_mlm
    from luoxia.models.mlm import MaskedLM
    from luoxia.runs import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE

    trained, _ = load_mlm(mlm_dir, device="cpu")
    torch.manual_seed(seed)
    out_dir.mkdir(parents=True)
    save_weights(MaskedLM(trained.config), out_dir / WEIGHTS_FILE)
    for name in (CONFIG_FILE, TOKENIZER_FILE):
        shutil.copy(mlm_dir / name, out_dir / name)
    return out_dir


@torch.no_grad()
def masked_accuracy(mlm_dir: Path, texts: list[str], seed: int, batch_size: int = 64) -> dict:
    """Top-1 accuracy at 15% [MASK]ed positions of ``texts``, and that of always guessing the most
    frequent (non-special) token of the run's pre-training tokens."""
    from luoxia.data.mlm import MLMSpecials
    from luoxia.data.packed import open_tokens
    from luoxia.generate.mlm import load_mlm
    from luoxia.runs import data_dir

    model, tokenizer = load_mlm(mlm_dir, device="cpu")
    specials = MLMSpecials.of(tokenizer)
    counts = np.bincount(np.asarray(open_tokens(data_dir(mlm_dir), "train"), dtype=np.int64),
                         minlength=tokenizer.vocab_size)
    counts[sorted(specials.never_masked)] = 0
    top = int(counts.argmax())
    rng = np.random.default_rng(seed)
    correct = unigram = total = 0
    rows = [ids[: model.config.block_size - 2] for ids in tokenizer.encode_batch(texts)]
    for start in range(0, len(rows), batch_size):
        chunk = [r for r in rows[start:start + batch_size] if r]
        width = max(len(r) for r in chunk) + 2
        ids = torch.full((len(chunk), width), specials.pad, dtype=torch.long)  # (B, T)
        chosen = torch.zeros(len(chunk), width, dtype=torch.bool)  # (B, T)
        for i, row in enumerate(chunk):
            ids[i, : len(row) + 2] = torch.tensor([specials.cls, *row, specials.sep])
            picks = rng.random(len(row)) < MASK_RATE
            picks[rng.integers(len(row))] = True  # at least one position per headline
            chosen[i, 1 : len(row) + 1] = torch.from_numpy(picks)
        targets = ids[chosen]
        hidden = model.encode(ids.masked_fill(chosen, specials.mask), padding_mask=ids != specials.pad)
        predicted = model.mlm_logits(hidden[chosen]).argmax(-1)  # (M,)
        correct += int((predicted == targets).sum())
        unigram += int((targets == top).sum())
        total += int(targets.numel())
    return {"masked_positions": total, "accuracy": round(correct / total, 4),
            "unigram_accuracy": round(unigram / total, 4), "unigram_top_token": tokenizer.decode([top])}


def fine_tune(args, base: Path, out_dir: Path, report_on: str) -> dict:
    """Fine-tune a classifier on ``base``, choosing its best weights on a held-out share of the train
    split (``data.val=null``), and score it on ``report_on``, which it never saw."""
    from luoxia.evaluate.classify import classify_file
    from luoxia.registry import load_recipe
    from luoxia.train.finetune import finetune

    recipe = load_recipe(CLASSIFY_RECIPE, [
        f"base_model={base}", f"out_dir={out_dir}", f"train.max_steps={args.finetune_steps}",
        f"method.name={args.method}", "train.progress=false", f"seed={args.seed}", "data.val=null",
        *args.overrides],
        allowed=("classify",))
    start = time.perf_counter()
    state = finetune(recipe)
    seconds = time.perf_counter() - start
    data = recipe.data
    metrics = classify_file(out_dir, report_on, data.text_field, data.label_field, device="cpu")["metrics"]
    return {"accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
            "per_class_f1": per_class(metrics["report"], metrics["labels"]), "steps": state.step,
            "train_seconds": round(seconds, 2),
            "best_val_loss": round(state.best_val, 4) if state.best_val != float("inf") else None}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=("fin", "pydoc", "both"), default="fin",
                        help="pre-training text: the headlines' (train split, no labels), pydoc, or both")
    parser.add_argument("--mlm-steps", type=int, default=2000, help="masked-LM steps (and schedule length)")
    parser.add_argument("--mlm-seconds", type=float, help="stop pre-training after this wall time")
    parser.add_argument("--mlm-set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"an extra override of configs/{MLM_RECIPE} (repeatable)")
    parser.add_argument("--finetune-steps", type=int, default=600, help="fine-tuning steps, both systems")
    parser.add_argument("--method", default="full", help="fine-tuning method (full, lora, …), both systems")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help=f"an extra override of configs/{CLASSIFY_RECIPE} (repeatable)")
    parser.add_argument("--seed", type=int, default=1337, help="seed of both networks, the data order and masking")
    parser.add_argument("--tfidf-c", type=float, default=10.0, help="the baseline's inverse regularisation C")
    parser.add_argument("--keep", type=Path, help="keep the runs in this new directory (default: a temporary one)")
    args = parser.parse_args()

    from luoxia.data.corpora import resolve_data_path
    from luoxia.registry import load_recipe
    from luoxia.train.finetune import resolve_label_names

    classify = load_recipe(CLASSIFY_RECIPE, ["base_model=minilm", *args.overrides], allowed=("classify",))
    data = classify.data
    for path in (data.train, data.val):  # a missing ../shared fails here, before any training
        resolve_data_path(path)
    labels = resolve_label_names(classify)
    train, val = load_split(data.train, data, labels), load_split(data.val, data, labels)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        corpus = {"fin": [str(write_unlabelled(train[0], root / "fin_unlabelled.txt"))], "pydoc": ["pydoc"]}
        chosen = corpus["fin"] + corpus["pydoc"] if args.corpus == "both" else corpus[args.corpus]
        start = time.perf_counter()
        mlm_recipe, state = pretrain(args, chosen, root / "mlm")
        mlm_seconds = time.perf_counter() - start
        result: dict = {
            "benchmark": "mlm_transfer",
            "corpus": args.corpus,
            "model": mlm_recipe.model.model_dump(),
            "mlm": {"steps": state.step, "stop_reason": state.stop_reason, "train_seconds": round(mlm_seconds, 2),
                    "best_val_loss": round(state.best_val, 4) if state.best_val != float("inf") else None},
            "masked_lm": masked_accuracy(root / "mlm", val[0], args.seed),
            "pretrained": fine_tune(args, root / "mlm", root / "pretrained", data.val),
            "scratch": fine_tune(args, scratch_run(root / "mlm", root / "scratch-base", args.seed),
                                 root / "scratch", data.val),
        }
    result["tfidf_logreg"] = tfidf_logreg(train, val, labels, args.tfidf_c)
    result.update({"finetune_steps": args.finetune_steps, "method": args.method, "n_train": len(train[0]),
                   "n_val": len(val[0]), "mlm_overrides": args.mlm_set, "overrides": args.overrides,
                   "threads": torch.get_num_threads()})
    return result


if __name__ == "__main__":
    print_report(main)
