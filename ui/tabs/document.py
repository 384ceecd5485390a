"""Document tab: ask questions of an invoice, form or PDF; the answer is boxed on its page."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr

from engine.document import MAX_TOP_K, TASK, DocumentAnswers, DocumentQA, draw_boxes, render_page
from engine.errors import StudioError
from engine.ocr import INSTALL_TESSERACT, TesseractMissing, tesseract_languages
from engine.registry import allowed_models
from engine.urls import URLFetcher
from ui.common import (cancellable, get_pipeline, hand_over_path, open_choices, standalone, stop_check, upload_or_url,
                       url_box, user_errors)
from ui.zerogpu import MANY_ITEMS_SECONDS, gpu

ALL_PAGES = "All pages"
FILE_TYPES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pdf"]
EXAMPLE = Path(__file__).resolve().parents[2] / "assets" / "invoice.png"
COLUMNS = ["#", "Answer", "Score", "Page", "Box (x0, y0, x1, y1)"]


def parse_page(page: str | int | float | None) -> int | None:
    """'All pages' (or nothing) -> None; '2' -> 2."""
    if page is None or str(page).strip().lower() in ("", "all", ALL_PAGES.lower()):
        return None
    try:
        return int(float(page))
    except ValueError:
        raise gr.Error(f"Page must be a page number or {ALL_PAGES!r}, not {page!r}.", print_exception=False) from None


def answer_rows(result: DocumentAnswers) -> list[list]:
    return [[i, a.answer, "n/a" if a.score is None else f"{a.score:.4f}", a.page,
             ", ".join(map(str, a.box)) if a.box else "none"] for i, a in enumerate(result.answers, 1)]


def annotated_page(result: DocumentAnswers, image=None):
    """The shown page (result.image unless given) with a box, labelled by rank and text, around each answer on it."""
    boxes = [(a.box, f"{i}. {a.answer}"[:60]) for i, a in enumerate(result.answers, 1)
             if a.box and a.page == result.page]
    return (result.image if image is None else image), boxes


def summary(result: DocumentAnswers) -> str:
    where = ", ".join(f"page {n} ({src})" for n, src in result.sources)
    read_by_ocr = sum(src == "OCR" for _, src in result.sources)
    if result.ocr_pages:
        ocr = f"; OCR ran on {result.ocr_pages} page{'s' if result.ocr_pages != 1 else ''} for this question"
        if read_by_ocr > result.ocr_pages:
            ocr += ", the others' OCR words were kept from before"
    elif read_by_ocr:
        ocr = "; those OCR words were kept from an earlier question, so no OCR ran for this one"
    else:
        ocr = "; no OCR was needed"
    lines = [f"Showing page **{result.page}**. Words from {where}{ocr}."]
    if result.answers and all(a.box is None for a in result.answers):
        lines.append("This model reads the image itself and gives no word positions, so nothing is boxed.")
    if result.note:
        lines.append(result.note)
    return "  \n".join(lines)


def other_pages(result: DocumentAnswers, doc, settings) -> list[tuple]:
    """Each other page holding an answer, its answers boxed and numbered as in the table: (image, caption)."""
    pages = sorted({a.page for a in result.answers if a.box and a.page != result.page})
    shown = []
    for number in pages:
        image, _ = render_page(doc, number, settings)
        marks = [(a.box, f"{i}. {a.answer}"[:60]) for i, a in enumerate(result.answers, 1) if a.box and a.page == number]
        shown.append((draw_boxes(image, marks), f"Page {number}: answer{'s' if len(marks) > 1 else ''} "
                      + ", ".join(m[1].split(".")[0] for m in marks)))
    return shown


def build(registry, settings, fetcher: URLFetcher | None = None) -> None:
    fetcher = fetcher or URLFetcher.from_settings(settings)
    qa = DocumentQA(registry, settings)
    models = allowed_models(TASK, settings)
    try:
        languages, missing = tesseract_languages() or ("eng",), False
    except TesseractMissing:
        languages, missing = ("eng",), True
    gr.Markdown("Drop an invoice, form or PDF and ask a question about it. Pages with a text layer are read "
                "directly; other pages are read once with Tesseract OCR and their words are kept, so more "
                "questions about the same document are quick.")
    if missing:
        gr.Markdown(f"**Tesseract OCR is not installed on this server.** PDFs with a text layer still work; "
                    f"images and scanned PDFs need it. {INSTALL_TESSERACT}", elem_id="document-tesseract-missing")
    with gr.Row():
        with gr.Column(scale=2):
            file = hand_over_path(gr.File(label="Document: PNG, JPEG, TIFF or PDF", file_types=FILE_TYPES,
                                          type="filepath", elem_id="document-input"))
            url = url_box(fetcher, "document-url", "https://example.com/invoice.pdf")
            question = gr.Textbox(label="Question", placeholder="e.g. What is the invoice number?", lines=1,
                                  max_lines=3, elem_id="document-question")
            with gr.Row():
                page = open_choices(gr.Dropdown([ALL_PAGES], value=ALL_PAGES, label="Page", allow_custom_value=True,
                                                elem_id="document-page"))
                lang = gr.Dropdown(list(languages), value="eng" if "eng" in languages else languages[0],
                                   label="OCR language", elem_id="document-lang")
            # The model on a row of its own: beside the slider its name was cut ('.../layou').
            model = open_choices(gr.Dropdown(list(models), value=models[0], label="Model", elem_id="document-model",
                                             allow_custom_value=settings.allow_any_model))
            with gr.Row():
                top_k = gr.Slider(1, MAX_TOP_K, value=3, step=1, precision=0, label="Answers (top k)",
                                  elem_id="document-top-k")
            ask = gr.Button("Answer", variant="primary", elem_id="document-ask")
            stop = gr.Button("Stop", variant="stop", elem_id="document-stop")
            info = gr.Markdown(elem_id="document-info")
        with gr.Column(scale=3):
            annotated = gr.AnnotatedImage(label="Page, answers boxed", elem_id="document-annotated")
            others = gr.Gallery(label="Answers on other pages", visible=False, columns=3, height="auto",
                                elem_id="document-other-pages")
            table = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="document-answers",
                                 label="Answers")
            with gr.Accordion("API result (JSON)", open=False):
                raw = gr.JSON(elem_id="document-json", label="Answers")
    view = gr.State(None)
    gr.Examples([[str(EXAMPLE), "What is the invoice number?"]], inputs=[file, question],
                cache_examples=False, label="Example invoice")

    @cancellable
    @gpu(duration=MANY_ITEMS_SECONDS)
    @user_errors
    def answer_document(document: str | None = None, question: str = "", page: str = ALL_PAGES, model: str | None = None,
                        lang: str = "eng", top_k: int = 3, url: str | None = None,
                        progress=gr.Progress(track_tqdm=True)):
        """Answer a question about a document (an invoice, a form, a PDF); each answer is boxed on its page.

        Args:
            document: a PNG, JPEG, TIFF (multi-page too) or PDF file; leave empty when giving url.
            question: the question, e.g. 'What is the invoice number?'.
            page: 'All pages', or a page number such as '2'.
            model: the document question-answering model, one of those the server offers.
            lang: the Tesseract language used to read pages without a text layer, e.g. 'eng'.
            top_k: how many answers to return, from 1 to 10.
            url: a public http(s) URL of the document instead of document; only on servers started with --allow-urls.

        Returns:
            answers: [{answer, score, page, box}], best first; box is (x0, y0, x1, y1) in page pixels, or null.
        """
        if not document and not (url or "").strip():
            raise gr.Error("Upload a document first (PNG, JPEG, TIFF or PDF)"
                           + (" or give its URL." if fetcher.enabled else "."), print_exception=False)
        page_number = parse_page(page)
        # A fetched document stays in Gradio's cache like an upload: show() renders its page from it.
        get_pipeline(registry, TASK, model or models[0], progress)  # says so while a first use loads it
        with upload_or_url(document, url, fetcher, file.GRADIO_CACHE, keep=True) as document:
            result = qa.answer(document, question, page=page_number, model=model or models[0],
                               lang=lang or "eng", top_k=int(top_k or 3), should_stop=stop_check())
        if result.note:  # pages past the limit, or no text: API callers get it too
            gr.Warning(result.note)
        # Gradio keeps a session's state for an hour after it closes (API sessions too), so the
        # state carries no page image, only the document's path; show() renders the page again from it.
        return [a.as_dict() for a in result.answers], (dataclasses.replace(result, image=None), document)

    @user_errors
    def show(view):
        result, document = view or (None, None)
        if result is None or not document:
            return None, [], "", gr.Gallery(visible=False), None
        doc = qa.read(document)
        image, _ = render_page(doc, result.page, settings)
        rest = other_pages(result, doc, settings)
        return (annotated_page(result, image), answer_rows(result), summary(result),
                gr.Gallery(value=rest or None, visible=bool(rest)), None)

    def forget_answers():
        # A failed question leaves no answers of an earlier one beside its error.
        return [], "", gr.Gallery(value=None, visible=False)

    @user_errors
    def open_document(document):
        hidden = gr.Gallery(value=None, visible=False)
        if not document:
            return gr.Dropdown(choices=[ALL_PAGES], value=ALL_PAGES), None, [], None, "", hidden
        doc = qa.read(document)
        image, _ = render_page(doc, 1, settings)
        pages = [ALL_PAGES] + [str(n) for n in range(1, doc.pages + 1)]
        text = f"{doc.format}, {doc.pages} page{'s' if doc.pages != 1 else ''}. " + (doc.note or "")
        return gr.Dropdown(choices=pages, value=ALL_PAGES), (image, []), [], None, text, hidden

    def preview(document, page_choice):
        try:
            number = parse_page(page_choice)
            if not document or number is None:
                return gr.skip()
            image, _ = render_page(qa.read(document), number, settings)
        except (gr.Error, StudioError) as exc:  # the page shown stays; the message says why
            gr.Warning(str(exc))
            return gr.skip()
        return (image, [])

    answered = gr.on([ask.click, question.submit], answer_document,
          inputs=[file, question, page, model, lang, top_k, url], outputs=[raw, view],
          api_name="answer_document")
    answered.success(show, inputs=view, outputs=[annotated, table, info, others, view],
                     api_name="document_show", api_visibility="private")
    stop.click(None, cancels=[answered], api_name="document_stop", api_visibility="private")
    answered.failure(forget_answers, outputs=[table, info, others], api_name=False, queue=False)
    file.change(open_document, inputs=file, outputs=[page, annotated, table, raw, info, others],
                api_name="document_open", api_visibility="private")
    page.input(preview, inputs=[file, page], outputs=annotated, api_name="document_preview",
               api_visibility="private")


def demo(registry, settings, fetcher: URLFetcher | None = None) -> gr.Blocks:
    return standalone(build, registry, settings, "Document question answering", fetcher=fetcher)
