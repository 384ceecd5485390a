"""Image classification: any Pillow-readable image in, ranked predictions out."""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Sequence, Union

import numpy as np
from PIL import ExifTags, IcnsImagePlugin, Image, UnidentifiedImageError

from engine.batching import MicroBatcher
from engine.errors import InputError
from engine.settings import Settings

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]

ACCEPTED = "PNG, JPEG, WebP, GIF (first frame), BMP, TIFF and other formats Pillow reads"
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_GREY_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "F"}  # what Image.reduce takes
LARGEST_SIDE = 3072  # larger images are reduced to this (every model here reads far fewer pixels)
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
# Pillow formats whose readers open further images or programs: IPTC decodes an embedded image of any
# size, EPS runs Ghostscript, the rest are stubs or Windows-only. Everything else Pillow reads is opened.
_NOT_OPENED = {"IPTC", "EPS", "WMF", "FITS", "GRIB", "BUFR", "HDF5", "MPEG"}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ICNS_SIZES = {kind: f"{w * scale}x{h * scale}" for (w, h, scale), kinds in IcnsImagePlugin.IcnsFile.SIZES.items()
               for kind, _ in kinds}


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


def load_image(source: ImageSource, max_pixels: int = Settings.max_image_pixels) -> Image.Image:
    """An upright 8-bit RGB image; transparency on white; the first frame of an animation."""
    if isinstance(source, Image.Image):
        check_frames(source, max_pixels, "image")
        return _normalise(source, max_pixels, name="image")
    name = Path(source).name if isinstance(source, (str, os.PathLike)) else "upload"
    empty = f"{name} is an empty file (0 bytes); upload an image ({ACCEPTED})."
    if isinstance(source, bytes):
        if not source:
            raise InputError(empty)
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)) and Path(source).is_file() and Path(source).stat().st_size == 0:
        raise InputError(empty)
    try:
        with open_image(source, max_pixels, name) as image:
            return _normalise(image, max_pixels, name)
    except (FileNotFoundError, IsADirectoryError):
        raise InputError(f"{name}: no such file; upload an image ({ACCEPTED}).") from None
    except UnidentifiedImageError:
        raise InputError(f"{name} is not an image Pillow can read; accepted: {ACCEPTED}.") from None
    except Image.DecompressionBombError:
        raise InputError(f"{name} is too large to decode safely; images up to {max_pixels:,} pixels "
                         "are accepted.") from None
    except (OSError, SyntaxError, EOFError) as exc:
        raise InputError(f"{name} could not be decoded ({exc}); the file may be damaged or truncated. "
                         f"Accepted: {ACCEPTED}.") from None


def open_image(source: str | os.PathLike | BinaryIO, max_pixels: int, name: str, frames: int = 1,
               formats: Iterable[str] | None = None) -> Image.Image:
    """Image.open, after checking from headers alone that no picture it holds exceeds max_pixels.

    Checked before Image.open: pictures embedded in ICO/CUR/ICNS icons, whose real size can differ
    from the icon's directory (Pillow decodes an ICO's largest picture while opening it). Checked
    after: the first `frames` frames (pages of a TIFF), each from its own header. Pillow's own errors
    (UnidentifiedImageError, DecompressionBombError, OSError) pass through to the caller.
    """
    Image.init()
    allowed = [f for f in (formats or Image.OPEN) if f not in _NOT_OPENED]
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fp:
            embedded = embedded_sizes(fp)
    else:
        embedded = embedded_sizes(source)
    for width, height, said in embedded:
        if width * height > max_pixels:
            raise InputError(f"{name} holds a {width}x{height} = {width * height:,} pixel picture "
                             f"(its icon directory says {said}); images up to {max_pixels:,} pixels are "
                             "accepted. Resize it and try again.")
    image = Image.open(source, formats=allowed)
    try:
        check_frames(image, max_pixels, name, range(frames))
    except BaseException:
        image.close()
        raise
    return image


def check_frames(image: Image.Image, max_pixels: int, name: str, frames: Iterable[int] = (0,)) -> None:
    """InputError if any of these frames is over max_pixels, read from each frame's header (no pixels decoded)."""
    first = image.tell()
    try:
        for index in frames:
            if index:
                try:
                    image.seek(index)  # TIFF, MPO, DCX: reads that frame's header only
                except (EOFError, OSError, SyntaxError, ValueError):
                    break  # a damaged or missing frame: it cannot be decoded either, and says so when asked
            width, height = image.size
            if width * height > max_pixels:
                where = f"{name}: page {index + 1} is" if index else f"{name} is"
                raise InputError(f"{where} {width}x{height} = {width * height:,} pixels; images up to "
                                 f"{max_pixels:,} pixels are accepted. Resize it and try again.")
    finally:
        if image.tell() != first:
            image.seek(first)


