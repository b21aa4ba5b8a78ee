"""Explanations (issue 14 item 6): each category the rules score comes with the rule's stable id and
the span of the text as given, however the text was disguised; nothing is mapped unless asked for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import luoxia.safety.normalize as normalize_module
from luoxia.errors import ConfigError
from luoxia.models.moderation_head import CATEGORIES
from luoxia.safety.moderation import Evidence, Moderator, RuleSet
from luoxia.safety.normalize import mapped_variants, normalize

# (category, text before, the disguised match, text after, the rule that fires): the evidence must be
# exactly the disguised part, in offsets of the text as given.
DISGUISED = [
    ("violence", "Tomorrow ", "I  will  k1ll   you", "!", "en.yaml#violence.1"),  # leet, extra spaces
    ("violence/graphic", "the film showed ", "deca\u200bpitations", " twice", "en.yaml#violence/graphic.1"),
    ("hate", "calls for ", "ｅｔｈｎｉｃ ｃｌｅａｎｓｉｎｇ", " again", "en.yaml#hate.2"),  # full-width letters
    ("hate/threatening", "他说要", "滅絕 所有 外地人", "。", "zh.yaml#hate/threatening.1"),  # traditional, spaces
    ("harassment", "hey, ", "ｙｏｕ ａｒｅ ａ ｗｏｒｔｈ\u200dｌｅｓｓ", " one", "en.yaml#harassment.1"),
    ("self-harm", "今晚", "我想\u200d自殺", "了", "zh.yaml#self-harm.1"),  # zero-width joiner, traditional
    ("sexual", "send ", "nude ph0tos", " now", "en.yaml#sexual.1"),  # leet
    ("sexual/minors", "搜索", "兒童\u200b色情", "网站", "zh.yaml#sexual/minors.1"),
    ("illicit", "tell me ", "ＨＯＷ do i  make a b0\u200bmb", " today", "en.yaml#illicit.1"),
]


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet.load()


def rule_evidence(rules: RuleSet, text: str) -> dict[str, Evidence]:
    return {evidence.category: evidence for evidence in rules.read(text, explain=True).evidence}


def test_every_category_is_covered():
    assert sorted(case[0] for case in DISGUISED) == sorted(CATEGORIES)


@pytest.mark.parametrize(("category", "before", "match", "after", "rule_id"), DISGUISED,
                         ids=[case[0] for case in DISGUISED])
def test_evidence_points_at_the_disguised_span_of_the_text_as_given(rules: RuleSet, category: str, before: str,
                                                                    match: str, after: str, rule_id: str):
    text = before + match + after
    evidence = rule_evidence(rules, text)[category]
    assert (evidence.layer, evidence.source, evidence.score) == ("rule", rule_id, rules.scores(text)[category])
    assert (evidence.start, evidence.end) == (len(before), len(before) + len(match))
    assert text[evidence.start:evidence.end] == match


def test_only_scoring_categories_have_evidence_and_allowed_look_alikes_have_none(rules: RuleSet):
    assert rule_evidence(rules, "kill the Python process") == {}
    assert rule_evidence(rules, "怎么杀死后台进程") == {}
    evidence = rule_evidence(rules, "kill the Python process, then I will kill you")
    assert list(evidence) == ["violence"] and evidence["violence"].start == len("kill the Python process, then ")
    (result,) = Moderator(classifier=None).moderate(["how do I kill a Python process"], explain=True)
    assert result.evidence == []


def test_the_highest_scoring_rule_is_the_evidence(rules: RuleSet):
    """Two violence rules match; the score (0.95, rule 1) is explained, not the first match (0.85, rule 2)."""
    text = "kill them all. I'm going to kill you"
    evidence = rule_evidence(rules, text)["violence"]
    assert (evidence.source, evidence.score) == ("en.yaml#violence.1", 0.95)
    assert text[evidence.start:evidence.end] == "I'm going to kill you"


def test_no_map_is_built_unless_evidence_is_asked_for(monkeypatch: pytest.MonkeyPatch):
    """The guard moderates every output segment: without ``explain`` the offset map costs nothing."""
    moderator = Moderator(classifier=None)

    def no_map(*args: object, **kwargs: object) -> None:
        raise AssertionError("the offset map was built")

    monkeypatch.setattr(normalize_module, "fold_with_map", no_map)
    (result,) = moderator.moderate(["I will k1ll  y\u200bou"])
    assert result.flagged and result.evidence == []
    with pytest.raises(AssertionError, match="offset map"):
        moderator.moderate(["I will k1ll  y\u200bou"], explain=True)


INVISIBLE = st.sampled_from(["", "", "\u200b", "\u200d", "\ufeff", "\u00ad", "\u2060"])
SEPARATORS = st.sampled_from([" ", "  ", " \t ", "\u3000", "\n"])


@settings(max_examples=60, deadline=None)
@given(st.lists(INVISIBLE, min_size=15, max_size=15), st.lists(st.booleans(), min_size=15, max_size=15),
       st.lists(SEPARATORS, min_size=3, max_size=3), st.text(alphabet="ab .,", max_size=8),
       st.text(alphabet=" .,xyz", max_size=8))
def test_the_span_of_any_disguise_normalises_to_the_match(invisible: list[str], wide: list[bool],
                                                          separators: list[str], before: str, after: str):
    """Invisible characters inside the words, full-width letters and odd spaces between them in
    "I will kill you": the evidence's span of the disguised text reads as the plain phrase again."""
    phrase = "I will kill you"
    letters = iter(zip(invisible, wide, strict=True))
    words = ["".join((chr(ord(c) + 0xFEE0) if w else c) + i for c, (i, w) in zip(word, letters, strict=False))
             for word in phrase.split()]
    disguised = "".join(word + separator for word, separator in zip(words, [*separators, ""], strict=True))
    text = f"{before} {disguised} {after}"
    evidence = rule_evidence(RuleSet.load(), text)["violence"]
    assert normalize(text[evidence.start:evidence.end]) == phrase
    assert len(before) < evidence.start and evidence.end <= len(before) + 1 + len(disguised)


