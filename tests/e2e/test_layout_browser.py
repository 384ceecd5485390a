"""The page at 1400 px, as a user sees it: nothing cut, nothing needing a horizontal scroll."""

import pytest

from engine.registry import PipelineRegistry
from ui.app import build_app

pytestmark = pytest.mark.e2e
ADMIN = "layout-test-token-0123456789"


@pytest.fixture
def wide_page(page):
    page.set_viewport_size({"width": 1400, "height": 900})
    return page


SCROLLED = """el => [el, ...el.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1
    && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX)).length"""
CUT = "el => el.scrollWidth - el.clientWidth"  # > 0: an input's text runs past what it shows


def test_models_table_and_dropdowns_fit_at_1400px(wide_page, tiny_model, make_settings, serve):
    page = wide_page
    settings = make_settings(image_model=str(tiny_model("vit_classifier")),
                             docqa_model=str(tiny_model("layoutlm_qa")), admin_token=ADMIN)
    registry = PipelineRegistry(settings)
    registry.get("image-classification")
    registry.get("document-question-answering")
    page.goto(serve(build_app(settings, registry), settings))

    page.get_by_role("tab", name="Document").click()
    model = page.locator("#document-model input")
    model.wait_for(state="visible", timeout=30_000)
    assert model.input_value() == "layoutlm_qa" and model.evaluate(CUT) <= 1  # was cut to '.../layou'

    page.get_by_role("tab", name="Models").click()
    table = page.locator("#models-table")
    table.get_by_text("document-question-answering").first.wait_for(state="visible", timeout=60_000)
    assert table.evaluate(SCROLLED) == 0  # no horizontal scroll anywhere in the table
    right = table.bounding_box()["x"] + table.bounding_box()["width"]
    for header in ("load (s)", "last used"):  # the last columns are on screen
        box = table.get_by_text(header, exact=True).first.bounding_box()
        assert box and box["x"] + box["width"] <= right + 1, header
    page.locator("#models-admin").get_by_text("Operator: unload models").click()
    choice = page.locator("#models-choice input")
    choice.wait_for(state="visible", timeout=15_000)
    page.wait_for_function("() => document.querySelector('#models-choice input').value.includes('|')",
                           timeout=60_000)
    assert "vit_classifier" in choice.input_value() and choice.evaluate(CUT) <= 1
