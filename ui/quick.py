"""Quick-launch: any transformers pipeline as a gr.Interface with a /predict endpoint.

The mapping is the QUICK table: task -> QuickSpec (input and output component factories, and
the conversions on either side of the pipeline call). Gradio's own gr.Interface.from_pipeline
fails on transformers 5 (tests/test_quick_cli.py records it).
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

import gradio as gr
import numpy as np

from engine.audio import decode_audio
from engine.errors import InputError, StudioError
from engine.registry import model_label
from engine.settings import Settings
from engine.speech import TranscribeOptions, transcribe
from engine.text import parse_labels
from engine.vision import ACCEPTED as IMAGE_ACCEPTED
from engine.vision import load_image
from ui.common import hand_over_path, user_errors
from ui.zerogpu import gpu, quick_seconds

TOP_K = 5
ALIASES = MappingProxyType({"ner": "token-classification", "sentiment-analysis": "text-classification",
                            "image-to-text": "image-text-to-text"})
# The Settings fields quick-launch takes as flags (the per-tab model choices do not apply).
SETTINGS_FLAGS = ("host", "port", "share", "device", "dtype", "device_map", "max_memory", "offline", "auth",
                  "auth_file", "max_file_mb", "max_audio_seconds", "min_audio_seconds", "max_image_pixels",
                  "max_labels", "max_label_chars", "max_text_chars", "max_question_chars", "max_new_tokens",
                  "queue_size", "concurrency")


class QuickLaunchError(StudioError, ValueError):
    """A task or model quick-launch cannot serve, with what it can."""


@dataclass(frozen=True)
class Call:
    """One pipeline call: pipe(*args, **kwargs); context carries what postprocess needs."""

    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QuickSpec:
    """How one task meets Gradio."""

    summary: str
    inputs: Callable[[Any, Settings], list]  # (pipe, settings) -> fresh input components
    outputs: Callable[[Any], list]  # pipe -> fresh output components
    preprocess: Callable[..., Call] | None  # (pipe, settings, *input values) -> Call
    postprocess: Callable[[Any, Call], tuple] | None  # (pipeline output, call) -> output values
    examples: Callable[[Any, Settings], list] | None = None  # (pipe, settings) -> example rows
    run: Callable[..., tuple] | None = None  # (pipe, settings, *input values, progress) -> outputs, instead of a call


# --------------------------------------------------------------------------- inputs


def _text(settings: Settings, value: str | None, what: str = "text") -> str:
    text = (value or "").strip()
    if not text:
        raise InputError(f"Enter some {what}.")
    if len(text) > settings.max_text_chars:
        raise InputError(f"The {what} has {len(text):,} characters; at most {settings.max_text_chars:,} "
                         "are accepted.")
    return text


def _image(settings: Settings, path: str | None):
    """The upload's path, read as the Image tab reads it: sizes from the header first, then upright RGB."""
    if not path:
        raise InputError(f"No image was given; upload one ({IMAGE_ACCEPTED}).")
    return load_image(path, settings.max_image_pixels)


def _labels(settings: Settings, value: str | None) -> list[str]:
    return list(parse_labels(value, settings.max_labels, settings.max_label_chars))


def _audio(pipe: Any, settings: Settings, path: str | None) -> np.ndarray:
    if not path:
        raise InputError("Upload or record some audio.")
    return decode_audio(path, pipe.feature_extractor.sampling_rate, settings.max_audio_seconds,
                        settings.min_audio_seconds)


# --------------------------------------------------------------------------- outputs


def _scores(rows: Any) -> dict[str, float]:
    """[{'label', 'score'}, ...] (possibly nested one level) -> {label: score}, best first."""
    if rows and isinstance(rows[0], list):
        rows = rows[0]
    out: dict[str, float] = {}
    for row in sorted(rows, key=lambda r: -r["score"]):
        out.setdefault(str(row.get("label", row.get("token_str", row.get("answer")))), float(row["score"]))
    return out


def _generated_text(output: Any) -> str:
    first = output[0] if isinstance(output, list) else output
    if isinstance(first, list):
        first = first[0]
    text = first["generated_text"]
    if isinstance(text, list):  # a chat: the reply is the last message
        content = text[-1]["content"]
        text = content if isinstance(content, str) else " ".join(c.get("text", "") for c in content)
    return text.strip()


def _max_new_tokens(settings: Settings) -> gr.Slider:
    return gr.Slider(1, settings.max_new_tokens, value=min(64, settings.max_new_tokens), step=1,
                     label="Max new tokens", elem_id="quick-max-new-tokens")


