"""Words and their pixel boxes on a page: from a PDF's text layer (pypdfium2) or from Tesseract."""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from engine.errors import InputError, StudioError

Box = tuple[int, int, int, int]

INSTALL_TESSERACT = ("Install it with `sudo apt-get install tesseract-ocr` (Debian/Ubuntu; more languages: "
                     "tesseract-ocr-deu, tesseract-ocr-fra, ...) or `brew install tesseract` (macOS), "
                     "then restart the app.")


class TesseractMissing(StudioError, RuntimeError):
    """The tesseract program is not installed, so pages without a text layer cannot be read."""

    def __init__(self) -> None:
        super().__init__("This page has no text layer, so it must be read with OCR, but the `tesseract` "
                         "program is not installed on the server. " + INSTALL_TESSERACT)


@dataclass(frozen=True)
class PageWords:
    """The words of one page and their boxes in pixels of the page image (x0, y0, x1, y1)."""

    words: tuple[str, ...]
    boxes: tuple[Box, ...]
    width: int
    height: int
    source: Literal["text layer", "OCR"]

    def normalized(self) -> list[tuple[str, list[int]]]:
        """(word, box scaled to 0-1000) pairs: the word_boxes a document-QA pipeline takes."""
        w, h = self.width, self.height
        return [(word, [_clamp(1000 * x0 // w), _clamp(1000 * y0 // h), _clamp(1000 * x1 // w),
                        _clamp(1000 * y1 // h)]) for word, (x0, y0, x1, y1) in zip(self.words, self.boxes)]


def _clamp(v: int) -> int:
    return max(0, min(1000, int(v)))


def tesseract_languages() -> tuple[str, ...]:
    """Installed Tesseract languages (without 'osd', which is not a language); raises TesseractMissing."""
    import pytesseract

    try:
        langs = pytesseract.get_languages(config="")
    except pytesseract.TesseractNotFoundError:
        raise TesseractMissing() from None
    return tuple(sorted(lang for lang in langs if lang != "osd"))


def ocr_words(image: Image.Image, lang: str) -> PageWords:
    """Tesseract's words and boxes for a page image."""
    import pytesseract

    try:
        data = pytesseract.image_to_data(image, lang=lang, output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError:
        raise TesseractMissing() from None
    except pytesseract.TesseractError as exc:
        raise InputError(f"Tesseract could not read this page ({str(exc.message).strip()[:200]}); "
                         "try another OCR language or a clearer scan.") from None
    words, boxes = [], []
    for text, x, y, w, h in zip(data["text"], data["left"], data["top"], data["width"], data["height"]):
        text = text.strip()
        if text:
            words.append(text)
            boxes.append((int(x), int(y), int(x + w), int(y + h)))
    return PageWords(tuple(words), tuple(boxes), image.width, image.height, "OCR")


def pdf_text_words(page, size: tuple[int, int]) -> PageWords | None:
    """Words of a pypdfium2 page's text layer with boxes in pixels of its rendering at `size`; None if no text.

    PDFium has no word detection (its docs say so), so chars are joined into words here: a word ends
    at whitespace, which PDFium also generates between runs it sees as separate.
    """
    import pypdfium2.raw as pdfium_c

    width, height = size
    rotation = page.get_rotation()
    textpage = page.get_textpage()
    try:
        words: list[str] = []
        boxes: list[Box] = []
        chars: list[str] = []
        box: list[int] | None = None
        dx, dy = ctypes.c_int(), ctypes.c_int()

        def to_pixels(x: float, y: float) -> tuple[int, int]:
            # Maps page space to the rendered bitmap, honouring the crop box and /Rotate like render() does.
            pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, width, height, 0, x, y, dx, dy)
            return dx.value, dy.value

        def flush() -> None:
            nonlocal box
            if chars and box is not None:
                words.append("".join(chars))
                boxes.append((max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3])))
            chars.clear()
            box = None

        for i in range(textpage.count_chars()):
            char = chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i) or 32)
            if char.isspace() or char == "\x00" or char == "\ufffe":
                flush()
                continue
            left, bottom, right, top = textpage.get_charbox(i)
            xa, ya = to_pixels(left, top)
            xb, yb = to_pixels(right, bottom)
            cb = [min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)]
            # A char that leaves the word's line starts a new word even without a space; on the
            # rendered page a line runs across, or down when text or page is turned a quarter.
            turned = round((math.degrees(pdfium_c.FPDFText_GetCharAngle(textpage.raw, i)) + rotation) / 90) % 2
            lo, hi = (0, 2) if turned else (1, 3)
            if box is not None and (cb[lo] >= box[hi] or cb[hi] <= box[lo]):
                flush()
            chars.append(char)
            box = cb if box is None else [min(box[0], cb[0]), min(box[1], cb[1]),
                                          max(box[2], cb[2]), max(box[3], cb[3])]
        flush()
    finally:
        textpage.close()
    if not words:
        return None
    return PageWords(tuple(words), tuple(boxes), width, height, "text layer")
