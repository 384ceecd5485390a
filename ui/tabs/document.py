"""Document tab: ask questions of an invoice, form or PDF; the answer is boxed on its page."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr

from engine.document import MAX_TOP_K, TASK, DocumentAnswers, DocumentQA, render_page
from engine.ocr import INSTALL_TESSERACT, TesseractMissing, tesseract_languages
from engine.registry import allowed_models
from ui.common import cancellable, get_pipeline, hand_over_path, standalone, stop_check, user_errors

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
    ocr = (f"OCR ran on {result.ocr_pages} page{'s' if result.ocr_pages != 1 else ''} for this question"
           if result.ocr_pages else "no OCR was needed for this question (text layer or words already cached)")
    lines = [f"Showing page **{result.page}**. Read {where}; {ocr}."]
    if result.answers and all(a.box is None for a in result.answers):
        lines.append("This model reads the image itself and gives no word positions, so nothing is boxed.")
    if result.note:
        lines.append(result.note)
    return "  \n".join(lines)


def build(registry, settings) -> None:
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
            question = gr.Textbox(label="Question", placeholder="What is the invoice number?", lines=1,
                                  max_lines=3, elem_id="document-question")
            with gr.Row():
                page = gr.Dropdown([ALL_PAGES], value=ALL_PAGES, label="Page", allow_custom_value=True,
                                   elem_id="document-page")
                lang = gr.Dropdown(list(languages), value="eng" if "eng" in languages else languages[0],
                                   label="OCR language", elem_id="document-lang")
            with gr.Row():
                model = gr.Dropdown(list(models), value=models[0], label="Model", elem_id="document-model",
                                    allow_custom_value=settings.allow_any_model)
                top_k = gr.Slider(1, MAX_TOP_K, value=3, step=1, label="Answers (top k)", elem_id="document-top-k")
            ask = gr.Button("Answer", variant="primary", elem_id="document-ask")
            stop = gr.Button("Stop", variant="stop", elem_id="document-stop")
            info = gr.Markdown(elem_id="document-info")
        with gr.Column(scale=3):
            annotated = gr.AnnotatedImage(label="Page, answers boxed", elem_id="document-annotated")
            table = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="document-answers",
                                 label="Answers")
            with gr.Accordion("API result (JSON)", open=False):
                raw = gr.JSON(elem_id="document-json", label="answer_document")
    view = gr.State(None)
    gr.Examples([[str(EXAMPLE), "What is the invoice number?"]], inputs=[file, question],
                cache_examples=False, label="Example invoice")

    @cancellable
    @user_errors
    def answer_document(document, question_text, page_choice=ALL_PAGES, model_name=None, ocr_lang="eng",
                        k=3, progress=gr.Progress(track_tqdm=True)):
        """Answer a question about a document; returns [{answer, score, page, box}] (box in page pixels)."""
        if not document:
            raise gr.Error("Upload a document first (PNG, JPEG, TIFF or PDF).", print_exception=False)
        get_pipeline(registry, TASK, model_name or models[0], progress)  # says so while a first use loads it
        result = qa.answer(document, question_text, page=parse_page(page_choice),
                           model=model_name or models[0], lang=ocr_lang or "eng", top_k=int(k or 3),
                           should_stop=stop_check())
        if result.note:  # pages past the limit, or no text: API callers get it too
            gr.Warning(result.note)
        # Gradio keeps a session's state for an hour after it closes (API sessions too), so the
        # state carries no page image; show() renders the page again from the upload.
        return [a.as_dict() for a in result.answers], dataclasses.replace(result, image=None)

    @user_errors
    def show(result, document):
        if result is None or not document:
            return None, [], "", None
        image, _ = render_page(qa.read(document), result.page, settings)
        return annotated_page(result, image), answer_rows(result), summary(result), None

    @user_errors
    def open_document(document):
        if not document:
            return gr.Dropdown(choices=[ALL_PAGES], value=ALL_PAGES), None, [], None, ""
        doc = qa.read(document)
        image, _ = render_page(doc, 1, settings)
        pages = [ALL_PAGES] + [str(n) for n in range(1, doc.pages + 1)]
        text = f"{doc.format}, {doc.pages} page{'s' if doc.pages != 1 else ''}. " + (doc.note or "")
        return gr.Dropdown(choices=pages, value=ALL_PAGES), (image, []), [], None, text

    @user_errors
    def preview(document, page_choice):
        number = parse_page(page_choice)
        if not document or number is None:
            return gr.skip()
        image, _ = render_page(qa.read(document), number, settings)
        return (image, [])

    answering = gr.on([ask.click, question.submit], answer_document,
                      inputs=[file, question, page, model, lang, top_k], outputs=[raw, view],
                      api_name="answer_document")
    answering.success(show, inputs=[view, file], outputs=[annotated, table, info, view],
                      api_name="document_show", api_visibility="private")
    stop.click(None, cancels=[answering], api_name="document_stop", api_visibility="private")
    file.change(open_document, inputs=file, outputs=[page, annotated, table, raw, info],
                api_name="document_open", api_visibility="private")
    page.input(preview, inputs=[file, page], outputs=annotated, api_name="document_preview",
               api_visibility="private")


def demo(registry, settings) -> gr.Blocks:
    return standalone(build, registry, settings, "Document question answering")
