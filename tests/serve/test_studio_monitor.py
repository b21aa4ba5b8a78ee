"""The studio's monitor tab: shown when the server has a monitor, its series plotted, its alerts
tabled (redacted), in English and Chinese."""

from __future__ import annotations

import pytest

from luoxia.apps.monitor import load_monitor
from tests.apps.monitor_stub import SOURCE, keyword_sentiment, monitor_app_dir, stream
from tests.echo import echo_models, echo_settings
from tests.serve.browser import needs_browser, open_studio, screenshot
from tests.serve.conftest import running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def monitor_server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("studio-monitor")
    with pytest.MonkeyPatch.context() as monkeypatch:
        folder = monitor_app_dir(tmp_path / "markets", monkeypatch, name="markets")
        app = load_monitor(folder, sentiment=keyword_sentiment, source=SOURCE)
        items = stream(0)
        next(i for i in items if i.burst == 0).text += " mail jane.doe@example.com"
        app.ingest(items)
        settings = echo_settings(tmp_path / "data", apps=[folder])
        models = echo_models(settings)
        models.apps["markets"] = app
        with running_server(settings, models) as server:
            yield server


@needs_browser
def test_the_monitor_tab_plots_series_and_lists_alerts(browser, monitor_server, tmp_path):
    from playwright.sync_api import expect

    page = open_studio(browser, monitor_server)
    try:
        tab = page.locator("nav button[data-tab=monitor]")
        expect(tab).to_be_visible(timeout=30_000)
        tab.click()
        expect(page.locator("#monitor-app")).to_have_value("markets")
        expect(page.locator("#monitor-status")).to_contain_text(SOURCE, timeout=30_000)
        expect(page.locator("#monitor-alerts tbody tr").first).to_contain_text("$ACME")
        assert "jane.doe@example.com" not in page.content()
        drawn = page.evaluate("""() => ['#monitor-volume', '#monitor-share'].map((id) => {
          const canvas = document.querySelector(id);
          return canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data.some((v) => v > 0);
        })""")
        assert drawn == [True, True]
        page.select_option("#monitor-topic", "$ACME")
        expect(page.locator("#monitor-topic")).to_have_value("$ACME")
        page.select_option("#lang", "zh")
        expect(page.locator("#monitor h3").first).to_have_text("每个窗口的条数")
        screenshot(page, "studio-monitor.png", tmp_path, docs=False)
    finally:
        page.context.close()
