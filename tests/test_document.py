"""Document QA engine: OCR words where they were drawn, text-layer PDFs without OCR, OCR once, boxes."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from engine import document as docmod
from engine.document import DocumentQA, read_document, render_page, span_box
from engine.errors import InputError
from engine.ocr import PageWords, TesseractMissing, ocr_words
from engine.registry import PipelineRegistry
from engine.settings import Settings
from scripts.make_invoice import render_invoice

QUESTION = "What is the invoice number?"
ANSWER_KEYS = {"answer", "score", "page", "box"}


def _settings(**kw) -> Settings:
    return Settings.from_env(env={}, device="cpu", **kw)


@pytest.fixture(scope="module")
def invoice(tmp_path_factory):
    """The invoice drawn with Pillow: (png path, image, [(word, ink box)])."""
    image, drawn = render_invoice()
    path = tmp_path_factory.mktemp("invoice") / "invoice.png"
    image.save(path)
    return path, image, drawn


@pytest.fixture(scope="module")
def ocr_memo():
    """Real Tesseract results by page pixels, so each distinct page is OCR'd once per module."""
    return {}


@pytest.fixture
def ocr_calls(monkeypatch, ocr_memo):
    """Counts the engine's OCR calls; identical pages reuse this module's earlier real OCR result."""
    calls = []

    def counted(image, lang):
        calls.append((image.size, lang))
        key = (hashlib.sha256(image.tobytes()).hexdigest(), image.size, lang)
        if key not in ocr_memo:
            ocr_memo[key] = ocr_words(image, lang)
        return ocr_memo[key]

    monkeypatch.setattr(docmod, "ocr_words", counted)
    return calls


@pytest.fixture(scope="module")
def layoutlm_settings(tiny_model):
    return _settings(docqa_model=str(tiny_model("layoutlm_qa")))


@pytest.fixture(scope="module")
def registry(layoutlm_settings):
    return PipelineRegistry(layoutlm_settings)


@pytest.fixture
def qa(registry, layoutlm_settings):
    return DocumentQA(registry, layoutlm_settings)


def _text_pdf(path, pages, rotate=0):
    """A PDF with a real text layer: one list of (x, y, text) lines in points per page."""
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=letter)
    for lines in pages:
        if rotate:
            c.setPageRotation(rotate)
        c.setFont("Helvetica", 14)
        for x, y, text in lines:
            c.drawString(x, y, text)
        c.showPage()
    c.save()
    return path


COVER = [(72, 700, "Cover letter from Northwind Paper Company"), (72, 680, "Please find our invoice attached.")]
INVOICE_LINES = [(72, 700, "Invoice number: 12345"), (72, 680, "Date: 2026-03-14"), (72, 660, "Total: $202.80")]


@pytest.fixture(scope="module")
def text_pdf(tmp_path_factory):
    return _text_pdf(tmp_path_factory.mktemp("pdf") / "letter.pdf", [COVER, INVOICE_LINES])


@pytest.fixture(scope="module")
def scanned_pdf(tmp_path_factory, invoice):
    """Image only, as a scanner makes it: the invoice PNG drawn on a letter page, no text."""
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    path = tmp_path_factory.mktemp("pdf") / "scan.pdf"
    c = canvas.Canvas(str(path), pagesize=letter)
    c.drawImage(str(invoice[0]), 0, 0, width=letter[0], height=letter[1])
    c.showPage()
    c.save()
    return path


def _word(words: PageWords, text: str):
    return next(box for w, box in zip(words.words, words.boxes) if w == text)


def _close(a, b, tol):
    return max(abs(x - y) for x, y in zip(a, b)) <= tol


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --- words and boxes -------------------------------------------------------------------------


def test_ocr_finds_invoice_words_where_they_were_drawn(invoice, ocr_calls, qa):
    path, image, drawn = invoice
    _, words, ran = qa.page(qa.read(path), 1, "eng")
    assert ran and words.source == "OCR" and (words.width, words.height) == image.size
    found = list(zip(words.words, words.boxes))
    for text, box in drawn:  # every word is read, and its box covers the ink drawn
        matches = [b for w, b in found if w == text]
        assert matches, f"OCR missed {text!r}"
        assert max(_iou(b, box) for b in matches) > 0.5, (text, box, matches)
    for text in ("Invoice", "number:", "12345", "Date:", "2026-03-14", "$202.80", "Northwind"):
        box = next(b for w, b in drawn if w == text)
        assert _close(_word(words, text), box, 3), (text, _word(words, text), box)


