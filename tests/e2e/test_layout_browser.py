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
# > 0: a dropdown's text runs past the room it has (under its arrow, or past the input's edge).
CUT = """el => {
    const style = getComputedStyle(el), ctx = document.createElement('canvas').getContext('2d');
    ctx.font = style.font;
    const box = el.getBoundingClientRect();
    const icon = el.parentElement.parentElement.querySelector('.icon-wrap, svg');
    const right = icon ? Math.min(icon.getBoundingClientRect().left, box.right) : box.right - parseFloat(style.paddingRight);
    return ctx.measureText(el.value).width - (right - box.left - parseFloat(style.paddingLeft));
}"""


def test_models_table_and_dropdowns_fit_at_1400px(wide_page, tiny_model, make_settings, serve):
    page = wide_page
    settings = make_settings(image_model=str(tiny_model("vit_classifier")),
                             zero_shot_model=str(tiny_model("bert_nli")), admin_token=ADMIN)
    registry = PipelineRegistry(settings)
    registry.get("image-classification")
    registry.get("zero-shot-classification")
    page.goto(serve(build_app(settings, registry), settings))

    page.get_by_role("tab", name="Document").click()
    model = page.locator("#document-model input")
    model.wait_for(state="visible", timeout=30_000)
    # The default Hub id, the longest name offered: it was cut to '.../layou' beside the slider.
    assert model.input_value() == "impira/layoutlm-document-qa" and model.evaluate(CUT) <= 0

    page.get_by_role("tab", name="Models").click()
    table = page.locator("#models-table")
    page.wait_for_function("() => document.querySelector('#models-table').innerText.includes('bert_nli')",
                           timeout=60_000)
    assert table.evaluate(SCROLLED) == 0  # no horizontal scroll anywhere in the table
    right = table.bounding_box()["x"] + table.bounding_box()["width"]
    for header in ("load (s)", "last used"):  # the last columns are on screen
        cells = [c for c in table.locator("th").all() if header in c.inner_text()]
        box = cells[0].bounding_box() if cells else None
        assert box and box["x"] + box["width"] <= right + 1 <= 1400 + 1, header
    page.locator("#models-admin").get_by_text("Operator: unload models").click()
    choice = page.locator("#models-choice input")
    choice.wait_for(state="visible", timeout=15_000)
    page.wait_for_function("() => document.querySelector('#models-choice input').value.includes('|')",
                           timeout=60_000)
    assert "vit_classifier" in choice.input_value() and choice.evaluate(CUT) <= 0
