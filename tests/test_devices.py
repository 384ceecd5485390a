import pytest
import torch

from engine import devices
from engine.devices import DeviceError, resolve_device, resolve_dtype, resolve_placement


@pytest.fixture
def fake(monkeypatch):
    def set_machine(cuda=0, mps=False, bf16=True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    return set_machine


def test_auto_prefers_cuda_then_mps_then_cpu(fake):
    fake(cuda=2, mps=True)
    assert resolve_device("auto") == "cuda:0"
    fake(cuda=0, mps=True)
    assert resolve_device("auto") == "mps"
    fake(cuda=0, mps=False)
    assert resolve_device("auto") == "cpu"


def test_explicit_device_must_exist(fake):
    fake(cuda=1)
    assert resolve_device("cuda") == "cuda:0"
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(DeviceError, match=r"'cuda:3' is not available here; devices found: cpu, cuda:0"):
        resolve_device("cuda:3")
    fake(cuda=0)
    with pytest.raises(DeviceError, match="devices found: cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="'mps' is not available"):
        resolve_device("mps")


def test_dtype_auto_per_device(fake):
    fake(cuda=1, bf16=False)
    assert resolve_dtype("auto", "cuda:0") == torch.float16
    fake(cuda=1, bf16=True)
    assert resolve_dtype("auto", "cuda:0") == torch.bfloat16
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "mps") == torch.float32
    assert resolve_dtype("float16", "cpu") == torch.float16
    with pytest.raises(DeviceError, match="dtype 'int8' is not supported"):
        resolve_dtype("int8", "cpu")


def test_placement_with_device_map(fake):
    fake(cuda=0)
    p = resolve_placement("auto", "auto", "auto", "0=1GiB,cpu=2GiB")
    assert (p.device, p.dtype, p.device_map, p.max_memory) == ("cpu", torch.float32, "auto", (("0", "1GiB"), ("cpu", "2GiB")))
    assert resolve_placement("cpu").device_map is None
    with pytest.raises(DeviceError, match="must look like"):
        devices.parse_max_memory("lots")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_release_memory_gives_back_what_a_failed_call_on_the_gpu_took():
    """A real CUDA OOM in a worker thread, its exception kept by a future (as the micro-batcher does)."""
    from concurrent.futures import Future
    import threading

    torch.cuda.empty_cache()
    allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    kept: Future = Future()

    def forward():
        try:
            activations = torch.ones(512 * 2**20, dtype=torch.uint8, device="cuda")  # noqa: F841 - held by the frame
            torch.empty(2**50, dtype=torch.uint8, device="cuda")  # more than any GPU has
        except torch.OutOfMemoryError as exc:
            kept.set_exception(exc)

    worker = threading.Thread(target=forward)
    worker.start()
    worker.join()
    with pytest.raises(torch.OutOfMemoryError) as err:
        kept.result()
    assert torch.cuda.memory_allocated() >= allocated + 512 * 2**20  # still held through the traceback
    devices.release_memory(err.value)
    assert torch.cuda.memory_allocated() == allocated
    assert torch.cuda.memory_reserved() <= reserved + 2**20