def test_span_box_is_the_union_of_the_answer_words():
    boxes = [(10, 20, 50, 40), (60, 18, 90, 41), (100, 22, 130, 39), (10, 60, 40, 80)]
    assert span_box(boxes, 1, 1) == (60, 18, 90, 41)
    assert span_box(boxes, 0, 2) == (10, 18, 130, 41)
    assert span_box(boxes, 2, 3) == (10, 22, 130, 80)  # across a line break
    for bad in ((2, 1), (-1, 0), (0, 4)):
        with pytest.raises(ValueError):
            span_box(boxes, *bad)


def test_word_boxes_given_to_the_pipeline_are_scaled_to_0_1000():
    words = PageWords(("Total:", "$9"), ((0, 0, 500, 100), (250, 1300, 1000, 1300)), 1000, 1300, "OCR")
    assert words.normalized() == [("Total:", [0, 0, 500, 76]), ("$9", [250, 1000, 1000, 1000])]


def test_text_layer_pdf_words_and_boxes_without_ocr(text_pdf, ocr_calls, qa):
    doc = qa.read(text_pdf)
    assert (doc.kind, doc.pages) == ("pdf", 2)
    image, words, ran = qa.page(doc, 2, "eng")
    assert not ran and ocr_calls == [] and words.source == "text layer"
    assert words.words[:3] == ("Invoice", "number:", "12345")
    scale = image.width / 612  # letter page rendered at PDF_SCALE
    x0, y0, x1, y1 = _word(words, "Invoice")
    assert abs(x0 - 72 * scale) <= 3 and abs(y1 - (792 - 700) * scale) <= 3  # left edge, baseline
    x0, y0, x1, y1 = _word(words, "12345")  # ink inside the box, none just above it
    assert min(image.crop((x0, y0, x1, y1)).convert("L").getdata()) < 100
    assert min(image.crop((x0, y0 - 12, x1, y0 - 2)).convert("L").getdata()) > 200


def test_rotated_pdf_page_boxes_follow_the_rendering(tmp_path, ocr_calls, qa):
    # reportlab gives a rotated page a landscape media box; /Rotate 90 shows it portrait
    lines = [(72, 500, "Invoice number: 12345")]
    doc = qa.read(_text_pdf(tmp_path / "rotated.pdf", [lines], rotate=90))
    image, words, _ = qa.page(doc, 1, "eng")
    assert image.height > image.width and words.words == ("Invoice", "number:", "12345")
    x0, y0, x1, y1 = _word(words, "12345")
    assert y1 - y0 > x1 - x0  # the word runs top to bottom now
    assert min(image.crop((x0, y0, x1, y1)).convert("L").getdata()) < 100


# --- answers ---------------------------------------------------------------------------------


def test_tiny_layoutlm_answers_in_the_promised_shape(invoice, ocr_calls, qa):
    result = qa.answer(invoice[0], QUESTION, top_k=3)
    _, words, _ = qa.page(qa.read(invoice[0]), 1, "eng")
    dicts = [a.as_dict() for a in result.answers]
    assert 1 <= len(dicts) <= 3 and all(set(d) == ANSWER_KEYS for d in dicts)
    scores = [d["score"] for d in dicts]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert len({a.span for a in result.answers}) == len(result.answers)  # each word span once
    for a in result.answers:
        start, end = a.span
        assert a.page == 1 and a.answer == " ".join(words.words[start:end + 1])
        assert a.box == span_box(words.boxes, start, end) and a.as_dict()["box"] == list(a.box)
    assert result.page == 1 and result.image.size == invoice[1].size


def test_second_question_on_the_same_document_does_no_ocr(invoice, ocr_calls, qa):
    first = qa.answer(invoice[0], QUESTION)
    assert len(ocr_calls) == 1 and first.ocr_pages == 1 and first.sources == ((1, "OCR"),)
    copy = invoice[0].read_bytes()  # same content from another upload: same hash
    second = qa.answer(copy, "What is the total?", top_k=1)
    assert len(ocr_calls) == 1 and second.ocr_pages == 0 and qa.ocr_runs == 1
    assert len(second.answers) == 1


def test_word_cache_is_bounded(invoice, text_pdf, ocr_calls, registry, layoutlm_settings):
    qa = DocumentQA(registry, layoutlm_settings, cache_pages=1)
    qa.answer(invoice[0], QUESTION)
    qa.answer(text_pdf, QUESTION, page=2)  # pushes the invoice's words out
    qa.answer(invoice[0], QUESTION)
    assert len(ocr_calls) == 2 and len(qa._words) == 1


