"""Faults: broken model folders, the Hub out of reach, out of memory at load and at inference.

Each must reach the user as one clear message, leave nothing broken in the registry, and the
next request must work. Also: the model allow-list through the API, and trust_remote_code.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import weakref
from pathlib import Path

import gradio as gr
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from engine.registry import TASKS, PipelineKey, PipelineRegistry, load_pipeline
from engine.settings import Settings
from tests.conftest import free_port, serving
from ui.app import build_app
from ui.common import OUT_OF_MEMORY, user_errors

TASK = "zero-shot-classification"
TEXT, LABELS = "this is urgent, call me", "urgent, phone"


class FaultyLoader:
    """The real loader, unless a fault is armed for the next load."""

    def __init__(self):
        self.fault: BaseException | None = None
        self.keys: list[PipelineKey] = []
        self.held: list[weakref.ref] = []  # the tensors the failed loads had taken

    def __call__(self, key: PipelineKey):
        self.keys.append(key)
        fault, self.fault = self.fault, None
        if fault is not None:
            taken = torch.empty(2**20)  # what a load has taken when it runs out of memory
            self.held.append(weakref.ref(taken))
            raise fault
        return load_pipeline(key)


@dataclasses.dataclass
class App:
    client: Client
    registry: PipelineRegistry
    loader: FaultyLoader
    folder: Path  # the zero-shot model the app was started with, a copy the tests may damage
    intact: Path


@pytest.fixture(scope="module")
def app(tiny_model, tmp_path_factory):
    """The app with --allow-any-model, its zero-shot model a copy of the tiny NLI model."""
    intact = Path(tiny_model("bert_nli"))
    folder = tmp_path_factory.mktemp("models") / "nli"
    shutil.copytree(intact, folder)
    settings = Settings.from_env(env={}, device="cpu", port=free_port(), zero_shot_model=str(folder),
                                 image_model=str(tiny_model("vit_classifier")), allow_any_model=True)
    loader = FaultyLoader()
    registry = PipelineRegistry(settings, loader=loader)
    with serving(build_app(settings, registry), settings) as url:
        yield App(Client(url, verbose=False, download_files=False), registry, loader, folder, intact)


@pytest.fixture
def fresh(app):
    """Each test starts with nothing loaded and the model folder intact."""
    app.registry.unload_all()
    shutil.rmtree(app.folder)
    shutil.copytree(app.intact, app.folder)
    yield app
    app.registry.unload_all()


def classify(app: App, **kw):
    return app.client.predict(kw.pop("text", TEXT), kw.pop("labels", LABELS), api_name="/classify_text", **kw)


def assert_answers(app: App) -> None:
    result = classify(app)
    assert sorted(result["labels"]) == ["phone", "urgent"] and sum(result["scores"]) == pytest.approx(1)
    (row,) = app.registry.status()
    assert row["model"] == app.folder.name and row["parameters"] > 0


def assert_nothing_cached(app: App) -> None:
    assert app.registry.status() == []
    assert not app.registry.is_loaded(app.registry.key_for(TASK))


# --- broken model folders --------------------------------------------------------------------

def _garbage_weights(d: Path) -> None:
    (d / "model.safetensors").write_bytes(b"\x00 not safetensors " * 64)


def _cut_weights(d: Path) -> None:
    weights = d / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])


def _config_only(d: Path) -> None:
    for p in d.iterdir():
        if p.name != "config.json":
            p.unlink()


def _no_tokenizer(d: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (d / name).unlink()


@pytest.mark.parametrize("damage, reason", [
    (_garbage_weights, r"the model folder is incomplete or corrupt \(Error while deserializing header"),
    (_cut_weights, r"the model folder is incomplete or corrupt \(Error while deserializing header"),
    (_config_only, r"the model folder is incomplete or corrupt \(OSError: Error no file named model\.safetensors"),
    (_no_tokenizer, r"the model has no tokenizer files \(tokenizer\.json, or tokenizer_config\.json"),
], ids=["garbage weights", "truncated weights", "config.json only", "missing tokenizer"])
def test_a_broken_model_folder_is_a_clear_error_and_the_repaired_one_loads(fresh, damage, reason):
    damage(fresh.folder)
    with pytest.raises(AppError) as err:
        classify(fresh)
    message = str(err.value)
    assert message.startswith(f"Could not load '{fresh.folder.name}' for zero-shot-classification: ")
    assert re.search(reason, message), message
    assert "Traceback" not in message
    assert_nothing_cached(fresh)
    shutil.rmtree(fresh.folder)
    shutil.copytree(fresh.intact, fresh.folder)  # the operator puts the files back: no restart needed
    assert_answers(fresh)


def test_a_hub_id_offline_names_the_model_and_is_not_cached(fresh):
    with pytest.raises(AppError, match=r"Could not load 'nobody/no-such-model' for zero-shot-classification: "
                                       r"not found locally and offline mode is on"):
        classify(fresh, model="nobody/no-such-model")
    assert fresh.loader.keys[-1].model == "nobody/no-such-model"  # --allow-any-model: it was tried
    assert_nothing_cached(fresh)
    assert_answers(fresh)


# --- out of memory ---------------------------------------------------------------------------

@pytest.fixture
def cuda_calls(monkeypatch):
    """Pretend a GPU is there; record, at each empty_cache(), whether the failed call's tensor was gone."""
    calls: list[bool] = []
    held: list[weakref.ref] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(all(r() is None for r in held)))
    return calls, held


