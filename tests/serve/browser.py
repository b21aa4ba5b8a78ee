"""What the studio's browser tests share: Debian's Chromium driven by Playwright (`.ci/run` installs it and
fonts-noto-cjk), one browser per test session (the `browser` fixture in conftest.py), screenshots."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = bool(os.environ.get("LUOXIA_REQUIRE_BROWSER"))
if CHROMIUM is None and REQUIRED:
    raise RuntimeError("LUOXIA_REQUIRE_BROWSER is set but no chromium is installed (apt-get install chromium)")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")
# Where the README's screenshots come from: LUOXIA_SCREENSHOTS=docs/images pytest tests/serve/test_studio*.py
SCREENSHOTS = os.environ.get("LUOXIA_SCREENSHOTS")


def launch() -> Iterator:
    """One headless Chromium for the session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_studio(browser, server, locale: str = "en-GB"):
    """A fresh page (its own storage) on ``server``'s studio with the API key entered; close its
    ``page.context`` when done."""
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.goto(server.url + "/")
    page.fill("#api-key", server.key)
    page.dispatch_event("#api-key", "change")
    return page


def screenshot(page, name: str, tmp_path: Path, docs: bool = True) -> Path:
    """A full-page screenshot; into `SCREENSHOTS` when set and ``docs`` (fake applications' pages never go there)."""
    path = Path(SCREENSHOTS if SCREENSHOTS and docs else tmp_path) / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    return path
