"""The web studio in a real browser: Playwright driving Debian's Chromium (`.ci/run` installs it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("LUOXIA_REQUIRE_BROWSER"):
    raise RuntimeError("LUOXIA_REQUIRE_BROWSER is set but no chromium is installed (apt-get install chromium)")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")
def test_studio_chat_streams_and_draws_images(live_server, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(live_server.url + "/")
        page.fill("#api-key", live_server.key)
        page.dispatch_event("#api-key", "change")
        expect(page.locator("#chat-model option")).to_have_count(1)

        page.fill("#chat-input", "To be?")
        page.press("#chat-input", "Enter")
        reply = page.locator(".message.assistant").first
        expect(reply.locator(".meta")).to_contain_text("finish:", timeout=60_000)
        assert len(reply.inner_text().split("finish:")[0].strip()) > 0

        page.click("nav button[data-tab=images]")
        page.fill("#image-prompt", "seven")
        page.fill("#image-n", "2")
        page.click("#draw")
        expect(page.locator("#gallery img")).to_have_count(2, timeout=60_000)

        page.click("nav button[data-tab=check]")
        page.fill("#check-input", "we will kill you")
        page.click("#check-moderate")
        expect(page.locator("#check-result")).to_contain_text('"flagged": true')

        screenshot = tmp_path / "studio.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert screenshot.stat().st_size > 5_000
