"""Image tab: classify one image (drop, upload, paste, webcam) or several at once."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import gradio as gr

from engine.batching import MicroBatcher, event_concurrency
from engine.errors import InputError, StudioError
from engine.registry import allowed_models, check_model_allowed
from engine.urls import NOT_ENABLED, URLFetcher, url_file_name
from engine.vision import Prediction, classify_with, load_image
from ui.common import (fetch_into, get_pipeline, hand_over_path, open_choices, standalone, upload_or_url, url_box,
                       user_errors)
from ui.zerogpu import MANY_ITEMS_SECONDS, ONE_ITEM_SECONDS, gpu

TASK = "image-classification"
TOP_K_MAX = 20
ASSETS = Path(__file__).resolve().parents[2] / "assets"
EXAMPLES = sorted(str(p) for p in ASSETS.glob("image_example*.png"))
TABLE_HEADERS = ["file", "top label", "score", "top k"]


def as_json(predictions: list[Prediction]) -> list[dict]:
    return [{"label": p.label, "score": p.score} for p in predictions]


def as_label(rows: list[dict] | None) -> dict[str, float] | None:
    return {r["label"]: r["score"] for r in rows} if rows else None


def build(registry, settings, fetcher: URLFetcher | None = None) -> None:
    fetcher = fetcher or URLFetcher.from_settings(settings)
    batcher = MicroBatcher.from_settings(settings)
    models = allowed_models(TASK, settings)
    limit = event_concurrency(settings)
    # Up to `limit` requests run at once to fill a batch, but only a few decode at a time: decoding is where
    # an image costs its full size in memory.
    decoding = threading.BoundedSemaphore(max(1, settings.max_decodes))

    def decode(path: str):
        with decoding:
            return load_image(path, settings.max_image_pixels)

    def pipeline_for(model: str | None, progress=None):
        model = model or models[0]
        check_model_allowed(TASK, model, settings)
        return get_pipeline(registry, TASK, model, progress)

    @gpu(duration=ONE_ITEM_SECONDS)
    @user_errors
    def classify_image(image: str | None = None, model: str | None = None, top_k: int = 5,
                       url: str | None = None, progress=gr.Progress(track_tqdm=True)) -> list[dict]:
        """Classify one image.

        Args:
            image: the image (PNG, JPEG, WebP, GIF, TIFF, BMP or any format Pillow reads); empty when giving url.
            model: the image-classification model, one of those the server offers.
            top_k: how many labels to return, from 1 to 20.
            url: a public http(s) URL of the image instead of image; only on servers started with --allow-urls.

        Returns:
            predictions: [{label, score}], best first.
        """
        if not image and not (url or "").strip():
            raise InputError("No image given; drop, upload or paste an image, or take one with the webcam"
                             + (", or give its URL." if fetcher.enabled else "."))
        check_model_allowed(TASK, model or models[0], settings)
        with upload_or_url(image, url, fetcher, files.GRADIO_CACHE) as path:
            loaded = decode(path)
        (predictions,) = classify_with(batcher, pipeline_for(model, progress), [loaded], int(top_k))
        return as_json(predictions)

    @gpu(duration=MANY_ITEMS_SECONDS)
    @user_errors
    def classify_images(images: list[str] | None = None, model: str | None = None, top_k: int = 5,
                        urls: str | None = None, progress=gr.Progress(track_tqdm=True)):
        """Classify several images at once; one that cannot be read gets a row saying why, the rest are classified.

        Args:
            images: the image files; may be empty when giving urls.
            model: the image-classification model, one of those the server offers.
            top_k: how many labels to list for each image, from 1 to 20.
            urls: public http(s) URLs of images, one per line; only on servers started with --allow-urls.

        Returns:
            gallery: the images as the model saw them, captioned with their top label.
            results: a table of file, top label, score and the top k labels with their scores.
        """
        paths = [str(p) for p in images or []]
        urls_ = [u.strip() for u in (urls or "").splitlines() if u.strip()]
        if not paths and not urls_:
            raise InputError("No images given; upload one or more image files"
                             + (", or give their URLs, one per line." if fetcher.enabled else "."))
        if len(paths) + len(urls_) > settings.max_images:
            raise InputError(f"{len(paths) + len(urls_)} images given; at most {settings.max_images} are "
                             "classified at once.")
        if urls_ and not fetcher.enabled:
            raise InputError(NOT_ENABLED)
        check_model_allowed(TASK, model or models[0], settings)
        folders, names = [], {p: Path(p).name for p in paths}
        failed = {}
        try:
            for i, url in enumerate(urls_):
                try:
                    fetched_path = fetch_into(fetcher, url, files.GRADIO_CACHE)
                    folders.append(fetched_path.parent)
                    fetched = str(fetched_path)
                except StudioError as exc:
                    fetched = f"url-{i}"
                    failed[fetched] = str(exc)
                names[fetched] = url_file_name(url)
                paths.append(fetched)
            return _classify_many(paths, names, failed, model, top_k, progress)
        finally:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)

    def _classify_many(paths: list[str], names: dict[str, str], failed: dict[str, str], model: str, top_k: float,
                       progress=None):
        loaded = {}
        for path in paths:
            if path in failed:
                continue
            try:
                loaded[path] = decode(path)
            except StudioError as exc:
                failed[path] = str(exc)
        if not loaded:
            raise InputError(" ".join(failed.values()))
        pipe = pipeline_for(model, progress)
        ranked = dict(zip(loaded, classify_with(batcher, pipe, list(loaded.values()), int(top_k))))
        gallery, rows = [], []
        for path in paths:
            name = names[path]
            if path in failed:
                rows.append([name, "(not classified)", None, failed[path]])
                continue
            top = ranked[path][0]
            gallery.append((loaded[path], f"{name}: {top.label} ({top.score:.0%})"))
            rows.append([name, top.label, f"{top.score:.4f}",  # one precision for every score shown
                         ", ".join(f"{p.label} {p.score:.4f}" for p in ranked[path])])
        return gallery, rows

    gr.Markdown("Classify images with a `transformers` image-classification pipeline. Any image Pillow "
                "reads works (PNG, JPEG, WebP, GIF, TIFF, BMP; transparency is put on white, photos are "
                "turned upright from their EXIF orientation, an animation gives its first frame).")
    with gr.Row():
        model = open_choices(gr.Dropdown(models, value=models[0], label="Model", elem_id="image-model",
                                         allow_custom_value=settings.allow_any_model, scale=3))
        top_k = gr.Slider(1, TOP_K_MAX, value=5, step=1, precision=0, label="Top k", elem_id="image-top-k", scale=2)
    with gr.Tabs():
        with gr.Tab("One image", elem_id="image-one"):
            with gr.Row():
                with gr.Column():
                    image = hand_over_path(gr.Image(sources=["upload", "clipboard", "webcam"], type="filepath",
                                                    image_mode=None, label="Image (drop, upload, paste or webcam)",
                                                    elem_id="image-input"))
                    url = url_box(fetcher, "image-url", "https://example.com/photo.jpg")
                    run = gr.Button("Classify", variant="primary", elem_id="image-run")
                    if EXAMPLES:
                        gr.Examples([[p] for p in EXAMPLES], inputs=image, api_name="image_example",
                                    elem_id="image-examples")
                with gr.Column():
                    label = gr.Label(num_top_classes=TOP_K_MAX, label="Predictions", elem_id="image-label")
                    with gr.Accordion("JSON (what the API returns)", open=False):
                        raw = gr.JSON(label="Predictions", elem_id="image-json")
        with gr.Tab("Several images", elem_id="image-many"):
            files = hand_over_path(gr.File(file_count="multiple", file_types=["image"], type="filepath",
                                           label=f"Images (up to {settings.max_images})", elem_id="image-files"))
            urls = url_box(fetcher, "image-urls", "https://example.com/a.jpg\nhttps://example.com/b.png", many=True)
            run_many = gr.Button("Classify all", variant="primary", elem_id="image-run-many")
            gallery = gr.Gallery(label="Images as the model saw them", columns=6, fit_columns=False, height=260,
                                 object_fit="contain", elem_id="image-gallery")
            table = gr.Dataframe(headers=TABLE_HEADERS, datatype=["str", "str", "str", "str"],
                                 interactive=False, wrap=True, column_widths=["18%", "17%", "9%", "56%"],
                                 elem_id="image-table", label="Results")

    run.click(classify_image, [image, model, top_k, url], raw, api_name="classify_image",
              concurrency_limit=limit, concurrency_id="image-classify").success(
        as_label, raw, label, api_name="image_show_label", api_visibility="private", queue=False)
    run_many.click(classify_images, [files, model, top_k, urls], [gallery, table], api_name="classify_images",
                   concurrency_limit=limit, concurrency_id="image-classify")


def demo(registry, settings, fetcher: URLFetcher | None = None) -> gr.Blocks:
    return standalone(build, registry, settings, "Image classification", fetcher=fetcher)