def _new_tokens(settings: Settings, value: Any) -> int:
    return max(1, min(int(value or 1), settings.max_new_tokens))


def _has_chat_template(pipe: Any) -> bool:
    owner = getattr(pipe, "processor", None) or getattr(pipe, "tokenizer", None)
    return getattr(owner, "chat_template", None) is not None


# --------------------------------------------------------------------------- tasks


def _asr_run(pipe, settings, path, progress):
    """The Speech tab's engine: VAD cutting for long audio, batches, its timestamps and progress."""
    audio = _audio(pipe, settings, path)
    result = transcribe(pipe, audio, TranscribeOptions(),
                        progress=lambda done, total: progress((done, total), desc="Transcribing", unit="chunks"))
    return result.text, [[seg.start, seg.end, seg.text] for seg in result.segments]


def _token_pre(pipe, settings, text):
    text = _text(settings, text)
    fast = getattr(getattr(pipe, "tokenizer", None), "is_fast", False)
    return Call((text,), {"aggregation_strategy": "simple" if fast else "none"}, {"text": text})


def _token_post(output, call):
    entities = [{"entity": e.get("entity_group") or e.get("entity"), "start": e["start"], "end": e["end"]}
                for e in output if e.get("start") is not None]
    return ({"text": call.context["text"], "entities": entities},)


def _fill_pre(pipe, settings, text):
    text = _text(settings, text)
    mask = pipe.tokenizer.mask_token
    for other in ("[MASK]", "<mask>"):  # accept the other common spelling
        text = text.replace(other, mask)
    if text.count(mask) != 1:
        raise InputError(f"Put the mask token {mask} exactly once where the missing word goes, "
                         f"e.g. 'Paris is the {mask} of France.'")
    return Call((text,), {"top_k": TOP_K})


def _features_post(output, call):
    array = output.float().numpy() if hasattr(output, "numpy") else np.asarray(output, dtype=np.float32)
    tokens = array.reshape(-1, array.shape[-1])
    return ({"shape": list(array.shape),
             "mean_pooled_preview": [round(float(v), 4) for v in tokens.mean(axis=0)[:8]],
             "first_tokens_preview": [[round(float(v), 4) for v in row[:8]] for row in tokens[:4]]},)


def _docqa_pre(pipe, settings, image, question):
    image = _image(settings, image)
    question = (question or "").strip()
    if not question:
        raise InputError("Enter a question about the document.")
    if len(question) > settings.max_question_chars:
        raise InputError(f"The question has {len(question)} characters; at most "
                         f"{settings.max_question_chars} are accepted.")
    model_type = getattr(pipe, "model_type", None)
    reads_pixels = getattr(model_type, "value", model_type) == "vision_encoder_decoder"  # Donut needs no OCR
    if not reads_pixels and shutil.which("tesseract") is None:
        raise StudioError("This model reads the document's words with OCR, and Tesseract is not installed on "
                          "the server (apt-get install tesseract-ocr).")
    return Call((), {"image": image, "question": question, "top_k": 3})


def _answers(output):
    if not output:
        raise InputError("No answer: no words could be read in this image. Upload a sharper scan or photo.")
    return output


def _detect_pre(pipe, settings, image, threshold):
    image = _image(settings, image)
    return Call((image,), {"threshold": float(threshold)}, {"image": image})


DETECTION_COLUMNS = ["label", "score", "xmin", "ymin", "xmax", "ymax"]


def _detect_post(output, call):
    rows = [[d["label"], round(float(d["score"]), 3), *(int(d["box"][k]) for k in DETECTION_COLUMNS[2:])]
            for d in sorted(output, key=lambda d: -d["score"])]
    boxes = [(tuple(row[2:]), f"{row[0]} {row[1]:.2f}") for row in rows]
    return (call.context["image"], boxes), rows


def _vision_text_pre(pipe, settings, image, prompt, max_new_tokens):
    image = _image(settings, image)
    prompt = (prompt or "").strip()
    if len(prompt) > settings.max_text_chars:
        raise InputError(f"The prompt has {len(prompt):,} characters; at most {settings.max_text_chars:,} "
                         "are accepted.")
    kwargs = {"max_new_tokens": _new_tokens(settings, max_new_tokens)}
    if _has_chat_template(pipe):
        chat = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": prompt or "Describe this image."}]}]
        return Call((), {"text": chat, "return_full_text": False, **kwargs})
    return Call((), {"images": image, "text": prompt, **kwargs})  # captioners continue the prompt


