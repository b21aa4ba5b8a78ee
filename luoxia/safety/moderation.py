"""Moderation of inputs and outputs in two layers: bilingual rules and a learned classifier.

- **Rules** (`luoxia/safety/rules/*.yaml`, data not code): regular expressions per category in
  English and Chinese, each with a score, and "allow" patterns for benign look-alikes ("kill the
  Python process", "秒杀"), which are blanked out before either layer reads the text.
- **Classifier**: one logistic regression per category on all-MiniLM-L6-v2 sentence embeddings,
  trained by `train_moderation` on OpenAI's moderation evaluation set (Markov et al. 2022). Its
  weights (a few kB) ship in `luoxia/safety/classifier/`, so moderation works without the data.
  The encoder is English; Chinese relies on the rules.

A category's score is the larger of the two layers' scores; it is flagged at or above its
threshold (the classifier's tuned threshold unless configured otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from luoxia.encoders import Encoder, load_encoder
from luoxia.errors import ConfigError
from luoxia.models.moderation_head import CATEGORIES, ModerationHead

RULES_DIR = Path(__file__).with_name("rules")
CLASSIFIER_DIR = Path(__file__).with_name("classifier")
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Rule:
    category: str
    pattern: re.Pattern
    score: float


@dataclass
class RuleSet:
    """Category rules and allow patterns from one or more YAML files."""

    rules: list[Rule] = field(default_factory=list)
    allow: list[re.Pattern] = field(default_factory=list)

    @classmethod
    def load(cls, paths: Sequence[str | Path] | None = None) -> RuleSet:
        paths = sorted(RULES_DIR.glob("*.yaml")) if paths is None else [Path(p) for p in paths]
        ruleset = cls()
        for path in paths:
            ruleset._add_file(path)
        return ruleset

    def _add_file(self, path: Path) -> None:
        if not path.is_file():
            raise ConfigError(f"{path}: moderation rules file not found")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for category, entries in (data.get("categories") or {}).items():
            if category not in CATEGORIES:
                raise ConfigError(f"{path}: unknown category '{category}'; valid: {', '.join(CATEGORIES)}")
            for entry in entries:
                self.rules.append(Rule(category, _compile(entry["pattern"], path), float(entry.get("score", 0.9))))
        self.allow.extend(_compile(pattern, path) for pattern in data.get("allow") or [])

    def strip_allowed(self, text: str) -> str:
        """The text with every benign look-alike ("kill the process", "秒杀") blanked out."""
        for pattern in self.allow:
            text = pattern.sub(" ", text)
        return text

    def scores(self, text: str) -> dict[str, float]:
        """Each category's highest matching rule score (0 when none matches); give it stripped text."""
        scores = dict.fromkeys(CATEGORIES, 0.0)
        for rule in self.rules:
            if rule.pattern.search(text):
                scores[rule.category] = max(scores[rule.category], rule.score)
        return scores


def _compile(pattern: str, path: Path) -> re.Pattern:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as error:
        raise ConfigError(f"{path}: bad pattern {pattern!r}: {error}") from None


@dataclass
class ModerationResult:
    """One text's verdict, shaped like OpenAI's moderation result (plus where each score came from)."""

    flagged: bool
    categories: dict[str, bool]
    scores: dict[str, float]
    rule_scores: dict[str, float]

    def to_json(self) -> dict:
        return {"flagged": self.flagged, "categories": self.categories,
                "scores": {k: round(v, 4) for k, v in self.scores.items()},
                "rule_scores": {k: v for k, v in self.rule_scores.items() if v > 0}}


class Moderator:
    """Scores texts with the rules and, unless ``classifier`` is None, the learned classifier.

    ``thresholds`` overrides per category (``{"violence": 0.8}``); unnamed categories keep the
    classifier's tuned threshold, or 0.5.
    """

    def __init__(self, rules: RuleSet | None = None, classifier: str | Path | None = CLASSIFIER_DIR,
                 thresholds: dict[str, float] | None = None, device: str = "cpu"):
        self.rules = rules or RuleSet.load()
        self.head = ModerationHead.load(classifier) if classifier is not None else None
        self.device = device
        self.thresholds = self._thresholds(thresholds or {})

    def _thresholds(self, overrides: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(overrides) - set(CATEGORIES))
        if unknown:
            raise ConfigError(f"unknown moderation categories {unknown}; valid: {', '.join(CATEGORIES)}")
        tuned = dict(zip(self.head.categories, self.head.thresholds.tolist(), strict=True)) if self.head else {}
        return {c: float(overrides.get(c, tuned.get(c, DEFAULT_THRESHOLD))) for c in CATEGORIES}

    @cached_property
    def encoder(self) -> Encoder:
        if self.head is None:
            raise ConfigError("this moderator has no classifier, so it reads no sentence embeddings")
        return load_encoder(self.head.encoder, device=self.device)

    def moderate(self, texts: Sequence[str]) -> list[ModerationResult]:
        """Both layers read the text with the benign look-alikes blanked out, so "how do I kill a
        Python process" is judged as "how do I" — the classifier alone would call it violent."""
        stripped = [self.rules.strip_allowed(text) for text in texts]
        learned = self._learned_scores(stripped)
        return [self._verdict(self.rules.scores(text), scores) for text, scores in zip(stripped, learned, strict=True)]

    def _learned_scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if self.head is None or not texts:
            return [{} for _ in texts]
        probabilities = self.head.probabilities(self.encoder.encode(texts))
        return [dict(zip(self.head.categories, row.tolist(), strict=True)) for row in probabilities]

    def _verdict(self, rule_scores: dict[str, float], learned: dict[str, float]) -> ModerationResult:
        scores = {c: max(rule_scores[c], learned.get(c, 0.0)) for c in CATEGORIES}
        categories = {c: scores[c] >= self.thresholds[c] for c in CATEGORIES}
        return ModerationResult(any(categories.values()), categories, scores, rule_scores)
