"""gpu(fn): run a handler under Hugging Face's @spaces.GPU on Spaces, unchanged everywhere else."""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable


def gpu(fn: Callable[..., Any] | None = None, *, duration: int | None = None) -> Any:
    """Decorate a handler that uses the GPU; usable as @gpu or @gpu(duration=120).

    On a Space (SPACE_ID set) with Hugging Face's ``spaces`` package installed this is
    ``spaces.GPU`` (it only acts on ZeroGPU hardware). Elsewhere, or when ``import spaces``
    finds only this repository's own spaces/ folder (a namespace package with no GPU),
    the function comes back as it was.
    """
    if fn is None:
        return lambda f: gpu(f, duration=duration)
    decorator = _spaces_gpu()
    if decorator is None:
        return fn
    return decorator(duration=duration)(fn) if duration else decorator(fn)


def _spaces_gpu() -> Callable[..., Any] | None:
    if not os.environ.get("SPACE_ID"):
        return None
    try:
        spaces = importlib.import_module("spaces")
    except Exception:  # noqa: BLE001 - absent or broken: the handler still runs, on whatever device it has
        return None
    return getattr(spaces, "GPU", None)
