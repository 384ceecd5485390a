import shutil
import threading
import time
import weakref

import pytest
import torch

from engine.errors import StudioError
from engine.registry import (model_source, TASKS, ModelLoadError, ModelNotAllowed, PipelineRegistry, allowed_models,
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


def test_a_failed_load_unloads_nothing(monkeypatch):
    """With the registry full, a model that cannot load (a Hub model while offline) leaves the working one."""
    monkeypatch.setattr("engine.registry._hub_offline", lambda: True)

    def loader(key):
        if key.model == "nobody/offline":
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")
        return FakePipe(key)

    reg = registry(loader, max_loaded=1)
    working = reg.get("image-classification", "m/working")
    with pytest.raises(ModelLoadError, match="offline mode is on"):
        reg.get("image-classification", "nobody/offline")
    assert [s["model"] for s in reg.status()] == ["m/working"] and list(reg.events) == []
    assert reg.get("image-classification", "m/working") is working  # no reload either


def test_a_successful_load_evicts_and_says_so():
    reg = registry(CountingLoader(), max_loaded=1)
    reg.get("image-classification", "m/a")
    reg.get("image-classification", "m/b")
    assert [s["model"] for s in reg.status()] == ["m/b"]
    (event,) = reg.events
    assert "unloaded m/a (image-classification) to make room for m/b" in event and "--max-loaded" in event


def test_out_of_memory_while_loading_unloads_the_oldest_and_tries_again():
    budget = {"left": 2}
    held: dict = {}

    def loader(key):
        if budget["left"] < 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        budget["left"] -= 1
        pipe = FakePipe(key)
        held[key.model] = pipe
        return pipe

    reg = registry(loader, max_loaded=4)
    reg.get("image-classification", "m/a")
    reg.get("image-classification", "m/b")
    original_release = reg._release

    def release(entries):  # what the evicted pipeline held goes back to the budget
        budget["left"] += len(entries)
        original_release(entries)

    reg._release = release
    reg.get("image-classification", "m/c")
    assert [s["model"] for s in reg.status()] == ["m/b", "m/c"]
    assert "unloaded m/a" in reg.events[-1] and "m/c ran out of memory while loading" in reg.events[-1]


def test_failed_load_is_clear_and_not_cached(monkeypatch):
    monkeypatch.setattr("engine.registry._hub_offline", lambda: False)  # the tests run with HF_HUB_OFFLINE=1
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
    assert allowed_models("image-classification", s)[0] == "mine"  # shown by name, never the server's path
    assert model_source("image-classification", "mine", s) == ("/models/mine", False)
    check_model_allowed("image-classification", "google/vit-base-patch16-224", s)
    with pytest.raises(ModelNotAllowed, match="not offered here"):
        check_model_allowed("image-classification", "evil/model", s)
    anyone = Settings(allow_any_model=True)
    check_model_allowed("image-classification", "someone/model", anyone)
    for typed in ("/etc/passwd", "../x", "a/b/c", "http://x/y"):
        with pytest.raises(ModelNotAllowed):
            check_model_allowed("image-classification", typed, anyone)


def test_a_visitors_owner_name_is_a_hub_id_never_a_server_folder(tmp_path, monkeypatch, tiny_model):
    """'private/nli' passes as a Hub id; a folder of that name in the server's working directory is not read."""
    shutil.copytree(tiny_model("bert_nli"), tmp_path / "private" / "nli")
    monkeypatch.chdir(tmp_path)
    anyone = Settings(device="cpu", allow_any_model=True, offline=True)
    check_model_allowed("zero-shot-classification", "private/nli", anyone)
    reg = PipelineRegistry(anyone)
    key = reg.key_for("zero-shot-classification", "private/nli")
    assert key.hub and key.label == "private/nli"
    with pytest.raises(ModelLoadError) as found:
        reg.get("zero-shot-classification", "private/nli")
    with pytest.raises(ModelLoadError) as missing:
        reg.get("zero-shot-classification", "private/none")
    # The same answer whether or not the folder exists: nothing tells a visitor what the server holds.
    assert str(found.value).replace("private/nli", "X") == str(missing.value).replace("private/none", "X")
    assert "offline mode is on" in str(found.value) and reg.status() == []


# --- the real loader, offline -------------------------------------------------------------

def test_local_folder_loads_offline_and_runs(tiny_model):
    from PIL import Image

    folder = tiny_model("vit_classifier")
    reg = PipelineRegistry(Settings(device="cpu", image_model=str(folder)))
    pipe = reg.get("image-classification")
    out = pipe(Image.new("RGB", (40, 40), "red"), top_k=2)
    assert len(out) == 2 and {"label", "score"} <= set(out[0])
    (row,) = reg.status()
    assert row["model"] == folder.name and row["parameters"] > 0 and row["memory_bytes"] > 0
    assert next(pipe.model.parameters()).dtype == torch.float32


def test_hub_id_offline_is_a_clear_error():
    reg = PipelineRegistry(Settings(device="cpu", offline=True))
    with pytest.raises(ModelLoadError, match="not found locally and offline mode is on"):
        reg.get("image-classification", "nobody/does-not-exist")
    assert reg.status() == []


def test_missing_folder_and_wrong_task(tmp_path, tiny_model):
    reg = PipelineRegistry(Settings(device="cpu"))
    with pytest.raises(ModelLoadError, match="no model folder 'folder'"):
        reg.get("image-classification", "/no/such/folder")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="incomplete or corrupt"):
        reg.get("image-classification", str(broken))
    with pytest.raises(ModelLoadError, match="not a model for the task image-classification"):
        reg.get("image-classification", str(tiny_model("bert_nli")))
    assert isinstance(ModelLoadError("t", "m", "r"), StudioError)


