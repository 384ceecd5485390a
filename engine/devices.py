"""Resolve device and dtype once; after this only concrete values travel."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.errors import StudioError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class DeviceError(StudioError, ValueError):
    """A device or dtype that this machine cannot give."""


@dataclass(frozen=True)
class Placement:
    """Where and how a model is loaded: a concrete device (or accelerate's map) and dtype."""

    device: str  # "cpu", "cuda:0", "mps"; with device_map the primary device
    dtype: torch.dtype
    device_map: str | None = None  # "auto" lets accelerate place the weights
    max_memory: tuple[tuple[str, str], ...] | None = None
    quantization: str | None = None  # "8bit" through bitsandbytes

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def available_devices() -> list[str]:
    """Devices this machine has, e.g. ['cpu', 'cuda:0', 'cuda:1']."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def resolve_device(requested: str = "auto") -> str:
    """'auto' -> cuda:0, else mps, else cpu; an explicit device must exist."""
    requested = (requested or "auto").strip().lower()
    found = available_devices()
    if requested == "auto":
        for candidate in ("cuda:0", "mps"):
            if candidate in found:
                return candidate
        return "cpu"
    if requested == "cuda":
        requested = "cuda:0"
    if requested in found:
        return requested
    raise DeviceError(f"device {requested!r} is not available here; devices found: {', '.join(found)}")


def resolve_dtype(requested: str, device: str) -> torch.dtype:
    """'auto' -> float16 on CUDA (bfloat16 where supported), float32 on CPU and MPS."""
    requested = (requested or "auto").strip().lower()
    if requested != "auto":
        if requested not in _DTYPES:
            raise DeviceError(f"dtype {requested!r} is not supported; use one of auto, {', '.join(_DTYPES)}")
        return _DTYPES[requested]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def parse_max_memory(spec: str | None) -> tuple[tuple[str, str], ...] | None:
    """'0=20GiB,cpu=64GiB' -> (('0', '20GiB'), ('cpu', '64GiB'))."""
    if not spec:
        return None
    pairs = []
    for part in spec.split(","):
        name, sep, size = part.partition("=")
        if not sep or not name.strip() or not size.strip():
            raise DeviceError(f"max_memory entry {part!r} must look like '0=20GiB' or 'cpu=64GiB'")
        pairs.append((name.strip(), size.strip()))
    return tuple(pairs)


def resolve_placement(device: str = "auto", dtype: str = "auto", device_map: str = "none",
                      max_memory: str | None = None, load_in_8bit: bool = False) -> Placement:
    """The one place where user words become a concrete Placement."""
    if device_map not in (None, "none", "auto"):
        raise DeviceError(f"device_map must be 'none' or 'auto', not {device_map!r}")
    concrete = resolve_device(device)
    if load_in_8bit:
        _check_8bit(concrete)
    placement_map = "auto" if device_map == "auto" or load_in_8bit else None
    if placement_map:
        try:
            import accelerate  # noqa: F401
        except ImportError:
            raise DeviceError("device_map='auto' needs the 'accelerate' package: pip install accelerate") from None
    return Placement(concrete, resolve_dtype(dtype, concrete), placement_map, parse_max_memory(max_memory),
                     "8bit" if load_in_8bit else None)


def _check_8bit(device: str) -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise DeviceError("8-bit loading needs the bitsandbytes package (pip install bitsandbytes) "
                          "and a CUDA GPU; run without --load-in-8bit otherwise") from None
    if not device.startswith("cuda"):
        raise DeviceError(f"8-bit loading needs a CUDA GPU; the device here is {device}")


def release_memory(failure: BaseException | None = None) -> None:
    """Give back what a failed call took: the locals of the finished frames behind `failure` (and its
    causes), then unreachable objects, then the GPU's cached blocks.

    A failed forward's activations or a half-loaded model stay referenced by the exception's
    traceback for as long as anything holds the exception (a batcher's future, a registry waiter),
    so without clearing those frames emptying the cache would free nothing.
    """
    import gc
    import traceback

    seen: set[int] = set()
    while failure is not None and id(failure) not in seen:
        seen.add(id(failure))
        traceback.clear_frames(failure.__traceback__)  # frames still running are left alone
        failure = failure.__cause__ or failure.__context__
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
