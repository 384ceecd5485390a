"""engine.vision: every Pillow image mode reaches the model as upright 8-bit RGB; ranked predictions."""

import dataclasses
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import InputError
from engine.vision import Prediction, check_frames, classify_images, embedded_sizes, load_image
from tests import hostile_files as hostile
from tests.fixtures.tiny_models import VIT_LABELS

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


@pytest.fixture(scope="module")
def vit(tiny_model):
    from transformers import pipeline

    return pipeline("image-classification", model=str(tiny_model("vit_classifier")), device="cpu",
                    dtype=torch.float32)


def saved(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size but holds no pixel data at all."""
    body = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + body
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(body)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + struct.pack(">I", 0) + b"IEND"
            + struct.pack(">I", zlib.crc32(b"IEND")))


def test_predictions_are_ranked_top_k_per_image_in_one_batch(vit):
    images = [Image.new("RGB", (40, 30), colour) for colour in (RED, BLUE, WHITE)]
    ranked = classify_images(vit, images, top_k=2)
    assert [len(r) for r in ranked] == [2, 2, 2]
    for predictions in ranked:
        assert all(isinstance(p, Prediction) and p.label in VIT_LABELS for p in predictions)
        assert predictions[0].score >= predictions[1].score
    # each image in the batch gets the answer it gets alone
    for image, predictions in zip(images, ranked):
        (alone,) = classify_images(vit, [image], top_k=2)
        assert [p.label for p in alone] == [p.label for p in predictions]
        assert [p.score for p in alone] == pytest.approx([p.score for p in predictions], abs=1e-5)
    assert len(classify_images(vit, images[:1], top_k=50)[0]) == len(VIT_LABELS)  # capped at the model's labels
    with pytest.raises(dataclasses.FrozenInstanceError):
        ranked[0][0].label = "x"


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (4, 2), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = load_image(saved(rgba, "PNG"))
    assert out.mode == "RGB" and out.getpixel((1, 1)) == WHITE and out.getpixel((0, 0)) == BLUE

    la = Image.new("LA", (2, 2), (0, 0))
    assert load_image(saved(la, "PNG")).getpixel((0, 0)) == WHITE

    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    out = load_image(saved(palette, "PNG", transparency=0))
    assert out.getpixel((0, 0)) == WHITE and out.getpixel((1, 1)) == RED


def test_cmyk_palette_and_one_bit_become_rgb():
    assert load_image(saved(Image.new("CMYK", (3, 3), (0, 255, 255, 0)), "TIFF")).getpixel((1, 1)) == RED
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    assert load_image(saved(palette, "GIF")).getpixel((0, 0)) == BLUE
    assert load_image(saved(Image.new("1", (2, 2), 1), "PNG")).getpixel((0, 0)) == WHITE


def test_16_bit_and_float_are_scaled_not_clipped():
    wide = Image.fromarray(np.array([[0, 32896], [40000, 65535]], dtype=np.uint16))
    assert wide.mode == "I;16"
    out = load_image(saved(wide, "PNG"))
    assert [out.getpixel(xy)[0] for xy in ((0, 0), (1, 0), (0, 1), (1, 1))] == [0, 128, 156, 255]
    floats = Image.fromarray(np.array([[0.0, 0.5]], dtype=np.float32))
    assert [p[0] for p in load_image(floats).getdata()] == [0, 128]


def test_exif_rotated_photo_reaches_the_model_upright(tmp_path):
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 20, 20))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    path = tmp_path / "photo.jpg"
    stored.save(path, "JPEG", exif=exif, quality=95)

    seen = []

    def spy(images, **kwargs):
        seen.extend(images)
        return [[{"label": "cat", "score": 1.0}] for _ in images]

    classify_images(spy, [load_image(str(path))], top_k=1)
    (image,) = seen
    assert image.size == (20, 40)  # portrait, as the camera held it
    top, bottom = np.asarray(image)[5, 10], np.asarray(image)[35, 10]
    assert top[0] > 200 and top[2] < 60  # the stored left edge is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_animation_gives_its_first_frame():
    frames = [Image.new("RGB", (4, 4), c) for c in (RED, BLUE)]
    data = saved(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert load_image(data).getpixel((0, 0)) == RED


def test_oversized_images_are_refused_from_the_header_before_decoding():
    with pytest.raises(InputError, match=r"8000x8000 = 64,000,000 pixels; images up to 40,000,000"):
        load_image(png_claiming(8000, 8000))  # no pixel data: decoding it would fail differently
    with pytest.raises(InputError, match="too large to decode safely"):
        load_image(png_claiming(100_000, 100_000), max_pixels=10**11)  # Pillow's own bomb guard
    with pytest.raises(InputError, match="100x100 = 10,000 pixels; images up to 5,000"):
        load_image(saved(Image.new("RGB", (100, 100)), "PNG"), max_pixels=5000)


def test_non_images_get_a_clear_error(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    with pytest.raises(InputError, match=r"notes.txt is not an image Pillow can read; accepted: PNG, JPEG"):
        load_image(str(notes))
    with pytest.raises(InputError, match="damaged or truncated"):
        load_image(saved(Image.new("RGB", (64, 64), RED), "PNG")[:60])
    with pytest.raises(InputError, match="no such file"):
        load_image(str(tmp_path / "missing.png"))


# --- pictures whose real size hides behind another header -----------------------------------

@pytest.mark.parametrize("make, says", [
    (lambda: hostile.ico(hostile.png_bomb(12000, 12000)), r"holds a 12000x12000 = 144,000,000 pixel picture "
                                                          r"\(its icon directory says 256x256\)"),
    (lambda: hostile.ico(hostile.dib_header(9000, 9000), said=32), r"holds a 9000x9000 = 81,000,000 pixel "
                                                                    r"picture \(its icon directory says 32x32\)"),
    (lambda: hostile.icns(hostile.png_bomb(12000, 12000)), r"holds a 12000x12000 = 144,000,000 pixel picture "
                                                           r"\(its icon directory says 512x512\)"),
    (lambda: hostile.gif_with_big_first_frame(12000, 12000), r"is 12000x12000 = 144,000,000 pixels"),
], ids=["ico holding a big PNG", "ico holding a big BMP", "icns holding a big PNG", "gif frame past its screen"])
def test_icons_and_frames_larger_than_their_header_are_refused_before_decoding(make, says, monkeypatch):
    decoded = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self, *a: decoded.append(self.size) or real_load(self, *a))
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self, *a: decoded.append(self.size) or real_load(self))
    with pytest.raises(InputError, match=says + r"; images up to 40,000,000 pixels are accepted") as err:
        load_image(make())
    assert "/" not in str(err.value)
    assert not [size for size in decoded if size[0] * size[1] > 40_000_000]


def test_icons_within_the_limit_still_load():
    icon = saved(Image.new("RGBA", (64, 64), RED + (255,)), "ICO", sizes=[(64, 64), (32, 32)])
    assert sorted(w for w, _, _ in embedded_sizes(io.BytesIO(icon))) == [32, 64]
    image = load_image(icon)
    assert image.size == (64, 64) and image.getpixel((0, 0)) == RED
    assert embedded_sizes(io.BytesIO(saved(Image.new("RGB", (8, 8)), "PNG"))) == []


def test_check_frames_reads_each_tiff_page_from_its_header():
    buf = io.BytesIO()
    Image.new("L", (50, 50)).save(buf, "TIFF", save_all=True, append_images=[Image.new("L", (300, 200))])
    with Image.open(buf) as image:
        check_frames(image, 50 * 50, "scan.tif")  # the first page only: within the limit
        with pytest.raises(InputError, match=r"scan.tif: page 2 is 300x200 = 60,000 pixels; images up to 2,500"):
            check_frames(image, 50 * 50, "scan.tif", range(2))
        assert image.tell() == 0 and image.size == (50, 50)


def test_formats_that_open_other_images_or_programs_are_not_opened():
    iptc = hostile.iptc_holding_jpeg(side=1000, said=16)  # Pillow decodes the 1000x1000 JPEG as "16x16"
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n"  # Pillow would run Ghostscript
    for data, fmt in ((iptc, "IPTC"), (eps, "EPS")):
        assert Image.open(io.BytesIO(data)).format == fmt
        with pytest.raises(InputError, match="is not an image Pillow can read; accepted: PNG, JPEG"):
            load_image(data)