def _generate_pre(pipe, settings, prompt, max_new_tokens):
    prompt = _text(settings, prompt, "prompt")
    kwargs = {"max_new_tokens": _new_tokens(settings, max_new_tokens)}
    if _has_chat_template(pipe):
        return Call(([{"role": "user", "content": prompt}],), {"return_full_text": False, **kwargs})
    return Call((prompt,), kwargs)


def _audio_in(pipe, settings):
    return [gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio", elem_id="quick-audio")]


def _image_in(pipe, settings):
    # The path, not a decoded image: gr.Image(type="pil") decodes every upload before any check.
    return [hand_over_path(gr.Image(type="filepath", label="Image", elem_id="quick-image"))]


def _text_in(pipe, settings, label="Text", placeholder=""):
    return [gr.Textbox(label=label, lines=3, placeholder=placeholder, elem_id="quick-text")]


def _labels_in(placeholder="sports, politics, technology"):
    return gr.Textbox(label="Candidate labels (comma-separated)", placeholder=placeholder, elem_id="quick-labels")


def _label_out(pipe, label="Prediction", k=TOP_K):
    return [gr.Label(num_top_classes=k, label=label, elem_id="quick-label")]


QUICK: Mapping[str, QuickSpec] = MappingProxyType({
    "automatic-speech-recognition": QuickSpec(
        "Transcribes speech, with timestamps.", _audio_in,
        lambda pipe: [gr.Textbox(label="Transcript", lines=4, elem_id="quick-transcript"),
                      gr.Dataframe(headers=["start (s)", "end (s)", "text"], label="Segments",
                                   interactive=False, wrap=True, column_widths=["15%", "15%", "70%"],
                                   elem_id="quick-segments")],
        None, None, run=_asr_run),
    "audio-classification": QuickSpec(
        "Classifies a sound.", _audio_in, _label_out,
        lambda pipe, s, path: Call((_audio(pipe, s, path),), {"top_k": TOP_K}),
        lambda out, call: (_scores(out),)),
    "image-classification": QuickSpec(
        "Classifies an image.", _image_in, _label_out,
        lambda pipe, s, image: Call((_image(s, image),), {"top_k": TOP_K}),  # positional: v5 rejects images=
        lambda out, call: (_scores(out),)),
    "zero-shot-classification": QuickSpec(
        "Scores a text against labels you choose.",
        lambda pipe, s: [*_text_in(pipe, s), _labels_in(),
                         gr.Checkbox(label="Several labels can be true", elem_id="quick-multi-label")],
        _label_out,
        lambda pipe, s, text, labels, multi: Call(
            (_text(s, text),), {"candidate_labels": _labels(s, labels), "multi_label": bool(multi)}),
        lambda out, call: (dict(zip(out["labels"], map(float, out["scores"]))),),
        lambda pipe, s: [["The new phone has a great camera and a long battery life.", "technology, sports, cooking",
                       False]]),
    "zero-shot-image-classification": QuickSpec(
        "Scores an image against labels you choose.",
        lambda pipe, s: [*_image_in(pipe, s), _labels_in("cat, dog, car")], _label_out,
        lambda pipe, s, image, labels: Call((_image(s, image),), {"candidate_labels": _labels(s, labels)}),
        lambda out, call: (_scores(out),)),
    "text-classification": QuickSpec(
        "Classifies a text.", _text_in, _label_out,
        lambda pipe, s, text: Call((_text(s, text),), {"top_k": None}),
        lambda out, call: (_scores(out),), lambda pipe, s: [["I loved this film, the music was wonderful."]]),
    "token-classification": QuickSpec(
        "Finds entities (names, places...) in a text.", _text_in,
        lambda pipe: [gr.HighlightedText(label="Entities", show_legend=True, elem_id="quick-entities")],
        _token_pre, _token_post, lambda pipe, s: [["My name is Sarah, I work for Acme in London."]]),
    "fill-mask": QuickSpec(
        "Fills in a masked word.",
        lambda pipe, s: _text_in(pipe, s, placeholder=f"Paris is the {pipe.tokenizer.mask_token} of France."),
        lambda pipe: _label_out(pipe, "Best fits"), _fill_pre, lambda out, call: (_scores(out),),
        lambda pipe, s: [[f"Paris is the {pipe.tokenizer.mask_token} of France."]]),
    "feature-extraction": QuickSpec(
        "Embeds a text: shape and a preview of the vectors.", _text_in,
        lambda pipe: [gr.JSON(label="Features", elem_id="quick-features")],
        lambda pipe, s, text: Call((_text(s, text),), {"return_tensors": True, "truncation": True}),
        _features_post, lambda pipe, s: [["A sentence to embed."]]),
    "document-question-answering": QuickSpec(
        "Answers a question about a document image.",
        lambda pipe, s: [*_image_in(pipe, s), gr.Textbox(label="Question", elem_id="quick-question",
                                                          placeholder="What is the total amount?")],
        lambda pipe: _label_out(pipe, "Answer", 3), _docqa_pre, lambda out, call: (_scores(_answers(out)),)),
    "object-detection": QuickSpec(
        "Finds objects and draws their boxes.",
        lambda pipe, s: [*_image_in(pipe, s), gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Score threshold",
                                                         elem_id="quick-threshold")],
        lambda pipe: [gr.AnnotatedImage(label="Detections", elem_id="quick-detections"),
                      gr.Dataframe(headers=DETECTION_COLUMNS, label="Boxes (pixels)", interactive=False,
                                   elem_id="quick-boxes")],
        _detect_pre, _detect_post),
    "image-text-to-text": QuickSpec(
        "Describes an image, or answers a prompt about it.",
        lambda pipe, s: [*_image_in(pipe, s), gr.Textbox(label="Prompt (optional)", elem_id="quick-prompt"),
                         _max_new_tokens(s)],
        lambda pipe: [gr.Textbox(label="Generated text", lines=4, elem_id="quick-generated")],
        _vision_text_pre, lambda out, call: (_generated_text(out),)),
    "text-generation": QuickSpec(
        "Continues a prompt (or answers it, for chat models).",
        lambda pipe, s: [*_text_in(pipe, s, "Prompt"), _max_new_tokens(s)],
        lambda pipe: [gr.Textbox(label="Generated text", lines=6, elem_id="quick-generated")],
        _generate_pre, lambda out, call: (_generated_text(out),),
        lambda pipe, s: [["Once upon a time", min(64, s.max_new_tokens)]]),
})


