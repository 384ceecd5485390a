"""Document question answering: read images and PDFs, get each page's words once, answer, box the answer."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import Cancelled, InputError
from engine.ocr import Box, PageWords, ocr_words, pdf_text_words, tesseract_languages
from engine.registry import check_model_allowed
from engine.settings import Settings
from engine.vision import check_frames, open_image

TASK = "document-question-answering"
ACCEPTED = "PNG, JPEG, TIFF (multi-page too) or PDF"
IMAGE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "TIFF": "TIFF"}
# 144 dpi: small print stays legible to Tesseract while a letter page stays near 1.9 megapixels.
PDF_SCALE = 2.0
MAX_TOP_K = 10
SPAN_OVERSAMPLING = 4


@dataclass(frozen=True)
class Document:
    """A document's bytes, identity (sha256) and how many of its pages are read."""

    data: bytes = field(repr=False)
    digest: str
    kind: Literal["pdf", "image"]
    format: str
    pages: int
    total_pages: int

    @property
    def note(self) -> str | None:
        if self.total_pages > self.pages:
            return (f"Only the first {self.pages} of {self.total_pages} pages are read "
                    "(the server's --max-pdf-pages limit).")
        return None


@dataclass(frozen=True)
class Answer:
    """One answer: text, score (None for generative models such as Donut), 1-based page, pixel box."""

    answer: str
    score: float | None
    page: int
    box: Box | None
    span: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "score": self.score, "page": self.page,
                "box": list(self.box) if self.box else None}


@dataclass(frozen=True)
class DocumentAnswers:
    """The best answers over the pages asked, and the page image of the best one."""

    answers: tuple[Answer, ...]
    page: int
    image: Image.Image | None = field(repr=False, compare=False)  # None once handed to a UI state
    sources: tuple[tuple[int, str], ...]
    ocr_pages: int
    note: str | None = None


def span_box(boxes: Sequence[Sequence[int]], start: int, end: int) -> Box:
    """The box covering words start..end (inclusive): the union of their boxes."""
    if not 0 <= start <= end < len(boxes):
        raise ValueError(f"word span {start}..{end} is outside the {len(boxes)} words")
    chosen = boxes[start:end + 1]
    return (min(b[0] for b in chosen), min(b[1] for b in chosen),
            max(b[2] for b in chosen), max(b[3] for b in chosen))


def read_document(source: str | Path | bytes, settings: Settings) -> Document:
    """Check a file is a readable PNG/JPEG/TIFF/PDF within the limits; count its pages."""
    if source is None or source == "":
        raise InputError(f"No document given; upload a {ACCEPTED} file.")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"No file at {path.name}; upload a {ACCEPTED} file.")
        if path.stat().st_size > settings.max_file_mb * 2**20:
            raise InputError(f"This file is {path.stat().st_size / 2**20:.1f} MB; the limit is "
                             f"{settings.max_file_mb:g} MB.")
        data = path.read_bytes()
    else:
        data = bytes(source)
    if len(data) > settings.max_file_mb * 2**20:
        raise InputError(f"This file is {len(data) / 2**20:.1f} MB; the limit is {settings.max_file_mb:g} MB.")
    if not data:
        raise InputError(f"The file is empty; upload a {ACCEPTED} file.")
    digest = hashlib.sha256(data).hexdigest()
    if b"%PDF-" in data[:1024]:  # the header may follow up to 1 KB of junk
        with _open_pdf(data) as pdf:
            total = len(pdf)
        if total == 0:
            raise InputError(f"This PDF has no pages; upload a {ACCEPTED} file with at least one page.")
        return Document(data, digest, "pdf", "PDF", min(total, settings.max_pdf_pages), total)
    with _open_image(data, settings) as image:
        total = getattr(image, "n_frames", 1)
        fmt = IMAGE_FORMATS[image.format]
    pages = min(total, settings.max_pdf_pages) if fmt == "TIFF" else 1
    return Document(data, digest, "image", fmt, pages, total if fmt == "TIFF" else 1)


