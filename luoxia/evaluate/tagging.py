"""Scoring a tagger on IOB2 data: entity-level precision, recall and F1 (seqeval, exact spans and
types), per entity type and micro-averaged over all entities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from luoxia.data.iob import read_iob
from luoxia.errors import ConfigError
from luoxia.generate.tagger import Tagger
from luoxia.runs import run_recipe


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """``{"micro": {precision, recall, f1, support}, "per_type": {TYPE: {…}}}`` over IOB2 sequences."""
    from seqeval.metrics import classification_report  # pulls scikit-learn: here, not at import

    report = classification_report([list(g) for g in gold], [list(p) for p in predicted], output_dict=True,
                                   zero_division=0)

    def row(values: dict) -> dict:
        return {"precision": float(values["precision"]), "recall": float(values["recall"]),
                "f1": float(values["f1-score"]), "support": int(values["support"])}

    averages = {"micro avg", "macro avg", "weighted avg"}
    return {"micro": row(report["micro avg"]),
            "per_type": {name: row(values) for name, values in sorted(report.items()) if name not in averages}}


def evaluate_tagger(tagger: Tagger, path: str | Path) -> dict:
    """The tagger's entity scores on the gold words of an IOB2 file."""
    sentences = read_iob(path)
    predicted = tagger.tag_words([s.words for s in sentences])
    return {"data": str(path), "sentences": len(sentences), **entity_scores([s.tags for s in sentences], predicted)}


def evaluate_tagger_run(run_dir: str | Path, tagger: Tagger, data: str | None = None) -> dict:
    """``luoxia eval`` of a token-classification run: on ``data`` or the run's validation file."""
    path = data or run_recipe(run_dir)["data"].get("val")
    if not path:
        raise ConfigError(f"{run_dir}: the run was validated on a share of its training file; pass --data FILE.iob2")
    return {"run": str(run_dir), **evaluate_tagger(tagger, path)}
