"""The studio's recommend panel in a real browser: liked titles in, ranked items with their score
parts, personalised copy and its fact-check status out (an echo server with a recommend application
built on Luoxia's 40 bundled books and a weightless encoder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from luoxia.apps.recommend import RecommendConfig, build_recommend, bundled_books_path, read_books
from luoxia.serve.models import serve_app
from tests.apps.test_recommend import SIM
from tests.echo import WordHashEncoder, echo_models, echo_settings
from tests.serve.browser import needs_browser, open_studio, screenshot
from tests.serve.conftest import running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("studio-recommend")
    folder = tmp_path / "bookshop"
    build_recommend(folder, read_books(bundled_books_path()), RecommendConfig(name="bookshop", steps=20), SIM,
                    WordHashEncoder())
    settings = echo_settings(tmp_path / "data", apps=[folder])
    models = echo_models(settings)
    serve_app(models, folder)
    models.apps["bookshop"]._encoder = WordHashEncoder()
    with running_server(settings, models) as live:
        yield live


@needs_browser
def test_recommend_panel_ranks_and_shows_copy_with_its_check(browser, server, tmp_path: Path):
    from playwright.sync_api import expect

    page = open_studio(browser, server)
    try:
        tab = page.locator("nav button[data-tab=recommend]")
        expect(tab).to_be_visible()
        tab.click()
        expect(page.locator("#recommend-model option")).to_have_count(1)
        page.click("#recommend-send")  # nothing entered: a one-line error, no request
        expect(page.locator("#status")).to_have_text("Enter at least one title or keyword.")
        page.fill("#recommend-input", "Dracula\nFrankenstein\nhorror")
        page.click("#recommend-send")
        items = page.locator("#recommend-items li")
        expect(items).to_have_count(10)
        first = items.first
        expect(first.locator(".recommend-parts")).to_contain_text("interest")
        expect(first.locator(".recommend-check")).to_have_text("fact check passed (template)")
        title = first.locator("strong").inner_text().split(" — ")[0]
        expect(first.locator(".recommend-copy")).to_contain_text(title)
        expect(items.nth(3).locator(".recommend-copy")).to_have_count(0)  # copy for the top 3 only
        expect(page.locator("#recommend-weights")).to_contain_text("× interest")
        assert "Dracula —" not in page.locator("#recommend-items").inner_text()  # the history is not recommended
        screenshot(page, "studio-recommend.png", tmp_path, docs=False)
        page.select_option("#lang", "zh")
        expect(first.locator(".recommend-check")).to_have_text("事实核查通过（模板）")
    finally:
        page.context.close()
