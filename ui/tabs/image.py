"""Image tab: classify one image (drop, upload, paste, webcam) or several at once."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from engine.batching import MicroBatcher, event_concurrency
from engine.errors import InputError, StudioError
from engine.registry import allowed_models, check_model_allowed
from engine.vision import Prediction, classify_with, load_image
from ui.common import get_pipeline, hand_over_path, standalone, user_errors

TASK = "image-classification"
TOP_K_MAX = 20
ASSETS = Path(__file__).resolve().parents[2] / "assets"
EXAMPLES = sorted(str(p) for p in ASSETS.glob("image_example*.png"))
TABLE_HEADERS = ["file", "top label", "score", "top k"]


def as_json(predictions: list[Prediction]) -> list[dict]:
    return [{"label": p.label, "score": p.score} for p in predictions]


def as_label(rows: list[dict] | None) -> dict[str, float] | None:
    return {r["label"]: r["score"] for r in rows} if rows else None


def build(registry, settings) -> None:
    batcher = MicroBatcher.from_settings(settings)
    models = allowed_models(TASK, settings)
    limit = event_concurrency(settings)

    def pipeline_for(model: str, progress=None):
        check_model_allowed(TASK, model, settings)
        return get_pipeline(registry, TASK, model, progress)

    @user_errors
    def classify_image(path: str | None, model: str, top_k: float,
                       progress=gr.Progress(track_tqdm=True)) -> list[dict]:
        if not path:
            raise InputError("No image given; drop, upload or paste an image, or take one with the webcam.")
        image = load_image(path, settings.max_image_pixels)
        (predictions,) = classify_with(batcher, pipeline_for(model, progress), [image], int(top_k))
        return as_json(predictions)

    @user_errors
    def classify_images(paths: list[str] | None, model: str, top_k: float, progress=gr.Progress(track_tqdm=True)):
        paths = [str(p) for p in paths or []]
        if not paths:
            raise InputError("No images given; upload one or more image files.")
        if len(paths) > settings.max_images:
            raise InputError(f"{len(paths)} images given; at most {settings.max_images} are classified at once.")
        loaded, failed = {}, {}
        for path in paths:
            try:
                loaded[path] = load_image(path, settings.max_image_pixels)
            except StudioError as exc:
                failed[path] = str(exc)
        if not loaded:
            raise InputError(" ".join(failed.values()))
        pipe = pipeline_for(model, progress)
        ranked = dict(zip(loaded, classify_with(batcher, pipe, list(loaded.values()), int(top_k))))
        gallery, rows = [], []
        for path in paths:
            name = Path(path).name
            if path in failed:
                rows.append([name, "(not classified)", None, failed[path]])
                continue
            top = ranked[path][0]
            gallery.append((loaded[path], f"{name}: {top.label} ({top.score:.0%})"))
            rows.append([name, top.label, round(top.score, 4),
                         ", ".join(f"{p.label} {p.score:.3f}" for p in ranked[path])])
        return gallery, rows

    gr.Markdown("Classify images with a `transformers` image-classification pipeline. Any image Pillow "
                "reads works (PNG, JPEG, WebP, GIF, TIFF, BMP; transparency is put on white, photos are "
                "turned upright from their EXIF orientation, an animation gives its first frame).")
    with gr.Row():
        model = gr.Dropdown(models, value=models[0], label="Model", elem_id="image-model",
                            allow_custom_value=settings.allow_any_model, scale=3)
        top_k = gr.Slider(1, TOP_K_MAX, value=5, step=1, label="Top k", elem_id="image-top-k", scale=2)
    with gr.Tabs():
        with gr.Tab("One image", elem_id="image-one"):
            with gr.Row():
                with gr.Column():
                    image = hand_over_path(gr.Image(sources=["upload", "clipboard", "webcam"], type="filepath",
                                                    image_mode=None, label="Image (drop, upload, paste or webcam)",
                                                    elem_id="image-input"))
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
            run_many = gr.Button("Classify all", variant="primary", elem_id="image-run-many")
            gallery = gr.Gallery(label="Images as the model saw them", columns=6, fit_columns=False, height=260,
                                 object_fit="contain", elem_id="image-gallery")
            table = gr.Dataframe(headers=TABLE_HEADERS, datatype=["str", "str", "number", "str"],
                                 interactive=False, wrap=True, elem_id="image-table", label="Results")

    run.click(classify_image, [image, model, top_k], raw, api_name="classify_image",
              concurrency_limit=limit, concurrency_id="image-classify").success(
        as_label, raw, label, api_name="image_show_label", api_visibility="private", queue=False)
    run_many.click(classify_images, [files, model, top_k], [gallery, table], api_name="classify_images",
                   concurrency_limit=limit, concurrency_id="image-classify")


def demo(registry, settings) -> gr.Blocks:
    return standalone(build, registry, settings, "Image classification")