def test_pdf_page_choice_and_all_pages(text_pdf, ocr_calls, qa):
    on_two = qa.answer(text_pdf, QUESTION, page=2, top_k=3)
    assert {a.page for a in on_two.answers} == {2} and on_two.sources == ((2, "text layer"),)
    on_one = qa.answer(text_pdf, QUESTION, page=1, top_k=3)
    assert {a.page for a in on_one.answers} == {1}
    both = qa.answer(text_pdf, QUESTION, top_k=5)
    assert both.sources == ((1, "text layer"), (2, "text layer")) and ocr_calls == []
    scores = [a.score for a in both.answers]
    assert scores == sorted(scores, reverse=True)
    best = max(on_one.answers + on_two.answers, key=lambda a: a.score)
    assert (both.answers[0].answer, both.answers[0].page) == (best.answer, best.page)
    assert both.page == best.page  # the page shown is the best answer's


def test_scanned_pdf_uses_ocr(scanned_pdf, ocr_calls, qa):
    doc = qa.read(scanned_pdf)
    _, words, ran = qa.page(doc, 1, "eng")
    assert ran and len(ocr_calls) == 1 and words.source == "OCR" and "12345" in words.words
    result = qa.answer(doc, QUESTION)
    assert len(ocr_calls) == 1 and result.answers and result.sources == ((1, "OCR"),)


def test_multipage_tiff_page_choice(tmp_path, invoice, ocr_calls, qa):
    cover = Image.new("RGB", (1000, 300), "white")
    ImageDraw.Draw(cover).text((60, 100), "Delivery note 777", fill="black", font=ImageFont.load_default(size=40))
    path = tmp_path / "scan.tiff"
    cover.save(path, save_all=True, append_images=[invoice[1].copy()])
    doc = qa.read(path)
    assert (doc.kind, doc.format, doc.pages) == ("image", "TIFF", 2)
    second = qa.answer(doc, QUESTION, page=2)
    assert {a.page for a in second.answers} == {2} and second.image.size == invoice[1].size
    _, words, _ = qa.page(doc, 2, "eng")
    assert "12345" in words.words
    _, words, _ = qa.page(doc, 1, "eng")
    assert "777" in words.words and "12345" not in words.words
    assert len(ocr_calls) == 2
    every = qa.answer(doc, QUESTION, top_k=4)
    assert every.sources == ((1, "OCR"), (2, "OCR")) and len(ocr_calls) == 2
    assert every.page == every.answers[0].page


def test_pages_beyond_the_limit_are_not_read(text_pdf):
    doc = read_document(text_pdf, _settings(max_pdf_pages=1))
    assert (doc.pages, doc.total_pages) == (1, 2) and "first 1 of 2 pages" in doc.note
    with pytest.raises(InputError, match=r"Page 2 is not read: this server reads only the first 1 of this "
                                         r"document's 2 pages \(--max-pdf-pages\); choose a page from 1 to 1"):
        render_page(doc, 2, _settings(max_pdf_pages=1))


# --- what a user sees when the input is wrong ------------------------------------------------


@pytest.fixture(scope="module")
def encrypted_pdf(tmp_path_factory):
    from reportlab.lib import pdfencrypt
    from reportlab.pdfgen import canvas

    path = tmp_path_factory.mktemp("pdf") / "locked.pdf"
    c = canvas.Canvas(str(path), encrypt=pdfencrypt.StandardEncryption("secret", canPrint=0))
    c.drawString(72, 700, "Invoice number: 12345")
    c.save()
    return path


@pytest.mark.parametrize("content, message", [
    (b"just some notes, not a document", "not a document this tab can read"),
    (b"%PDF-1.7\n1 0 obj << garbage", "PDF is damaged"),
    (b"", "file is empty"),
])
def test_unreadable_files_get_a_clear_message(content, message):
    with pytest.raises(InputError, match=message) as err:
        read_document(content, _settings())
    assert "PNG, JPEG, TIFF" in str(err.value) or "empty" in message


def test_encrypted_pdf_and_other_formats_are_refused(encrypted_pdf):
    with pytest.raises(InputError, match="encrypted"):
        read_document(encrypted_pdf, _settings())
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, format="GIF")
    with pytest.raises(InputError, match="GIF images are not accepted here; upload a PNG, JPEG, TIFF"):
        read_document(gif.getvalue(), _settings())


def test_limits_on_pixels_size_and_question(invoice, qa):
    with pytest.raises(InputError, match="1000x1300 pixels; the limit is 1,000,000"):
        read_document(invoice[0], _settings(max_image_pixels=1_000_000))
    with pytest.raises(InputError, match="limit is 0.01 MB"):
        read_document(invoice[0], _settings(max_file_mb=0.01))
    with pytest.raises(InputError, match="the limit is 500"):
        qa.answer(invoice[0], "why " * 200)
    with pytest.raises(InputError, match="Type a question"):
        qa.answer(invoice[0], "   ")
    with pytest.raises(InputError, match="has 1 page"):
        qa.answer(invoice[0], QUESTION, page=3)