@contextlib.contextmanager
def _open_pdf(data: bytes):
    """pypdfium2's PdfDocument, with load errors turned into messages for people."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise InputError("This PDF is encrypted (password protected); remove the password "
                             f"and upload it again, or upload a {ACCEPTED} file.") from None
        raise InputError(f"This PDF is damaged and cannot be read ({exc}); upload a {ACCEPTED} "
                         "file.") from None
    try:
        yield pdf
    finally:
        pdf.close()


def _open_image(data: bytes, settings: Settings, pages: Sequence[int] | None = None) -> Image.Image:
    """The image, opened once every page in `pages` (0-based; default: all pages read) is known from its
    header to be within the pixel limit: a later page of a TIFF can be far larger than the first."""
    limit = settings.max_image_pixels
    try:
        image = open_image(io.BytesIO(data), limit, "This document", frames=0)
    except Image.DecompressionBombError:  # Pillow's own guard, from the header: nothing was decoded
        raise InputError(f"This image is too large to open safely; the limit is {limit:,} "
                         "pixels. Scale it down and upload it again.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError):
        raise InputError(f"This file is not a document this tab can read; upload a {ACCEPTED} file.") from None
    try:
        if image.format not in IMAGE_FORMATS:
            raise InputError(f"{image.format} images are not accepted here; upload a {ACCEPTED} file.")
        if image.width * image.height > limit:
            raise InputError(f"This image is {image.width}x{image.height} pixels; the limit is "
                             f"{limit:,} pixels. Scale it down and upload it again.")
        if pages is None:
            pages = range(min(getattr(image, "n_frames", 1), settings.max_pdf_pages)) if image.format == "TIFF" else [0]
        check_frames(image, limit, "This document", [p for p in pages if p])
    except BaseException:
        image.close()
        raise
    return image


def render_page(doc: Document, number: int, settings: Settings,
                with_text: bool = False) -> tuple[Image.Image, PageWords | None]:
    """Page `number` (1-based) as an RGB image, plus a PDF page's text-layer words when asked."""
    if not 1 <= number <= doc.pages:
        if number > doc.pages and doc.total_pages > doc.pages:
            raise InputError(f"Page {number} is not read: this server reads only the first {doc.pages} of this "
                             f"document's {doc.total_pages} pages (--max-pdf-pages); choose a page from 1 to "
                             f"{doc.pages}, or all pages.")
        raise InputError(f"This document has {doc.pages} page{'s' if doc.pages != 1 else ''}; choose a "
                         f"page from 1 to {doc.pages}, or all pages.")
    if doc.kind == "pdf":
        check_complexity(doc.data, number)
        with _open_pdf(doc.data) as pdf:
            page = pdf[number - 1]
            try:
                w, h = page.get_size()
                scale = min(PDF_SCALE, math.sqrt(settings.max_image_pixels / max(w * h, 1.0)))
                image = page.render(scale=scale).to_pil().convert("RGB")
                words = pdf_text_words(page, image.size) if with_text else None
            finally:
                page.close()
        return image, words
    with _open_image(doc.data, settings, pages=[number - 1]) as image:
        try:
            image.seek(number - 1)
            frame = ImageOps.exif_transpose(image).convert("RGB")
        except (OSError, EOFError, ValueError):
            raise InputError(f"Page {number} of this {doc.format} image is damaged and cannot be read.") from None
    return frame, None


# A page drawing a form that draws the next one ten times, a few levels deep, is 3 KB and takes pdfium
# minutes to load and hours to render (each use is expanded anew, and neither can be stopped midway).
# So the uses are counted first from the file's own structure, with pypdf, which expands nothing: each
# form's count is worked out once and multiplied by how often it is drawn.
MAX_PDF_FORMS = 1000  # form XObjects drawn on one page, counting each nested use


