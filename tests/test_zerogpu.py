"""ZeroGPU, tried with a stand-in for Hugging Face's `spaces` package: every torch model call of the four
tabs and of quick-launch runs inside a @spaces.GPU call, with a duration that fits the input.

The stand-in behaves as the real package does where it matters here (spaces/zero/wrappers.py): the
decorated function runs somewhere else (here a thread of its own, there a process), its arguments and
result cross by pickling, only a gr.Error comes back with its message, and a callable duration is
called with the function's arguments before it runs.
"""

from __future__ import annotations

import contextvars
import functools
import pickle
import threading
import types
from dataclasses import dataclass

import numpy as np
import httpx
import pytest
import soundfile as sf
import torch

from tests.conftest import ROOT, WHISPER_TINY_EN, free_port, needs_real_whisper, serving
from ui import zerogpu

SPEECH = ROOT / "assets" / "speech_example.flac"
INVOICE = ROOT / "assets" / "invoice.png"


@dataclass
class ModelCall:
    module: str
    gpu_function: str | None  # the decorated function it ran in; None: outside any GPU call


class StandInSpaces:
    """A `spaces` module: GPU(...) records durations; a global forward hook records every model call."""

    def __init__(self) -> None:
        self.module = types.ModuleType("spaces")
        self.module.GPU = self.GPU
        self.durations: list[tuple[str, int]] = []
        self.model_calls: list[ModelCall] = []
        self._where = threading.local()
        self._lock = threading.Lock()

    def GPU(self, task=None, *, duration=None, size=None):  # noqa: N802 - the real package's name
        if task is None:
            return functools.partial(self.GPU, duration=duration, size=size)

        @functools.wraps(task)
        def gradio_handler(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else (duration or 60)
            with self._lock:
                self.durations.append((task.__name__, seconds))
            payload = pickle.dumps((args, kwargs))  # what the real package sends to its GPU process
            box = {}

            def worker():
                self._where.function = task.__name__
                try:
                    call_args, call_kwargs = pickle.loads(payload)
                    box["result"] = pickle.dumps(task(*call_args, **call_kwargs))
                except Exception as exc:  # noqa: BLE001 - handed back as the real package does
                    box["error"] = exc

            thread = threading.Thread(target=contextvars.copy_context().run, args=(worker,))
            thread.start()
            thread.join()
            if "error" in box:
                import gradio as gr

                if isinstance(box["error"], gr.Error):
                    raise box["error"]
                raise gr.Error(f"ZeroGPU worker error: {type(box['error']).__name__}")
            return pickle.loads(box["result"])

        return gradio_handler

    def hook(self, module, args):
        with self._lock:
            self.model_calls.append(ModelCall(type(module).__name__, getattr(self._where, "function", None)))

    def outside(self) -> list[ModelCall]:
        return [c for c in self.model_calls if c.gpu_function is None]

    def functions_with_model_calls(self) -> set[str]:
        return {c.gpu_function for c in self.model_calls if c.gpu_function}


@pytest.fixture
def stand_in(monkeypatch):
    spaces = StandInSpaces()
    monkeypatch.setenv("SPACE_ID", "tester/studio")
    monkeypatch.setenv(zerogpu.ZEROGPU_ENV, "true")
    monkeypatch.setitem(__import__("sys").modules, "spaces", spaces.module)
    handle = torch.nn.modules.module.register_module_forward_pre_hook(spaces.hook)
    yield spaces
    handle.remove()


def long_speech(path, seconds: float) -> float:
    """The example recording repeated to at least `seconds`: longer than Whisper's 30 s window."""
    audio, rate = sf.read(SPEECH, dtype="float32")
    repeats = int(np.ceil(seconds * rate / len(audio)))
    sf.write(path, np.tile(audio, repeats), rate)
    return len(audio) * repeats / rate


@pytest.mark.real_model
@needs_real_whisper
def test_every_model_call_of_every_tab_and_quick_launch_runs_inside_a_gpu_call(stand_in, tiny_model, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    from engine.registry import PipelineRegistry
    from engine.settings import Settings
    from ui.app import build_app
    from ui.quick import build_interface

    given = Settings.from_env(env={}, device="cpu", dtype="float32", port=free_port(), asr_model=str(WHISPER_TINY_EN),
                              image_model=str(tiny_model("vit_classifier")),
                              zero_shot_model=str(tiny_model("bert_nli")),
                              docqa_model=str(tiny_model("layoutlm_qa")))
    settings = zerogpu.prepare(given)
    assert settings.preload and not settings.batching and settings.max_audio_seconds == zerogpu.max_audio_seconds()
    registry = PipelineRegistry(settings)
    registry.preload(warm=not zerogpu.on_zerogpu())  # what app.py does: models exist before any GPU call
    assert zerogpu.on_zerogpu()  # so nothing ran: the warm-up would run the model outside a GPU call
    assert registry.loads == 4 and stand_in.model_calls == []

    seconds = long_speech(tmp_path / "long.wav", 100)
    images = []
    for i in range(4):
        images.append(tmp_path / f"{i}.png")
        Image.new("RGB", (32, 32), (i * 60, 255 - i * 60, 90)).save(images[-1])
    with serving(build_app(settings, registry), settings) as url:
        client = Client(url, verbose=False)
        text, segments, files = client.predict(handle_file(str(tmp_path / "long.wav")), api_name="/transcribe")
        assert "pipeline studio" in text.lower() and segments[-1]["end"] > 90 and len(files) == 4
        jobs = [client.submit(handle_file(str(p)), top_k=2, api_name="/classify_image") for p in images]
        assert all(len(job.result(timeout=120)) == 2 for job in jobs)
        client.predict([handle_file(str(p)) for p in images], api_name="/classify_images")
        jobs = [client.submit(f"my {thing} broke", "urgent, not urgent", api_name="/classify_text")
                for thing in ("phone", "car", "tv")]
        assert all(set(job.result(timeout=120)["labels"]) == {"urgent", "not urgent"} for job in jobs)
        client.predict("one\ntwo\nthree", None, "a, b", api_name="/classify_texts")
        many = client.predict([handle_file(str(SPEECH)), handle_file(str(SPEECH))], api_name="/transcribe_many")
        assert "pipeline studio" in str(many).lower()
        # Live decoding would run on worker threads, outside any GPU call: ZeroGPU gets a note instead.
        page = httpx.get(f"{url}config").text
        assert "speech-live-unavailable" in page and "speech-live-audio" not in page
        answers = client.predict(handle_file(str(INVOICE)), "What is the invoice number?", api_name="/answer_document")
        assert answers and set(answers[0]) == {"answer", "score", "page", "box"}
        # A bad input's own message crosses the GPU call (the real package keeps only gr.Error's).
        with pytest.raises(AppError, match="No audio was given"):
            client.predict(None, api_name="/transcribe")

    quick = build_interface(registry.get("automatic-speech-recognition"), settings=settings)
    quick_settings = settings.replace(port=free_port())
    with serving(quick, quick_settings) as url:
        transcript, _ = Client(url, verbose=False).predict(handle_file(str(SPEECH)), api_name="/predict")
        assert "pipeline studio" in transcript.lower()

    assert registry.loads == 4  # nothing loaded lazily inside a GPU call
    assert stand_in.outside() == []
    assert {"transcribe_audio", "transcribe_many", "classify_image", "classify_images", "classify_text",
            "classify_texts", "answer_document", "run"} <= stand_in.functions_with_model_calls()
    asked = {}
    for name, seconds_asked in stand_in.durations:
        asked.setdefault(name, seconds_asked)  # each function's first call
    assert asked["transcribe_audio"] == zerogpu.seconds_for_audio(seconds) > zerogpu.BASE_SECONDS
    assert asked["run"] == zerogpu.seconds_for_audio(sf.info(SPEECH).duration) < zerogpu.DEFAULT_SECONDS
    assert asked["classify_image"] == zerogpu.ONE_ITEM_SECONDS
    assert asked["answer_document"] == zerogpu.MANY_ITEMS_SECONDS


def test_the_stand_in_sees_a_batcher_thread_run_the_model_outside_the_gpu_call(stand_in, tiny_model):
    """Why the batcher steps aside on ZeroGPU: with it on, the model runs on its worker thread."""
    from PIL import Image

    from engine.batching import MicroBatcher
    from engine.registry import load_pipeline, PipelineKey
    from engine.vision import classify_with

    pipe = load_pipeline(PipelineKey("image-classification", str(tiny_model("vit_classifier")), None, "cpu",
                                     "float32"))
    image = Image.new("RGB", (32, 32))
    for enabled, outside in ((True, True), (False, False)):
        stand_in.model_calls.clear()
        batcher = MicroBatcher(4, enabled=enabled)
        zerogpu.gpu(lambda: classify_with(batcher, pipe, [image], 1))()
        assert stand_in.model_calls and bool(stand_in.outside()) is outside


def test_long_audio_asks_for_more_than_the_default_from_the_header_alone(tmp_path, monkeypatch):
    path = tmp_path / "meeting.flac"
    sf.write(path, np.zeros(16000 * 20 * 60, np.float32), 16000)  # 20 minutes
    monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("the estimate must not decode the audio"))
    asked = zerogpu.speech_seconds(str(path), "openai/whisper-tiny", "segments")
    assert asked == zerogpu.BASE_SECONDS + 60 > zerogpu.DEFAULT_SECONDS
    assert zerogpu.speech_seconds(None, "model") == zerogpu.BASE_SECONDS  # no file: the handler says why
    assert zerogpu.seconds_for_audio(10 * 3600) == zerogpu.MAX_SECONDS
    assert zerogpu.seconds_for_audio(zerogpu.max_audio_seconds()) == zerogpu.MAX_SECONDS
    assert zerogpu.quick_seconds("some text") == zerogpu.DEFAULT_SECONDS


def test_a_failing_estimate_falls_back_to_the_default(stand_in):
    def broken(*args):
        raise RuntimeError("no header")

    zerogpu.gpu(lambda x: x, duration=broken)(1)
    assert stand_in.durations[-1][1] == zerogpu.DEFAULT_SECONDS


def test_zerogpu_is_detected_as_the_spaces_package_does():
    assert zerogpu.on_zerogpu({"SPACES_ZERO_GPU": "true"}) and zerogpu.on_zerogpu({"SPACES_ZERO_GPU": "1"})
    assert not zerogpu.on_zerogpu({}) and not zerogpu.on_zerogpu({"SPACES_ZERO_GPU": "false"})


def test_off_zerogpu_settings_are_left_alone(monkeypatch):
    from engine.settings import Settings

    monkeypatch.delenv(zerogpu.ZEROGPU_ENV, raising=False)
    settings = Settings.from_env(env={})
    assert zerogpu.prepare(settings) is settings
    adjusted = zerogpu.zerogpu_settings(settings.replace(dtype="float16"))
    assert adjusted.dtype == "float16" and zerogpu.zerogpu_settings(settings).dtype == zerogpu.ZEROGPU_DTYPE