def test_missing_tesseract_says_how_to_install_it(monkeypatch, invoice, text_pdf, registry, layoutlm_settings):
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    qa = DocumentQA(registry, layoutlm_settings)
    with pytest.raises(TesseractMissing) as err:
        qa.answer(invoice[0], QUESTION)
    assert "apt-get install tesseract-ocr" in str(err.value) and "brew install tesseract" in str(err.value)
    assert qa.answer(text_pdf, QUESTION, page=2).answers  # a text layer needs no Tesseract


# --- Donut: answers from the image alone -----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_donut(tmp_path_factory, tiny_model):
    """A tiny Donut DocVQA model whose generation is steered to answer 'total'."""
    import torch
    from transformers import (DonutImageProcessorPil, DonutSwinConfig, GenerationConfig, MBartConfig,
                              VisionEncoderDecoderConfig, VisionEncoderDecoderModel)

    from tests.fixtures.tiny_models import _bert_tokenizer

    out = tmp_path_factory.mktemp("donut")
    torch.manual_seed(0)
    tok = _bert_tokenizer(model_max_length=64)
    tok.add_tokens(["<s_docvqa>", "<s_question>", "</s_question>", "<s_answer>", "</s_answer>"])
    tok.add_special_tokens({"eos_token": "</s>", "bos_token": "<s>"})
    enc = DonutSwinConfig(image_size=[64, 48], patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                          window_size=4)
    dec = MBartConfig(vocab_size=len(tok), d_model=16, decoder_layers=1, decoder_attention_heads=2,
                      decoder_ffn_dim=32, max_position_embeddings=64, is_decoder=True, add_cross_attention=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    config = VisionEncoderDecoderConfig(encoder=enc.to_dict(), decoder=dec.to_dict())
    config.pad_token_id, config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    config.decoder_start_token_id = tok.bos_token_id
    model = VisionEncoderDecoderModel(config)
    with torch.no_grad():
        model.decoder.lm_head.weight.zero_()  # flat logits: the sequence biases below decide
    ids = tok.convert_tokens_to_ids(["<s_answer>", "total", "</s_answer>"]) + [tok.eos_token_id]
    model.generation_config = GenerationConfig(
        max_new_tokens=4, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        decoder_start_token_id=tok.bos_token_id,
        sequence_bias=[[[a, b], 10.0] for a, b in zip(ids, ids[1:])])
    model.save_pretrained(out)
    tok.save_pretrained(out)
    DonutImageProcessorPil(size={"height": 64, "width": 48}, do_align_long_axis=False).save_pretrained(out)
    return out


def test_donut_answers_without_ocr_and_without_box(tiny_donut, invoice, ocr_calls):
    settings = _settings(docqa_model=str(tiny_donut))
    qa = DocumentQA(PipelineRegistry(settings), settings)
    result = qa.answer(invoice[0], "What is the total?")
    assert [a.as_dict() for a in result.answers] == [{"answer": "total", "score": None, "page": 1, "box": None}]
    assert ocr_calls == [] and result.ocr_pages == 0 and result.sources == ((1, "image (no OCR needed)"),)


# --- every page is checked from its header before any is decoded ----------------------------


def test_a_large_later_tiff_page_is_refused_before_any_page_is_decoded(monkeypatch):
    from PIL import ImageFile

    from tests.hostile_files import tiff_small_then_big

    data = tiff_small_then_big(12000)
    assert len(data) < 100_000
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real_load(self))
    with pytest.raises(InputError, match=r"This document: page 2 is 12000x12000 = 144,000,000 pixels; images up "
                                         r"to 40,000,000 pixels are accepted") as err:
        read_document(data, _settings())
    assert decoded == [] and "/" not in str(err.value)
    doc = read_document(data, _settings(max_pdf_pages=1))  # page 2 is not read: the first page still is
    assert doc.pages == 1 and render_page(doc, 1, _settings(max_pdf_pages=1))[0].size == (400, 200)


def test_an_icon_holding_a_large_picture_is_refused_before_it_is_opened():
    from tests.hostile_files import ico, png_bomb

    with pytest.raises(InputError, match=r"This document holds a 12000x12000 = 144,000,000 pixel picture"):
        read_document(ico(png_bomb(12000, 12000)), _settings())


def test_a_huge_pdf_page_is_rendered_within_the_pixel_limit(tmp_path):
    from reportlab.pdfgen import canvas

    path = tmp_path / "poster.pdf"
    c = canvas.Canvas(str(path), pagesize=(14400, 14400))  # the largest page PDF allows: 200 x 200 inches
    c.setFont("Helvetica", 400)
    c.drawString(720, 7200, "Invoice number: 1000")
    c.save()
    settings = _settings(max_image_pixels=1_000_000)
    image, _ = render_page(read_document(path, settings), 1, settings)
    assert image.width * image.height <= 1_000_000 and image.width == image.height
