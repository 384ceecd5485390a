"""Draw the example invoice (assets/invoice.png) with Pillow; tests reuse render_invoice().

Usage: python scripts/make_invoice.py [out.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SIZE = (1000, 1300)
# (x, y, text, font size): one text run each; words are drawn one by one so their boxes are known.
INVOICE_LAYOUT: tuple[tuple[int, int, str, int], ...] = (
    (70, 70, "Northwind Paper Company", 44),
    (70, 135, "42 Harbour Street, Bristol BS1 4RN", 24),
    (700, 70, "INVOICE", 44),
    (70, 240, "Invoice number: 12345", 30),
    (70, 290, "Date: 2026-03-14", 30),
    (70, 340, "Due date: 2026-04-13", 30),
    (560, 240, "Bill to:", 30),
    (560, 290, "Acme Widgets Ltd", 30),
    (560, 340, "7 Mill Lane, Leeds", 30),
    (70, 470, "Description", 28),
    (560, 470, "Qty", 28),
    (680, 470, "Price", 28),
    (830, 470, "Amount", 28),
    (70, 530, "Recycled paper A4", 28),
    (560, 530, "10", 28),
    (680, 530, "$12.00", 28),
    (830, 530, "$120.00", 28),
    (70, 590, "Envelopes C5", 28),
    (560, 590, "4", 28),
    (680, 590, "$8.50", 28),
    (830, 590, "$34.00", 28),
    (70, 650, "Delivery", 28),
    (560, 650, "1", 28),
    (680, 650, "$15.00", 28),
    (830, 650, "$15.00", 28),
    (560, 760, "Subtotal:", 30),
    (830, 760, "$169.00", 30),
    (560, 820, "Tax:", 30),
    (830, 820, "$33.80", 30),
    (560, 880, "Total:", 34),
    (830, 880, "$202.80", 34),
    (70, 1120, "Thank you for your business.", 26),
)


def render_invoice(layout=INVOICE_LAYOUT, size=SIZE) -> tuple[Image.Image, list[tuple[str, tuple[int, int, int, int]]]]:
    """The invoice image and, for each word drawn, its ink box in pixels (x0, y0, x1, y1), end exclusive."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    words = []
    for x, y, text, font_size in layout:
        font = ImageFont.load_default(size=font_size)
        space = draw.textlength(" ", font=font)
        for word in text.split():
            draw.text((x, y), word, fill="black", font=font)
            words.append((word, _ink_box(word, (x, y), font)))
            x += draw.textlength(word, font=font) + space
    # rules above and below the item table, as on a real invoice
    draw.line([(60, 515), (940, 515)], fill="black", width=2)
    draw.line([(60, 710), (940, 710)], fill="black", width=2)
    return image, words


def _ink_box(word: str, at: tuple[float, float], font) -> tuple[int, int, int, int]:
    """Where the word's ink lands: what an OCR engine should report as its box."""
    x0, y0, x1, y1 = (int(v) for v in ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(at, word, font=font))
    pad = 4
    patch = Image.new("L", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad))
    ImageDraw.Draw(patch).text((at[0] - x0 + pad, at[1] - y0 + pad), word, fill=255, font=font)
    left, top, right, bottom = patch.getbbox()
    return x0 - pad + left, y0 - pad + top, x0 - pad + right, y0 - pad + bottom


def main(argv: list[str]) -> None:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "assets" / "invoice.png"
    image, _ = render_invoice()
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    print(f"wrote {out} ({image.width}x{image.height})")


if __name__ == "__main__":
    main(sys.argv)
