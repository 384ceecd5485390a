"""Image classification: any Pillow-readable image in, ranked predictions out."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.batching import MicroBatcher
from engine.errors import InputError
from engine.settings import Settings

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]

ACCEPTED = "PNG, JPEG, WebP, GIF (first frame), BMP, TIFF and other formats Pillow reads"
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_GREY_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


def load_image(source: ImageSource, max_pixels: int = Settings.max_image_pixels) -> Image.Image:
    """An upright 8-bit RGB image; transparency on white; the first frame of an animation."""
    if isinstance(source, Image.Image):
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
        with Image.open(source) as image:
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


def _normalise(image: Image.Image, max_pixels: int, name: str) -> Image.Image:
    width, height = image.size  # known from the header: nothing decoded yet
    if width * height > max_pixels:
        raise InputError(f"{name} is {width}x{height} = {width * height:,} pixels; images up to "
                         f"{max_pixels:,} pixels are accepted. Resize it and try again.")
    image = ImageOps.exif_transpose(image)
    if image.mode in _ALPHA_MODES or (image.mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in _WIDE_GREY_MODES:
        image = _to_8bit_grey(image)
    try:
        return image.convert("RGB")
    except ValueError:
        raise InputError(f"{name} uses the colour mode {image.mode}, which cannot be turned into RGB here; "
                         "save it as RGB, greyscale, CMYK or palette.") from None


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale scaled into 0-255 rather than clipped."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    else:
        low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
        if image.mode == "F" and low >= 0.0 and high <= 1.0:
            scaled = values * 255.0
        elif low >= 0.0 and high <= 255.0:
            scaled = values
        elif low >= 0.0 and high <= 65535.0:
            scaled = values / 257.0
        else:
            scaled = (values - low) * (255.0 / (high - low))
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


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