def check_complexity(data: bytes, number: int, limit: int = MAX_PDF_FORMS) -> None:
    """Refuse a PDF page that draws more than `limit` forms, nested uses counted, before pdfium sees it."""
    import re

    import pypdf
    from pypdf.errors import PdfReadError

    too_complex = InputError(f"Page {number} of this PDF is too complex to render safely (it draws more than "
                             f"{limit:,} forms, counting nested ones); upload a flattened or scanned copy.")
    uses = re.compile(rb"/([^\s/\[\]()<>{}%]+)\s+Do\b")
    counted: dict[int, int] = {}

    def resolved(obj: Any) -> Any:
        return obj.get_object() if hasattr(obj, "get_object") else obj

    def forms_drawn(content: bytes, resources: Any, depth: int) -> int:
        if depth > 32:
            raise too_complex
        xobjects = resolved(resolved(resources or {}).get("/XObject")) or {}
        total = 0
        for name in uses.findall(content):
            ref = xobjects.raw_get("/" + name.decode("latin-1")) if "/" + name.decode("latin-1") in xobjects else None
            form = resolved(ref)
            if form is None or form.get("/Subtype") != "/Form":
                continue
            key = getattr(ref, "idnum", id(form))
            if key not in counted:
                counted[key] = -1  # a form that draws itself: pdfium refuses the loop, so count it once
                counted[key] = 1 + forms_drawn(form.get_data(), form.get("/Resources"), depth + 1)
            total += max(1, counted[key])
            if total > limit:
                raise too_complex
        return total

    try:
        page = pypdf.PdfReader(io.BytesIO(data)).pages[number - 1]
        contents = page.get_contents()
        forms_drawn(contents.get_data() if contents is not None else b"", page.get("/Resources"), 0)
    except InputError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        return  # pypdf could not follow it: pdfium is the judge of whether the page can be read


def draw_boxes(image: Image.Image, marks: Sequence[tuple[Box, str]], width: int | None = None) -> Image.Image:
    """A copy of the page with each (box, label) drawn: a red frame and its label above it."""
    from PIL import ImageDraw

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    line = width or max(2, round(max(out.size) / 400))
    for box, label in marks:
        x0, y0, x1, y1 = box
        draw.rectangle((x0 - line, y0 - line, x1 + line, y1 + line), outline=(220, 30, 30), width=line)
        tx, ty = x0, max(0, y0 - line - 12)
        left, top, right, bottom = draw.textbbox((tx, ty), label)
        draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=(220, 30, 30))
        draw.text((tx, ty), label, fill=(255, 255, 255))
    return out


def _is_generative(pipe: Any) -> bool:
    """Donut-style models read the image themselves and return only answer text."""
    return getattr(pipe.model.config, "model_type", None) == "vision-encoder-decoder"


