"""ZeroGPU (Hugging Face Spaces): model work runs under @spaces.GPU there, unchanged everywhere else.

On ZeroGPU a GPU exists only while a function decorated with ``spaces.GPU`` runs, in a process of
its own that gets the function's arguments (and gives back its result) by pickling. So:
- a tab's whole handler is decorated (``@gpu(duration=...)`` above ``@user_errors``, so errors come
  back as the same one-line gr.Error): its arguments are paths, strings and numbers, and the
  pipeline it asks the registry for is already there, loaded at start (``zerogpu_settings`` turns
  ``preload`` on);
- the micro-batcher steps aside (its worker thread would run the model outside the GPU process);
- the duration asked for fits the input: speech by the audio's length, read from the file's header.
"""

from __future__ import annotations

import importlib
import math
import os
from typing import Any, Callable

ZEROGPU_ENV = "SPACES_ZERO_GPU"  # set by Spaces on ZeroGPU hardware; the spaces package reads it too
DEFAULT_SECONDS = 60  # ZeroGPU's own default duration
BASE_SECONDS = 20  # worker start-up and moving the models onto the GPU, before any work
SECONDS_PER_AUDIO_SECOND = 0.05  # 3 s a minute of audio: ~2.5x the H200's chunked whisper-large-v3 rate
MAX_SECONDS = 300  # the most one call asks for; longer audio is refused on ZeroGPU (zerogpu_settings)
ZEROGPU_DTYPE = "bfloat16"  # ZeroGPU's GPUs are H200 slices; no CUDA probe in the main process
# Fixed estimates for the other tabs (seconds): one input, or a batch of them / many pages.
ONE_ITEM_SECONDS = 30
MANY_ITEMS_SECONDS = 120


def on_zerogpu(env: Any = None) -> bool:
    """Whether this process runs on ZeroGPU hardware (the spaces package's own test)."""
    value = (os.environ if env is None else env).get(ZEROGPU_ENV)
    return value is not None and value.lower() in ("1", "t", "true")


def gpu(fn: Callable[..., Any] | None = None, *, duration: int | Callable[..., int] | None = None) -> Any:
    """Decorate a handler that uses the GPU; usable as @gpu or @gpu(duration=120 or a callable).

    On a Space (SPACE_ID set) with Hugging Face's ``spaces`` package installed this is
    ``spaces.GPU`` (it only acts on ZeroGPU hardware). Elsewhere, or when ``import spaces``
    finds only this repository's own spaces/ folder (a namespace package with no GPU),
    the function comes back as it was. A callable duration gets the handler's arguments.
    """
    if fn is None:
        return lambda f: gpu(f, duration=duration)
    decorator = _spaces_gpu()
    if decorator is None:
        return fn
    if callable(duration):
        duration = _never_fails(duration)
    return decorator(duration=duration)(fn) if duration else decorator(fn)


def _spaces_gpu() -> Callable[..., Any] | None:
    if not os.environ.get("SPACE_ID"):
        return None
    try:
        spaces = importlib.import_module("spaces")
    except Exception:  # noqa: BLE001 - absent or broken: the handler still runs, on whatever device it has
        return None
    return getattr(spaces, "GPU", None)


def _never_fails(estimate: Callable[..., int]) -> Callable[..., int]:
    """An estimate runs before the request is scheduled: a failure there must not fail the request."""

    def safe(*args: Any, **kwargs: Any) -> int:
        try:
            return int(estimate(*args, **kwargs))
        except Exception:  # noqa: BLE001 - the handler itself reports a bad input, in its own words
            return DEFAULT_SECONDS

    safe.__name__ = getattr(estimate, "__name__", "estimate")
    return safe


def audio_seconds(path: str) -> float:
    """An audio file's length from its header (soundfile, else ffprobe); 0.0 when unknown."""
    import soundfile as sf

    try:
        return float(sf.info(path).duration)
    except Exception:  # noqa: BLE001 - not a format soundfile reads: ask ffprobe
        pass
    import subprocess

    try:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                              path], capture_output=True, text=True, timeout=30, check=False).stdout
        return float(out.strip() or 0.0)
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0.0


def seconds_for_audio(seconds: float) -> int:
    """GPU seconds to ask for a recording this long: more than the 60 s default for long audio."""
    return min(MAX_SECONDS, math.ceil(BASE_SECONDS + SECONDS_PER_AUDIO_SECOND * max(0.0, seconds)))


def longest_audio(*args: Any, **kwargs: Any) -> float:
    """The longest audio among a handler's file arguments (whatever they are called), in seconds."""
    found = [audio_seconds(str(v)) for v in (*args, *kwargs.values())
             if isinstance(v, (str, os.PathLike)) and str(v) and os.path.isfile(v)]
    return max(found, default=0.0)


def speech_seconds(*args: Any, **kwargs: Any) -> int:
    """Duration estimate for a speech handler: from the audio's length."""
    return seconds_for_audio(longest_audio(*args, **kwargs))


def quick_seconds(*args: Any, **kwargs: Any) -> int:
    """Duration estimate for quick-launch's /predict: by the audio's length when given one, else the default."""
    seconds = longest_audio(*args, **kwargs)
    return seconds_for_audio(seconds) if seconds else DEFAULT_SECONDS


def max_audio_seconds() -> float:
    """The longest audio whose estimate fits MAX_SECONDS."""
    return (MAX_SECONDS - BASE_SECONDS) / SECONDS_PER_AUDIO_SECOND


def zerogpu_settings(settings: Any) -> Any:
    """Settings as ZeroGPU needs them: models loaded at start, no micro-batcher thread, bf16 for 'auto',
    and no audio longer than one GPU call can transcribe."""
    return settings.replace(preload=True, batching=False,
                            dtype=ZEROGPU_DTYPE if settings.dtype == "auto" else settings.dtype,
                            max_audio_seconds=min(settings.max_audio_seconds, max_audio_seconds()))


def prepare(settings: Any) -> Any:
    """At start, before torch touches CUDA: on ZeroGPU import spaces first (it patches torch, and refuses
    to once CUDA is initialised) and return zerogpu_settings; elsewhere the settings unchanged."""
    if not on_zerogpu():
        return settings
    importlib.import_module("spaces")
    return zerogpu_settings(settings)
