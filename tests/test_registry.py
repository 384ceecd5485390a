import threading
import time
import weakref

import pytest
import torch

from engine.errors import StudioError
from engine.registry import (TASKS, ModelLoadError, ModelNotAllowed, PipelineRegistry, allowed_models,
                             check_model_allowed)
from engine.settings import Settings


class FakePipe:
    def __init__(self, key):
        self.key = key
        self.model = torch.nn.Linear(4, 4)


class CountingLoader:
    def __init__(self, delay=0.0, fail_times=0):
        self.calls, self.delay, self.fail_times = [], delay, fail_times
        self.lock = threading.Lock()

    def __call__(self, key):
        with self.lock:
            self.calls.append(key)
            fail = len(self.calls) <= self.fail_times
        time.sleep(self.delay)
        if fail:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")
        return FakePipe(key)


def registry(loader, **kw):
    return PipelineRegistry(Settings(device="cpu", **kw), loader=loader)


def test_task_table_is_data_with_pinned_defaults():
    for task, spec in TASKS.items():
        assert spec.revision, task
        assert spec.default_model in spec.curated or spec.default_model
    with pytest.raises(TypeError):
        TASKS["x"] = None  # type: ignore[index]


def test_nothing_loads_until_asked_then_cached():
    loader = CountingLoader()
    reg = registry(loader)
    assert loader.calls == [] and reg.status() == []
    a = reg.get("image-classification")
    b = reg.get("image-classification")
    assert a is b and len(loader.calls) == 1
    key = loader.calls[0]
    assert (key.task, key.model, key.revision, key.device, key.dtype) == (
        "image-classification", "google/vit-base-patch16-224", "3f49326", "cpu", "float32")


def test_eight_threads_on_a_cold_key_cause_one_load():
    loader = CountingLoader(delay=0.3)
    reg = registry(loader)
    results, barrier = [], threading.Barrier(8)

    def ask():
        barrier.wait()
        results.append(reg.get("zero-shot-classification"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loader.calls) == 1 and reg.loads == 1
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_lru_eviction_beyond_max_loaded_frees_the_model():
    reg = registry(CountingLoader(), max_loaded=2)
    first = reg.get("image-classification", "m/a")
    ref = weakref.ref(first.model)
    reg.get("image-classification", "m/b")
    reg.get("image-classification", "m/a")  # a is now most recent
    del first
    reg.get("image-classification", "m/c")  # evicts b
    assert [s["model"] for s in reg.status()] == ["m/a", "m/c"]
    reg.get("image-classification", "m/d")  # evicts a
    assert [s["model"] for s in reg.status()] == ["m/c", "m/d"]
    assert ref() is None, "an evicted model must be garbage collected"


def test_failed_load_is_clear_and_not_cached():
    loader = CountingLoader(fail_times=1)
    reg = registry(loader)
    with pytest.raises(ModelLoadError) as err:
        reg.get("image-classification", "someone/missing")
    assert "someone/missing" in str(err.value)
    assert "not found locally and the Hugging Face Hub is unreachable" in str(err.value)
    assert reg.status() == []
    assert reg.get("image-classification", "someone/missing") is not None  # retry works
    assert len(loader.calls) == 2


def test_waiters_see_the_same_failure():
    loader = CountingLoader(delay=0.2, fail_times=1)
    reg = registry(loader)
    errors = []

    def ask():
        try:
            reg.get("image-classification", "x/y")
        except ModelLoadError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4 and len(loader.calls) == 1


def test_status_and_unload():
    reg = registry(CountingLoader())
    reg.get("image-classification", "m/a")
    (row,) = reg.status()
    assert row["model"] == "m/a" and row["device"] == "cpu" and row["dtype"] == "float32"
    assert row["parameters"] == 20 and row["memory_mb"] >= 0 and row["load_seconds"] >= 0
    assert reg.unload(row["id"]) is True
    assert reg.status() == [] and reg.unload(row["id"]) is False


def test_model_allow_list():
    s = Settings(image_model="/models/mine")
    assert allowed_models("image-classification", s)[0] == "/models/mine"
    check_model_allowed("image-classification", "google/vit-base-patch16-224", s)
    with pytest.raises(ModelNotAllowed, match="not offered here"):
        check_model_allowed("image-classification", "evil/model", s)
    anyone = Settings(allow_any_model=True)
    check_model_allowed("image-classification", "someone/model", anyone)
    for typed in ("/etc/passwd", "../x", "a/b/c", "http://x/y"):
        with pytest.raises(ModelNotAllowed):
            check_model_allowed("image-classification", typed, anyone)


# --- the real loader, offline -------------------------------------------------------------

def test_local_folder_loads_offline_and_runs(tiny_model):
    from PIL import Image

    folder = tiny_model("vit_classifier")
    reg = PipelineRegistry(Settings(device="cpu", image_model=str(folder)))
    pipe = reg.get("image-classification")
    out = pipe(Image.new("RGB", (40, 40), "red"), top_k=2)
    assert len(out) == 2 and {"label", "score"} <= set(out[0])
    (row,) = reg.status()
    assert row["model"] == str(folder) and row["parameters"] > 0 and row["memory_bytes"] > 0
    assert next(pipe.model.parameters()).dtype == torch.float32


def test_hub_id_offline_is_a_clear_error():
    reg = PipelineRegistry(Settings(device="cpu", offline=True))
    with pytest.raises(ModelLoadError, match="not found locally and offline mode is on"):
        reg.get("image-classification", "nobody/does-not-exist")
    assert reg.status() == []


def test_missing_folder_and_wrong_task(tmp_path, tiny_model):
    reg = PipelineRegistry(Settings(device="cpu"))
    with pytest.raises(ModelLoadError, match="no model folder at /no/such/folder"):
        reg.get("image-classification", "/no/such/folder")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="incomplete or corrupt"):
        reg.get("image-classification", str(broken))
    with pytest.raises(ModelLoadError, match="not a model for the task image-classification"):
        reg.get("image-classification", str(tiny_model("bert_nli")))
    assert isinstance(ModelLoadError("t", "m", "r"), StudioError)