def canonical_task(task: str) -> str:
    """A task name as the QUICK table spells it; a clear error listing the supported ones."""
    name = ALIASES.get(task, task)
    if name not in QUICK:
        raise QuickLaunchError(f"quick-launch has no mapping for the task {task!r}; supported: "
                               f"{', '.join(supported_tasks())}")
    return name


def supported_tasks() -> list[str]:
    return [*QUICK, *ALIASES]


def build_interface(pipe: Any, task: str | None = None, settings: Settings | None = None) -> gr.Interface:
    """A gr.Interface for a loaded pipeline; its endpoint is /predict."""
    settings = settings or Settings.from_env()
    task = canonical_task(task or getattr(pipe, "task", None) or "")
    spec = QUICK[task]
    inputs, outputs = spec.inputs(pipe, settings), spec.outputs(pipe)

    @gpu(duration=quick_seconds)
    @user_errors  # inside the GPU call too: on ZeroGPU only a gr.Error comes back with its message
    def run(*values: Any) -> tuple:
        *values, progress = values
        if spec.run is not None:
            return spec.run(pipe, settings, *values, progress)
        call = spec.preprocess(pipe, settings, *values)
        return spec.postprocess(pipe(*call.args, **call.kwargs), call)

    @user_errors
    def predict(*values: Any) -> Any:
        result = run(*values)
        return result[0] if len(outputs) == 1 else result

    # Gradio reads the inputs' names and where gr.Progress goes from the signature: one named parameter per
    # input (the API shows these names), then progress, passed last.
    predict.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in _parameter_names(inputs)]
        + [inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())])

    name = model_label(str(getattr(getattr(pipe, "model", None), "name_or_path", "") or "model"))
    examples = spec.examples(pipe, settings) if spec.examples else None
    return gr.Interface(predict, inputs, outputs, examples=examples, cache_examples=False,
                        api_name="predict", flagging_mode="never",
                        title=f"{name} · {task}",
                        description=f"{spec.summary} Model: `{name}`. API: `/predict`.")


# --------------------------------------------------------------------------- task from a model


def _parameter_names(inputs: list) -> list[str]:
    """'Max new tokens' -> max_new_tokens; each name once."""
    names: list[str] = []
    for i, component in enumerate(inputs):
        base = re.sub(r"\W+", "_", str(getattr(component, "label", "") or "").split("(")[0].strip().lower()).strip("_")
        name = base if base.isidentifier() and base not in names and base != "progress" else f"input_{i}"
        names.append(name)
    return names