class DocumentQA:
    """Answers questions about documents; keeps each page's words so a page is OCR'd once."""

    def __init__(self, registry: Any, settings: Settings, cache_pages: int | None = None):
        self.registry = registry
        self.settings = settings
        self.cache_pages = cache_pages if cache_pages is not None else settings.ocr_cache_pages
        self._words: OrderedDict[tuple[str, int, str], PageWords] = OrderedDict()
        self._lock = threading.Lock()
        self.ocr_runs = 0  # pages OCR'd by this object; read by tests and the tab

    def read(self, source: str | Path | bytes) -> Document:
        return read_document(source, self.settings)

    def page(self, doc: Document, number: int, lang: str) -> tuple[Image.Image, PageWords, bool]:
        """Page image and words; the words come from the cache, the text layer, or OCR (last flag)."""
        key = (doc.digest, number, lang)
        with self._lock:
            cached = self._words.get(key)
            if cached is not None:
                self._words.move_to_end(key)
        if cached is not None:
            image, _ = render_page(doc, number, self.settings)
            return image, cached, False
        image, words = render_page(doc, number, self.settings, with_text=True)
        ran_ocr = words is None
        if ran_ocr:
            self.check_language(lang)
            words = ocr_words(image, lang)
            with self._lock:
                self.ocr_runs += 1
        with self._lock:
            self._words[key] = words
            while len(self._words) > self.cache_pages:
                self._words.popitem(last=False)
        return image, words, ran_ocr

    @staticmethod
    def check_language(lang: str) -> None:
        installed = tesseract_languages()
        if not lang or any(part not in installed for part in lang.split("+")):
            raise InputError(f"OCR language {lang!r} is not installed; installed: {', '.join(installed)} "
                             "(Debian packages tesseract-ocr-<lang> add more).")

    def answer(self, source: str | Path | bytes | Document, question: str, page: int | None = None,
               model: str | None = None, lang: str = "eng", top_k: int = 3,
               should_stop: Callable[[], bool] | None = None) -> DocumentAnswers:
        """The top_k answers on one page (1-based) or, with page=None, over every page read.
        should_stop() is asked before each page; once it says yes, Cancelled is raised."""
        question = (question or "").strip()
        if not question:
            raise InputError("The question is empty. Type a question about the document (up to "
                             f"{self.settings.max_question_chars} characters), e.g. 'What is the invoice number?'.")
        if len(question) > self.settings.max_question_chars:
            raise InputError(f"The question is {len(question)} characters long; the limit is "
                             f"{self.settings.max_question_chars}.")
        if not 1 <= int(top_k) <= MAX_TOP_K:
            raise InputError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}.")
        top_k = int(top_k)
        doc = source if isinstance(source, Document) else self.read(source)
        numbers = range(1, doc.pages + 1) if page is None else [int(page)]
        model = model or self.registry.default_model(TASK)
        check_model_allowed(TASK, model, self.settings)
        pipe = self.registry.get(TASK, model)
        generative = _is_generative(pipe)
        processor = getattr(pipe, "image_processor", None)
        if getattr(processor, "apply_ocr", False):
            processor.apply_ocr = False  # we always pass word_boxes; its own OCR would only repeat ours

        found: list[Answer] = []
        sources: list[tuple[int, str]] = []
        best: tuple[float, int, Image.Image] | None = None
        first_image: Image.Image | None = None
        ocr_pages = 0
        for number in numbers:
            if should_stop is not None and should_stop():
                raise Cancelled()
            if generative:
                image, _ = render_page(doc, number, self.settings)
                sources.append((number, "image (no OCR needed)"))
                raw = _as_list(pipe(image=image, question=question, top_k=top_k))
                page_answers = [Answer(str(r.get("answer") or ""), _score(r), number, None) for r in raw]
            else:
                image, words, ran_ocr = self.page(doc, number, lang)
                ocr_pages += ran_ocr
                sources.append((number, words.source))
                page_answers = []
                if words.words:
                    # Several token spans can cover the same words: ask for more, keep each word span once.
                    raw = _as_list(pipe(image=image, question=question, word_boxes=words.normalized(),
                                        top_k=top_k * SPAN_OVERSAMPLING))
                    spans: dict[tuple[int, int], Answer] = {}
                    for r in raw:
                        span = (int(r["start"]), int(r["end"]))
                        if span not in spans:
                            spans[span] = Answer(str(r["answer"]), _score(r), number,
                                                 span_box(words.boxes, *span), span)
                    page_answers = list(spans.values())[:top_k]
            first_image = first_image or image
            found += page_answers
            if page_answers:
                top = max(_rank(a) for a in page_answers)
                if best is None or top > best[0]:
                    best = (top, number, image)
        found.sort(key=_rank, reverse=True)
        shown, image = (best[1], best[2]) if best else (numbers[0], first_image)
        note = doc.note
        if not found:
            note = " ".join(filter(None, [note, "No text was found on the page(s) searched, so there is "
                                                "nothing to answer from."]))
        return DocumentAnswers(tuple(found[:top_k]), shown, image, tuple(sources), ocr_pages, note)


def _as_list(out: Any) -> list[dict[str, Any]]:
    return [out] if isinstance(out, dict) else list(out or [])


def _score(raw: dict[str, Any]) -> float | None:
    return None if raw.get("score") is None else round(float(raw["score"]), 4)


def _rank(answer: Answer) -> float:
    # Generative answers carry no score: they keep page order, after any scored ones.
    return answer.score if answer.score is not None else -1.0