def embedded_sizes(fp: BinaryIO) -> list[tuple[int, int, str]]:
    """(width, height, size the container claims) of each picture inside an ICO, CUR or ICNS file, from
    the pictures' own headers (PNG IHDR, BMP info header, JPEG 2000 header); [] for other files."""
    fp.seek(0)
    head = fp.read(8)
    found = []
    if head[:4] in (b"\0\0\1\0", b"\0\0\2\0"):  # ICO, CUR: a directory of 16-byte entries
        count = struct.unpack("<H", head[4:6])[0]
        fp.seek(6)
        entries = fp.read(16 * count)
        for i in range(len(entries) // 16):
            entry = entries[16 * i:16 * i + 16]
            said = f"{entry[0] or 256}x{entry[1] or 256}"
            fp.seek(struct.unpack("<I", entry[12:16])[0])
            data = fp.read(26)
            if data[:8] == _PNG_MAGIC and len(data) >= 24:
                found.append((*struct.unpack(">II", data[16:24]), said))
            elif len(data) >= 12:
                width, height = struct.unpack("<ii", data[4:12])  # height covers the picture and its mask
                found.append((abs(width), abs(height) // 2, said))
    elif head[:4] == b"icns":
        total = struct.unpack(">I", head[4:8])[0]
        at = 8
        while at + 8 <= total:
            fp.seek(at)
            block = fp.read(8)
            if len(block) < 8:
                break
            kind, length = block[:4], struct.unpack(">I", block[4:8])[0]
            if length <= 8:
                break
            data = fp.read(min(length - 8, 26))
            size = None
            if data[:8] == _PNG_MAGIC and len(data) >= 24:
                size = struct.unpack(">II", data[16:24])
            elif data[:4] in (b"\xff\x4f\xff\x51", b"\x0d\x0a\x87\x0a") or data[:12] == b"\x00\x00\x00\x0cjP  \x0d\x0a\x87\x0a":
                fp.seek(at + 8)
                try:
                    with Image.open(io.BytesIO(fp.read(length - 8)), formats=["JPEG2000"]) as sub:
                        size = sub.size
                except (UnidentifiedImageError, OSError, SyntaxError):
                    size = None
            if size:
                found.append((size[0], size[1], _ICNS_SIZES.get(kind, "a smaller size")))
            at += length
    fp.seek(0)
    return found


def _normalise(image: Image.Image, max_pixels: int, name: str) -> Image.Image:
    width, height = image.size  # known from the header: nothing decoded yet
    if width * height > max_pixels:
        raise InputError(f"{name} is {width}x{height} = {width * height:,} pixels; images up to "
                         f"{max_pixels:,} pixels are accepted. Resize it and try again.")
    # Memory follows what the model needs, not the file: a large image is made smaller before any
    # full-size copy (a 6300x6300 16-bit PNG of 81 KB cost 1.2 GB as float64 planes; now about 0.1 GB).
    if image.format == "JPEG":
        image.draft(image.mode, (LARGEST_SIDE, LARGEST_SIDE))  # decoded at 1/2, 1/4 or 1/8 scale
    factor = -(-max(image.size) // LARGEST_SIDE)
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    if image.mode in _WIDE_GREY_MODES:
        if factor > 1 and image.mode in _REDUCIBLE_MODES:  # 32-bit planes: averaged by Pillow, then scaled
            image, factor = image.reduce(factor), 1
        image, factor = _to_8bit_grey(image, factor), 1
    elif factor > 1 and image.mode not in _REDUCIBLE_MODES:
        image = image.convert("RGBA" if image.mode in _ALPHA_MODES or "transparency" in image.info else "RGB")
    if factor > 1:
        image = image.reduce(factor)
    image = _upright(image, orientation)
    if image.mode in _ALPHA_MODES or (image.mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        raise InputError(f"{name} uses the colour mode {image.mode}, which cannot be turned into RGB here; "
                         "save it as RGB, greyscale, CMYK or palette.") from None


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    """The EXIF orientation applied (read before any resizing, which may not keep it)."""
    method = _TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def _to_8bit_grey(image: Image.Image, step: int = 1) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale scaled into 0-255 rather than clipped; every step-th
    pixel of every step-th row (a view: nothing full-size is copied past the decoded plane)."""
    values = np.asarray(image)[::step, ::step].astype(np.float32)
    if image.mode.startswith("I;16"):
        values /= 257.0
    else:
        low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
        if image.mode == "F" and low >= 0.0 and high <= 1.0:
            values *= 255.0
        elif low >= 0.0 and high <= 255.0:
            pass
        elif low >= 0.0 and high <= 65535.0:
            values /= 257.0
        else:
            values -= low
            values *= 255.0 / (high - low)
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return Image.fromarray(values.astype(np.uint8), mode="L")


def classify_images(pipe: Any, images: Sequence[Image.Image], top_k: int) -> list[list[Prediction]]:
    """The top_k predictions for each image, from one pipeline call over the whole list."""
    if not images:
        return []
    if top_k < 1:
        raise InputError(f"top_k must be at least 1, not {top_k}.")
    outputs = pipe(list(images), top_k=top_k, batch_size=len(images))
    return [[Prediction(str(o["label"]), float(o["score"])) for o in per_image] for per_image in outputs]


def _classify_batch(pipe: Any, items: list[tuple[Image.Image, int]]) -> list[list[Prediction]]:
    """Batcher entry: requests may ask for different top_k, so run the largest and cut."""
    ranked = classify_images(pipe, [image for image, _ in items], max(k for _, k in items))
    return [predictions[:k] for predictions, (_, k) in zip(ranked, items)]


def classify_with(batcher: MicroBatcher, pipe: Any, images: Sequence[Image.Image],
                  top_k: int) -> list[list[Prediction]]:
    """classify_images through the batcher, so images from users pressing at once share a batch."""
    if top_k < 1:
        raise InputError(f"top_k must be at least 1, not {top_k}.")
    return batcher.map(_classify_batch, pipe, [(image, int(top_k)) for image in images])