def test_out_of_memory_while_loading(fresh, cuda_calls):
    calls, held = cuda_calls
    fresh.loader.held = held
    fresh.loader.fault = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(AppError, match=rf"Could not load '{fresh.folder.name}' for zero-shot-classification: out of "
                                       r"memory on cpu while loading \(CUDA out of memory\. Tried to allocate"):
        classify(fresh)
    assert held and calls and calls[-1] is True, "the GPU cache must be emptied after the failed load's tensors are freed"
    assert_nothing_cached(fresh)
    assert_answers(fresh)


def test_out_of_memory_during_inference(fresh, cuda_calls):
    calls, held = cuda_calls
    before = classify(fresh)
    loads = fresh.registry.loads
    pipe = fresh.registry.get(TASK)
    forward = pipe.model.forward

    def runs_out(*args, **kwargs):
        activations = torch.empty(2**20)
        held.append(weakref.ref(activations))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    pipe.model.forward = runs_out
    try:
        with pytest.raises(AppError) as err:
            classify(fresh)
    finally:
        pipe.model.forward = forward
    assert str(err.value) == OUT_OF_MEMORY
    assert held and calls and calls[-1] is True, "the GPU cache must be emptied after the failed forward's tensors are freed"
    (row,) = fresh.registry.status()  # the model itself is fine: it stays loaded and answers again
    assert row["model"] == fresh.folder.name
    assert classify(fresh) == before and fresh.registry.loads == loads


def test_the_registry_frees_what_a_failed_load_took(cuda_calls):
    from engine.registry import ModelLoadError

    calls, held = cuda_calls
    loader = FaultyLoader()
    loader.held, loader.fault = held, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    registry = PipelineRegistry(Settings(device="cpu"), loader=loader)
    with pytest.raises(ModelLoadError, match="out of memory on cpu while loading"):
        registry.get(TASK, "someone/model")
    assert held and calls == [True] and registry.status() == []


def test_the_out_of_memory_handler_frees_after_letting_go_of_the_failed_call(cuda_calls):
    calls, held = cuda_calls

    @user_errors
    def handler():
        activations = torch.empty(2**20)
        held.append(weakref.ref(activations))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    with pytest.raises(gr.Error, match="ran out of memory on this input"):
        handler()
    assert calls == [True]


# --- which models may load, and how ----------------------------------------------------------

