"""Draws the Image tab's example pictures with Pillow (made here, so licence-clean).

Run from the repository root: python assets/image_examples.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = (320, 240)


def house() -> Image.Image:
    """A house with a red roof, a tree and the sun on a lawn."""
    im = Image.new("RGB", SIZE, (135, 196, 235))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 180, 320, 240], fill=(92, 160, 72))
    d.ellipse([250, 20, 300, 70], fill=(250, 210, 60))
    d.rectangle([90, 110, 210, 190], fill=(225, 205, 170), outline=(90, 70, 50), width=2)
    d.polygon([(80, 112), (150, 55), (220, 112)], fill=(180, 50, 40), outline=(90, 30, 20))
    d.rectangle([135, 145, 165, 190], fill=(110, 70, 40))
    for x in (102, 178):
        d.rectangle([x, 125, x + 22, 147], fill=(200, 230, 250), outline=(90, 70, 50), width=2)
    d.rectangle([254, 130, 266, 190], fill=(110, 75, 45))
    d.ellipse([230, 80, 290, 145], fill=(40, 120, 50))
    return im


def car() -> Image.Image:
    """A red car on a road under a grey sky."""
    im = Image.new("RGB", SIZE, (205, 210, 215))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 170, 320, 240], fill=(70, 70, 75))
    for x in range(10, 320, 60):
        d.rectangle([x, 202, x + 30, 207], fill=(240, 240, 240))
    d.rounded_rectangle([50, 120, 270, 175], radius=14, fill=(200, 30, 35))
    d.polygon([(95, 122), (125, 82), (210, 82), (240, 122)], fill=(200, 30, 35))
    d.polygon([(108, 120), (131, 90), (164, 90), (164, 120)], fill=(180, 215, 235))
    d.polygon([(172, 120), (172, 90), (205, 90), (228, 120)], fill=(180, 215, 235))
    for cx in (100, 222):
        d.ellipse([cx - 22, 153, cx + 22, 197], fill=(25, 25, 25))
        d.ellipse([cx - 9, 166, cx + 9, 184], fill=(170, 170, 170))
    d.rectangle([255, 132, 268, 142], fill=(255, 230, 120))
    return im


EXAMPLES = {"image_example_house.png": house, "image_example_car.png": car}

if __name__ == "__main__":
    for name, draw in EXAMPLES.items():
        draw().save(HERE / name, optimize=True)
        print(HERE / name)
