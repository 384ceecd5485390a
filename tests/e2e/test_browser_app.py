"""The page in a real Chromium: every tab and the Models panel are there."""

import pytest

from engine.registry import PipelineRegistry
from ui.app import TABS, build_app

pytestmark = pytest.mark.e2e


def test_page_shows_every_tab_and_models_panel(page, make_settings, serve):
    settings = make_settings()
    url = serve(build_app(settings, PipelineRegistry(settings)), settings)
    page.goto(url)
    for label, _, _ in TABS:
        page.get_by_role("tab", name=label).wait_for(timeout=30_000)
    page.get_by_role("tab", name="Models").click()
    page.locator("#models-table").wait_for(state="visible", timeout=15_000)
    assert page.locator("#models-refresh").is_visible()
    assert "cpu" in page.locator("#tab-models").inner_text()