def test_device_map_auto_on_cpu_with_max_memory(tiny_model):
    """The device_map path (accelerate placement) runs on a CPU-only machine too."""
    reg = PipelineRegistry(Settings(device="cpu", device_map="auto", max_memory="cpu=2GiB",
                                    zero_shot_model=str(tiny_model("bert_nli"))))
    pipe = reg.get("zero-shot-classification")
    out = pipe("this is urgent", candidate_labels=["urgent", "phone"])
    assert sorted(out["labels"]) == ["phone", "urgent"]
    (row,) = reg.status()
    assert row["id"].endswith("device_map=auto | float32") and row["memory_bytes"] > 0 and "cpu" in row["memory_by_device_mb"]


def test_8bit_without_bitsandbytes_is_a_clear_error():
    pytest.importorskip("torch")
    try:
        import bitsandbytes  # noqa: F401
        pytest.skip("bitsandbytes is installed here")
    except ImportError:
        pass
    from engine.devices import DeviceError

    with pytest.raises(DeviceError, match=r"8-bit loading needs the bitsandbytes package \(pip install bitsandbytes\)"):
        PipelineRegistry(Settings(device="cpu", load_in_8bit=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_offload_part_of_the_model_to_cpu_on_one_gpu(tiny_model):
    """max_memory forces part of the model off the GPU; answers match a CPU-only load."""
    from transformers import AutoConfig, WhisperForConditionalGeneration

    folder = tiny_model("whisper_en")
    cpu = PipelineRegistry(Settings(device="cpu", asr_model=str(folder))).get("automatic-speech-recognition")
    size = sum(p.numel() * 4 for p in cpu.model.parameters())
    reg = PipelineRegistry(Settings(device="cuda", dtype="float32", device_map="auto",
                                    max_memory=f"0={size // 3}B,cpu=8GiB", asr_model=str(folder)))
    pipe = reg.get("automatic-speech-recognition")
    assert {"0", "cpu"} <= {str(v) for v in pipe.model.hf_device_map.values()}
    (row,) = reg.status()
    assert {"cuda:0", "cpu"} <= set(row["memory_by_device_mb"])
    import numpy as np

    audio = np.random.default_rng(0).standard_normal(16000).astype("float32") * 0.1
    kwargs = {"generate_kwargs": {"max_new_tokens": 8, "num_beams": 1}}
    assert pipe(audio.copy(), **kwargs)["text"] == cpu(audio.copy(), **kwargs)["text"]
    before = torch.cuda.memory_allocated()
    reg.unload_all()
    del pipe
    import gc

    gc.collect()
    assert torch.cuda.memory_allocated() < before
