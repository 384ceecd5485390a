"""Document tab in Chromium: drop the invoice on the tab, ask, see the answers and the boxed page."""

import base64
import gc
import re

import pytest

from engine.document import DocumentAnswers
from engine.registry import PipelineRegistry
from ui.tabs import document as tab

pytestmark = pytest.mark.e2e


def drop_file(page, selector, path, mime):
    """A real drag-and-drop: dragenter, dragover, drop carrying a DataTransfer that holds the file."""
    transfer = page.evaluate_handle(
        """([b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: mime}));
            return dt;
        }""", [base64.b64encode(path.read_bytes()).decode(), path.name, mime])
    target = page.locator(selector).first
    for event in ("dragenter", "dragover", "drop"):
        target.dispatch_event(event, {"dataTransfer": transfer})


def test_drop_invoice_ask_and_see_the_answer_boxed(page, tiny_model, make_settings, serve):
    settings = make_settings(docqa_model=str(tiny_model("layoutlm_qa")))
    page.goto(serve(tab.demo(PipelineRegistry(settings), settings), settings))
    drop_file(page, "#document-input button", tab.EXAMPLE, "image/png")
    annotated = page.locator("#document-annotated")
    annotated.locator("img.base-image").wait_for(state="visible", timeout=30_000)  # page 1 preview
    assert "PNG, 1 page" in page.locator("#document-info").inner_text()

    page.locator("#document-question textarea").fill("What is the invoice number?")
    page.locator("#document-ask").click()
    page.locator("#document-info").get_by_text("Showing page").wait_for(timeout=60_000)
    legend = annotated.locator(".legend-item")
    legend.first.wait_for(timeout=15_000)
    first = legend.first.inner_text()
    assert first.startswith("1. ") and annotated.locator("img.mask").count() == legend.count() >= 1

    table = page.locator("#document-answers").inner_text()
    assert first[3:] in table and re.search(r"\b0\.\d{4}\b", table)  # the answer, its score
    assert re.search(r"\d+, \d+, \d+, \d+", table)  # its box in page pixels
    assert "OCR ran on 1 page" in page.locator("#document-info").inner_text()
    gc.collect()  # no rendered page is kept in the session's state (Gradio keeps it an hour after closing)
    assert not [o for o in gc.get_objects() if type(o) is DocumentAnswers and o.image is not None]
