"""Normalisation for moderation matching (issue 13, item 9): each formatting trick has one spelling."""

from __future__ import annotations

import time

import pytest

from luoxia.safety.normalize import normalize, variants


@pytest.mark.parametrize(("text", "expected"), [
    ("how do  I\tmake a\n bomb ", "how do I make a bomb"),  # runs of spaces, tabs, newlines
    ("bo\u200bmb\u200d \ufeffkill\u2060", "bomb kill"),  # zero-width characters and word joiner
    ("b\u202eomb\x07", "bomb"),  # bidi override, control character
    ("ｂｏｍｂ\u3000ｋｉｌｌ", "bomb kill"),  # full-width letters, ideographic space
    ("b\u043emb \u0440\u043e\u0440n", "bomb popn"),  # Cyrillic о, р
    ("\u03b2\u03bfmb \u0391\u0392", "βomb AB"),  # Greek ο, Α, Β (lower-case β is no Latin letter)
    ("b\u0336o\u0336m\u0336b\u0336 café", "bomb cafe"),  # combining strokes and accents
    ("b0mb k1ll 5h00t m@ke", "bomb kill shoot make"),  # leetspeak inside words
    ("怎么 制作 炸弹", "怎么制作炸弹"),  # spaces between Chinese characters
    ("怎么制\u200b作炸弹", "怎么制作炸弹"),
    ("怎麼製作炸彈", "怎么制作炸弹"),  # traditional → simplified
    ("中文 and English 字", "中文 and English 字"),  # a space next to a Latin word stays
])
def test_formatting_tricks_normalise_to_one_spelling(text: str, expected: str):
    assert normalize(text) == expected


@pytest.mark.parametrize("text", ["The 12-year-old paid $100 in 2024.", "Call 555-0134 at 7:45.", "1.5 + 3 = 4.5",
                                  "한국어 단어 사이 공백", "Привет, мир"])
def test_numbers_and_other_scripts_keep_their_shape(text: str):
    normal = normalize(text)
    assert [char for char in normal if char.isdigit()] == [char for char in text if char.isdigit()]
    assert normal.count(" ") == text.count(" ")


def test_a_one_in_a_word_is_read_both_as_i_and_as_l():
    assert variants("ki11 k1ll") == ("kiii kill", "kill klll")
    assert variants("kill 11 people") == ("kill 11 people",)  # a number alone is not leetspeak


def test_normalising_is_linear_in_the_length():
    """Timing two sizes in one run: 10× the text stays well under 100× the time (quadratic)."""
    for unit in ("a_", "1-", "a1", "字 ", "a\u200b ", "ｂ0  "):
        small, large = unit * 20_000, unit * 200_000
        timings = []
        for text in (small, large):
            start = time.perf_counter()
            for _ in range(3):
                normalize(text)
            timings.append(time.perf_counter() - start)
        assert timings[1] < 30 * timings[0], unit
