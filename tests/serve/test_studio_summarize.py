"""The studio's summarize panel in a real browser: paste a text, pick a method and a length, see the
summary with the kept sentences highlighted; a served model's summary; labels in Chinese."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.echo import echo_models, echo_settings
from tests.serve.browser import needs_browser, open_studio, screenshot
from tests.serve.conftest import running_server

pytestmark = pytest.mark.slow
TEXT = ("Solar panels turn light into power. Wind turbines turn moving air into power. "
        "Solar panels and wind turbines both turn light and moving air into cheap clean power for homes. "
        "Homes use cheap clean power. The cat slept.")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = echo_settings(tmp_path_factory.mktemp("studio-summarize"))
    with running_server(settings, echo_models(settings)) as live:
        yield live


@needs_browser
def test_summarize_panel_highlights_the_kept_sentences(browser, server, tmp_path: Path):
    from playwright.sync_api import expect

    page = open_studio(browser, server)
    try:
        page.click("nav button[data-tab=summarize]")
        page.fill("#summarize-input", TEXT)
        page.click("#summarize-send")
        expect(page.locator("#summarize-output")).to_have_text(
            "Solar panels and wind turbines both turn light and moving air into cheap clean power for homes.")
        expect(page.locator("#summarize-sentences mark.kept")).to_have_count(1)
        expect(page.locator("#summarize-sentences mark.kept")).to_have_attribute("data-index", "2")
        page.select_option("#summarize-method", "lead")
        page.fill("#summarize-k", "2")
        page.click("#summarize-send")
        expect(page.locator("#summarize-sentences mark.kept")).to_have_count(2)
        expect(page.locator("#summarize-info")).to_contain_text("asked: any")
        screenshot(page, "studio-summarize.png", tmp_path)
        page.select_option("#summarize-method", "model")
        expect(page.locator("#summarize-model option")).to_have_count(1)
        page.fill("#summarize-length", "12")
        page.click("#summarize-send")  # the echo model shows the prompt: the length token
        expect(page.locator("#summarize-output")).to_contain_text("summarize <len=10>:")
        expect(page.locator("#summarize-info")).to_contain_text("asked: 12")
        page.select_option("#lang", "zh")
        expect(page.locator("#summarize-send")).to_have_text("生成摘要")
        expect(page.locator("#summarize-info")).to_contain_text("要求：12")
    finally:
        page.context.close()