@pytest.fixture(scope="module")
def curated_app():
    """The app as shipped: only the models given at start and the curated ones."""
    settings = Settings.from_env(env={}, device="cpu", port=free_port())
    registry = PipelineRegistry(settings, loader=lambda key: pytest.fail(f"nothing may load, not {key.model}"))
    with serving(build_app(settings, registry), settings) as url:
        yield Client(url, verbose=False, download_files=False), registry


def _inputs(tmp_path: Path) -> dict[str, dict]:
    import numpy as np
    import soundfile as sf

    sf.write(str(tmp_path / "a.wav"), (0.1 * np.random.default_rng(0).standard_normal(16000)).astype("float32"), 16000)
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    return {
        "/transcribe": {"audio": handle_file(str(tmp_path / "a.wav")), "param": "model"},
        "/classify_image": {"image": handle_file(str(tmp_path / "a.png")), "param": "model"},
        "/classify_text": {"text": TEXT, "labels": LABELS, "param": "model"},
        "/answer_document": {"document": handle_file(str(tmp_path / "a.png")), "question": "Total?",
                             "param": "model"},
    }


ENDPOINTS = ["/transcribe", "/classify_image", "/classify_text", "/answer_document"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_model_not_offered_is_refused_without_loading(curated_app, tmp_path, endpoint):
    client, registry = curated_app
    kwargs = _inputs(tmp_path)[endpoint]
    param = kwargs.pop("param")
    for model in ("someone/else", "/etc", "../models/x"):
        offered = re.escape(repr(TASKS_DEFAULT[endpoint]))
        with pytest.raises(AppError, match=rf"Value: {re.escape(model)} is not in the list of choices: \[.*{offered}"):
            client.predict(**kwargs, **{param: model}, api_name=endpoint)
    assert registry.loads == 0


TASKS_DEFAULT = {"/transcribe": TASKS["automatic-speech-recognition"].default_model,
                 "/classify_image": TASKS["image-classification"].default_model,
                 "/classify_text": TASKS["zero-shot-classification"].default_model,
                 "/answer_document": TASKS["document-question-answering"].default_model}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_with_allow_any_model_a_hub_id_is_tried_and_a_path_is_not(fresh, tmp_path, endpoint):
    kwargs = _inputs(tmp_path)[endpoint]
    param = kwargs.pop("param")
    tried = len(fresh.loader.keys)
    with pytest.raises(AppError, match=r"Could not load 'someone/else' for [a-z-]+: not found locally and offline"):
        fresh.client.predict(**kwargs, **{param: "someone/else"}, api_name=endpoint)
    assert [k.model for k in fresh.loader.keys[tried:]] == ["someone/else"]
    for typed in ("/etc", "../models/x", "a/b/c"):
        with pytest.raises(AppError, match=rf"'{re.escape(typed)}' is not a Hub model id; use the form 'owner/name'"):
            fresh.client.predict(**kwargs, **{param: typed}, api_name=endpoint)
    assert len(fresh.loader.keys) == tried + 1
    assert_nothing_cached(fresh)


def test_the_loader_never_passes_trust_remote_code(monkeypatch):
    import transformers

    seen: list[dict] = []

    class Fake:
        tokenizer = None

    def pipeline(**kwargs):
        seen.append(kwargs)
        return Fake()

    monkeypatch.setattr(transformers, "pipeline", pipeline)
    for task in TASKS:
        for device_map in (None, "auto"):
            load_pipeline(PipelineKey(task, "someone/model", "abc123", "cpu", "float32", device_map))
    assert len(seen) == 2 * len(TASKS)
    assert all(kwargs.get("trust_remote_code") is False for kwargs in seen)
    assert all("trust_remote_code" not in kwargs.get("model_kwargs", {}) for kwargs in seen)


def test_no_setting_flag_or_api_parameter_turns_on_remote_code(curated_app, capsys):
    from app import build_parser

    assert not [f.name for f in dataclasses.fields(Settings) if "trust" in f.name or "remote" in f.name]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "remote" not in capsys.readouterr().out.lower()
    api = json.dumps(curated_app[0].view_api(print_info=False, return_format="dict")).lower()
    assert "trust" not in api and "remote_code" not in api
