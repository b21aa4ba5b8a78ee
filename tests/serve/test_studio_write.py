"""The studio's write panel in a real browser: genre, keywords, title and mode in; candidates with
their keyword and form checks and score parts out; the diff against a draft when polishing; the
words in English and Chinese."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serve.browser import needs_browser, open_studio, screenshot
from tests.serve.conftest import running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(settings_for):
    with running_server(settings_for(image_models=[])) as running:
        yield running


@needs_browser
def test_write_panel_shows_ranked_candidates_checks_and_a_diff(browser, server, tmp_path: Path):
    from playwright.sync_api import expect

    page = open_studio(browser, server)
    page.click("nav button[data-tab=write]")
    expect(page.locator("#write-model option")).to_have_count(1)
    page.select_option("#write-genre", "prose")
    page.fill("#write-keywords", "sea, be")
    page.fill("#write-title", "To be")
    page.fill("#write-n", "2")
    page.fill("#write-seed", "7")
    page.fill("#write-max-tokens", "40")  # the tests' server allows 64 tokens; prose asks for 320
    page.click("#write-go")
    cards = page.locator(".write-candidate")
    expect(cards).to_have_count(2, timeout=30_000)
    expect(cards.first.locator("h3")).to_have_text("#1")
    expect(cards.first.locator(".write-checks")).to_contain_text("✓ sea")
    expect(cards.first.locator(".write-scores")).to_contain_text("keywords 1")
    expect(cards.first.locator(".write-diff")).to_have_count(0)  # a draft has nothing to compare with

    page.fill("#write-draft", "To be, or not to be. that is the questio")
    page.select_option("#write-mode", "polish")
    page.click("#write-go")
    expect(cards).to_have_count(2)
    expect(cards.first.locator(".write-diff h4")).to_have_text("Changes against your draft")
    expect(cards.first.locator(".write-diff del").first).to_be_attached()
    screenshot(page, "studio-write.png", tmp_path)

    page.select_option("#lang", "zh")
    expect(page.locator("#write-go")).to_have_text("写作")
    expect(cards.first.locator(".write-diff h4")).to_have_text("与草稿相比的改动")
    assert page.locator("#write-keywords").get_attribute("placeholder").startswith("春、月")
    page.fill("#write-n", "99")
    page.click("#write-go")
    expect(page.locator("#status")).to_contain_text("n")  # the server's one-line 400, shown as the status
    page.context.close()