def test_device_map_auto_with_device_cpu_stays_on_cpu(tiny_model):
    """The device_map path (accelerate placement) runs on CPU, and --device cpu keeps it off any GPU."""
    reg = PipelineRegistry(Settings(device="cpu", device_map="auto",
                                    zero_shot_model=str(tiny_model("bert_nli"))))
    pipe = reg.get("zero-shot-classification")
    out = pipe("this is urgent", candidate_labels=["urgent", "phone"])
    assert sorted(out["labels"]) == ["phone", "urgent"]
    (row,) = reg.status()
    assert row["id"].endswith("device_map=auto | float32") and row["memory_bytes"] > 0
    assert set(row["memory_by_device_mb"]) == {"cpu"}


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
def test_offload_part_of_the_model_to_cpu_on_one_gpu(tmp_path):
    """max_memory forces part of the model off the GPU; answers match a one-device load; unload frees."""
    from scripts.device_map_check import build_model

    size = build_model(tmp_path / "nli", layers=6)
    text, labels = "this is urgent please call me now", ["urgent", "phone"]
    single = PipelineRegistry(Settings(device="cuda", dtype="float16", zero_shot_model=str(tmp_path / "nli")))
    expected = single.get("zero-shot-classification")(text, candidate_labels=labels)
    single.unload_all()
    before = torch.cuda.memory_allocated()
    reg = PipelineRegistry(Settings(device="cuda", dtype="float16", device_map="auto",
                                    max_memory=f"0={size // 2},cpu=8GiB", zero_shot_model=str(tmp_path / "nli")))
    got = reg.get("zero-shot-classification")(text, candidate_labels=labels)
    (row,) = reg.status()
    assert set(row["memory_by_device_mb"]) == {"cuda:0", "cpu"}
    assert row["memory_by_device_mb"]["cuda:0"] * 2**20 <= size // 2
    assert got["labels"] == expected["labels"]
    assert got["scores"] == pytest.approx(expected["scores"], abs=2e-2)
    reg.unload_all()
    assert torch.cuda.memory_allocated() <= before + 2**20


def test_hidden_cause_of_a_failed_load_is_surfaced():
    """transformers wraps the real error in 'Could not load model ... with any of the classes'."""
    from engine.registry import PipelineKey, _max_memory_kwarg, explain_load_error

    key = PipelineKey("zero-shot-classification", "org/m", None, "cpu", "float32")
    wrapped = ValueError("Could not load model m with any of the following classes: (A, B). See the original "
                         "errors:\n\nwhile loading with A, an error is thrown:\nTraceback ...\n"
                         "ValueError: `size` 12B is not in a valid format.\n")
    message = explain_load_error(key, wrapped, offline=False)
    assert "not a model for the task" not in message
    assert "ValueError: `size` 12B is not in a valid format." in message
    assert _max_memory_kwarg((("0", "123B"), ("1", "20GiB"), ("cpu", "456"))) == {0: 123, 1: "20GiB", "cpu": 456}