def test_spans_cover_whole_original_characters():
    """A ligature folds to two letters: a match ending inside it covers all of it."""
    views = mapped_variants("x ﬁle\u200b  y")
    assert views.texts == ("x file y",)
    assert views.original_span(2, 3) == (2, 3)  # "f" of the ligature: the whole ligature
    assert views.original_span(2, 6) == (2, 5)  # "file"
    assert views.original_span(2, 8) == (2, 9)  # "file y": the zero-width space and both spaces inside
    assert views.original_span(8, 8) == (9, 9)  # an empty span at the end


def test_rule_ids_are_stable_and_unique():
    first, second = RuleSet.load(), RuleSet.load()
    ids = [rule.id for rule in first.rules]
    assert ids == [rule.id for rule in second.rules] and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"(en|zh)\.yaml#[a-z/-]+\.[1-9]\d*", rule_id) for rule_id in ids)
    violence = [rule for rule in first.rules if rule.id.startswith("en.yaml#violence.")]
    assert [rule.id for rule in violence] == [f"en.yaml#violence.{n}" for n in range(1, len(violence) + 1)]


def test_an_entry_may_name_its_rule_and_ids_must_be_unique(tmp_path: Path):
    rules = tmp_path / "mine.yaml"
    rules.write_text("categories:\n  violence:\n    - {pattern: 'zap you', score: 0.9, id: zap}\n"
                     "    - {pattern: 'zorch you', score: 0.8}\n", encoding="utf-8")
    loaded = RuleSet.load([rules])
    assert [rule.id for rule in loaded.rules] == ["zap", "mine.yaml#violence.2"]
    assert rule_evidence(loaded, "I zap you")["violence"].source == "zap"
    twice = tmp_path / "twice.yaml"
    twice.write_text("categories:\n  violence:\n    - {pattern: 'zap', id: same}\n"
                     "  harassment:\n    - {pattern: 'zip', id: same}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="id 'same' is used twice"):
        RuleSet.load([twice])
    with pytest.raises(ConfigError, match="used twice"):
        RuleSet.load([rules, rules])
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories:\n  violence:\n    - {pattern: 'zap', id: 3}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="non-empty string"):
        RuleSet.load([bad])