def infer_task(model: str, offline: bool = False) -> str:
    """The quick-launch task of a local folder (its config) or a Hub id (its card's pipeline_tag)."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        return task_from_config(_read_config(folder / "config.json"), model)
    from huggingface_hub import is_offline_mode

    reason = "offline mode is on"
    if not (offline or is_offline_mode()):  # --offline, or HF_HUB_OFFLINE set outside the app
        try:
            from huggingface_hub import model_info

            tag = model_info(model).pipeline_tag
        except Exception as exc:  # noqa: BLE001 - unreachable Hub, no such model, offline...
            reason = f"the Hub could not be asked ({type(exc).__name__})"
        else:
            if not tag:
                raise QuickLaunchError(f"the model card of {model!r} names no pipeline_tag; pass --task "
                                       f"(one of {', '.join(QUICK)})")
            return canonical_task(tag)
    try:  # a Hub model already in the local cache still has its config
        from huggingface_hub import hf_hub_download

        config_file = hf_hub_download(model, "config.json", local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached either
        raise QuickLaunchError(f"cannot tell the task of {model!r}: {reason} and it is not in the local cache; "
                               f"pass --task (one of {', '.join(QUICK)})") from None
    return task_from_config(_read_config(Path(config_file)), model)


def _read_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QuickLaunchError(f"cannot read {path}: {exc}; pass --task") from None


def task_from_config(config: Mapping[str, Any], model: str = "the model") -> str:
    """architectures -> the first QUICK task whose transformers model classes include one of them."""
    from transformers.pipelines import SUPPORTED_TASKS

    architectures = config.get("architectures") or []
    if not architectures:
        raise QuickLaunchError(f"the config of {model} lists no architectures; pass --task "
                               f"(one of {', '.join(QUICK)})")
    labels = {str(v).lower() for v in (config.get("id2label") or {}).values()}
    matches = []
    for task in QUICK:
        classes = SUPPORTED_TASKS[task]["pt"]
        names = set()
        for auto in classes:
            for value in auto._model_mapping._model_mapping.values():
                names.update(value if isinstance(value, (tuple, list)) else [value])
        if names.intersection(architectures):
            matches.append(task)
    if "zero-shot-classification" in matches and "entailment" not in labels:
        matches.remove("zero-shot-classification")  # an NLI head is what makes zero-shot work
    if not matches:
        raise QuickLaunchError(f"{', '.join(architectures)} fits none of quick-launch's tasks; pass --task "
                               f"(one of {', '.join(QUICK)})")
    return matches[0]


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    from engine.cli import add_settings_arguments

    parser = argparse.ArgumentParser(
        prog="app.py quick",
        description="Serve one transformers pipeline as a web demo with a /predict API. Flags can also be set "
                    "with their STUDIO_* environment variables.")
    parser.add_argument("--task", help=f"pipeline task: {', '.join(supported_tasks())} "
                                       "(default: read from the model's config or model card)")
    parser.add_argument("--model", help="Hub id or local folder (default: the app's default model for --task)")
    add_settings_arguments(parser, names=SETTINGS_FLAGS)
    return parser


def main(argv: list[str] | None = None) -> None:
    from engine.cli import prepare_environment, settings_from_args

    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.task and not args.model:
        parser.error("give --model, --task, or both")
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    prepare_environment(settings)
    from ui import zerogpu

    settings = zerogpu.prepare(settings)  # before torch touches CUDA
    from engine.registry import TASKS, PipelineRegistry
    from ui.app import launch

    try:
        task = canonical_task(args.task) if args.task else infer_task(args.model, settings.offline)
        if not args.model and task not in TASKS:
            raise QuickLaunchError(f"no default model for {task}; pass --model")
        registry = PipelineRegistry(settings)
        model = args.model or registry.default_model(task)
        if Path(model).expanduser().is_dir():  # the operator's folder, even where it reads like 'owner/name'
            model = str(Path(model).expanduser().resolve())
        where = registry.placement.device_map and "device_map=auto" or registry.placement.device
        print(f"Loading {model} for {task} on {where} ...", file=sys.stderr, flush=True)
        pipe = registry.get(task, model)
    except StudioError as exc:
        raise SystemExit(f"error: {exc}") from None
    launch(build_interface(pipe, task, settings), settings)
