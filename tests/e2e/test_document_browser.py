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


def test_all_pages_boxes_every_answer_and_a_bad_page_keeps_the_page_and_clears_old_answers(
        page, tiny_model, make_settings, serve, tmp_path):
    from reportlab.pdfgen import canvas

    pdf = tmp_path / "two.pdf"
    c = canvas.Canvas(str(pdf))
    for n in (1, 2):
        for row in range(12):
            c.drawString(72, 720 - 20 * row, f"Page {n} line {row}: invoice total amount due date number {row * n}")
        c.showPage()
    c.save()
    settings = make_settings(docqa_model=str(tiny_model("layoutlm_qa")))
    page.goto(serve(tab.demo(PipelineRegistry(settings), settings), settings))
    page.locator("#document-input input[type=file]").set_input_files(str(pdf))
    page.locator("#document-info").get_by_text("PDF, 2 pages").wait_for(timeout=30_000)
    page.locator("#document-question textarea").fill("What is the total?")
    page.locator("#document-top-k input[type=number]").fill("10")
    page.locator("#document-ask").click()
    info = page.locator("#document-info")
    info.get_by_text("Showing page").wait_for(timeout=60_000)
    shown = int(re.search(r"Showing page (\d+)", info.inner_text()).group(1))
    lines = [ln.strip() for ln in page.locator("#document-answers").inner_text().splitlines() if ln.strip()]
    # Each row reads #, answer, score, page, box: the page is the line before each box.
    answer_pages = {int(lines[i - 1]) for i, ln in enumerate(lines) if re.fullmatch(r"\d+, \d+, \d+, \d+", ln)}
    assert answer_pages <= {1, 2} and shown in answer_pages, lines
    others = answer_pages - {shown}
    gallery = page.locator("#document-other-pages")
    if others:  # every answer on another page is shown there, boxed, on its own page
        gallery.locator("img").first.wait_for(timeout=15_000)
        captions = gallery.inner_text()
        assert all(f"Page {n}:" in captions for n in others)
    else:
        assert not gallery.is_visible()

    # Page 5 of 2: the page shown stays (it turned to "Error" before), a message says why ...
    page_box = page.locator("#document-page input")
    page_box.fill("5")
    page_box.press("Enter")
    page.get_by_text("choose a page from 1 to 2").first.wait_for(timeout=15_000)
    assert page.locator("#document-annotated img.base-image").is_visible()
    # ... and asking about it clears the earlier answers instead of leaving them beside the error.
    page.locator("#document-ask").click()
    page.wait_for_function("() => !document.querySelector('#document-info').innerText.includes('Showing page')",
                           timeout=30_000)
    assert not re.search(r"\d+, \d+, \d+, \d+", page.locator("#document-answers").inner_text())
