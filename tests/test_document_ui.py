"""Document tab: the /answer_document API as gradio_client sees it, and what the tab shows."""

from __future__ import annotations

import dataclasses
import gc

import pytest
from PIL import Image

from engine.document import Answer, DocumentAnswers
from engine.registry import PipelineRegistry
from ui.tabs import document as tab

INVOICE = tab.EXAMPLE


@pytest.fixture
def app_url(tiny_model, make_settings, serve):
    settings = make_settings(docqa_model=str(tiny_model("layoutlm_qa")))
    return serve(tab.demo(PipelineRegistry(settings), settings), settings)


def test_api_takes_a_file_and_a_question_and_returns_answer_dicts(app_url, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    result = client.predict(handle_file(str(INVOICE)), "What is the invoice number?", api_name="/answer_document")
    assert isinstance(result, list) and 1 <= len(result) <= 3
    width, height = Image.open(INVOICE).size
    for item in result:
        assert set(item) == {"answer", "score", "page", "box"} and item["page"] == 1
        assert isinstance(item["answer"], str) and item["answer"] and 0 <= item["score"] <= 1
        x0, y0, x1, y1 = item["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    again = client.predict(handle_file(str(INVOICE)), "What is the invoice number?", "1", api_name="/answer_document")
    assert again == result  # same document and question, read from the word cache
    gc.collect()  # the session's state (kept an hour after it closes) holds no page image
    assert not [o for o in gc.get_objects() if type(o) is DocumentAnswers and o.image is not None]

    notes = tmp_path / "notes.pdf"
    notes.write_text("not really a PDF")
    with pytest.raises(AppError, match="not a document this tab can read; upload a PNG, JPEG, TIFF"):
        client.predict(handle_file(str(notes)), "What is the total?", api_name="/answer_document")


def test_tab_says_how_to_install_tesseract_when_it_is_missing(monkeypatch, make_settings):
    import gradio as gr
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    settings = make_settings()
    blocks = tab.demo(PipelineRegistry(settings), settings).blocks.values()
    notice = next(b for b in blocks if getattr(b, "elem_id", None) == "document-tesseract-missing")
    assert isinstance(notice, gr.Markdown)
    assert "apt-get install tesseract-ocr" in notice.value and "brew install tesseract" in notice.value


def _result(answers, page=2):
    return DocumentAnswers(tuple(answers), page, Image.new("RGB", (100, 100)), ((1, "OCR"), (2, "text layer")), 0)


def test_only_answers_on_the_shown_page_are_boxed():
    result = _result([Answer("12345", 0.9, 2, (10, 10, 40, 20)), Answer("777", 0.5, 1, (5, 5, 9, 9)),
                      Answer("2026", 0.1, 2, (50, 50, 90, 60))])
    image, boxes = tab.annotated_page(result)
    assert image is result.image and boxes == [((10, 10, 40, 20), "1. 12345"), ((50, 50, 90, 60), "3. 2026")]
    assert tab.answer_rows(result)[0] == [1, "12345", "0.9000", 2, "10, 10, 40, 20"]
    # Page 1's OCR words were kept from before: the summary says so and does not contradict itself.
    text = tab.summary(result)
    assert "Showing page **2**" in text and "page 1 (OCR)" in text and "kept from an earlier question" in text
    assert "no OCR was needed" not in text


def test_the_summary_says_what_ocr_ran_for_this_question():
    ran = dataclasses.replace(_result([Answer("1", 0.9, 1, (1, 1, 5, 5))]), ocr_pages=1)
    assert "OCR ran on 1 page for this question, the others' OCR words were kept from before" not in tab.summary(ran)
    assert "OCR ran on 1 page for this question." in tab.summary(ran)
    layer = dataclasses.replace(ran, sources=((1, "text layer"),), ocr_pages=0)
    assert tab.summary(layer).endswith("Words from page 1 (text layer); no OCR was needed.")


def test_answers_on_other_pages_are_shown_boxed_on_their_own_pages(tmp_path):
    from PIL import Image

    from engine.document import read_document
    from engine.settings import Settings

    pages = [Image.new("RGB", (200, 100), "white") for _ in range(3)]
    path = tmp_path / "three.tiff"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    result = _result([Answer("a", 0.9, 2, (10, 10, 40, 20)), Answer("b", 0.5, 3, (50, 50, 90, 60)),
                      Answer("c", 0.4, 2, (100, 10, 150, 30))], page=2)
    shown = tab.other_pages(result, read_document(str(path), Settings()), Settings())
    assert [caption for _, caption in shown] == ["Page 3: answer 2"]
    (image, _), = shown
    assert image.getpixel((70, 48)) != (255, 255, 255)  # the frame around answer 2's box, on page 3
    assert image.getpixel((70, 55)) == (255, 255, 255)  # and the inside left clear


def test_answers_without_positions_say_why_nothing_is_boxed():
    result = _result([Answer("total", None, 2, None)])
    assert tab.annotated_page(result)[1] == []
    assert tab.answer_rows(result) == [[1, "total", "n/a", 2, "none"]]
    assert "gives no word positions" in tab.summary(result)


@pytest.mark.parametrize("choice, page", [("All pages", None), (None, None), ("all", None), ("2", 2), (3, 3)])
def test_page_choice(choice, page):
    assert tab.parse_page(choice) == page
