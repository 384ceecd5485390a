"""The task table (data) and the cached, thread-safe PipelineRegistry."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import torch

from engine.devices import Placement, release_memory, resolve_placement
from engine.errors import StudioError
from engine.settings import Settings


@dataclass(frozen=True)
class TaskSpec:
    """One task: its default model pinned to a revision, and what users may pick."""

    default_model: str
    revision: str | None
    modality: str
    curated: tuple[str, ...] = ()
    pipeline_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


# Like SUPPORTED_TASKS in transformers/pipelines/__init__.py: default models pinned.
TASKS: Mapping[str, TaskSpec] = MappingProxyType({
    "automatic-speech-recognition": TaskSpec(
        "openai/whisper-tiny", "169d4a4341b33bc18d8881c4b69c2e104e1cc0af", "audio",
        curated=("openai/whisper-tiny", "openai/whisper-base", "openai/whisper-small",
                 "openai/whisper-large-v3", "distil-whisper/distil-large-v3",
                 "facebook/wav2vec2-base-960h"),
    ),
    "image-classification": TaskSpec(
        "google/vit-base-patch16-224", "3f49326", "image",
        curated=("google/vit-base-patch16-224", "microsoft/resnet-50", "facebook/convnext-tiny-224"),
    ),
    "zero-shot-classification": TaskSpec(
        "facebook/bart-large-mnli", "d7645e1", "text",
        curated=("facebook/bart-large-mnli", "valhalla/distilbart-mnli-12-1",
                 "MoritzLaurer/DeBERTa-v3-base-mnli-fever-anli"),
    ),
    "document-question-answering": TaskSpec(
        "impira/layoutlm-document-qa", "beed3c4", "document",
        curated=("impira/layoutlm-document-qa", "naver-clova-ix/donut-base-finetuned-docvqa"),
    ),
})


class ModelLoadError(StudioError, RuntimeError):
    """A model that could not be loaded, with a reason a person can act on."""

    def __init__(self, task: str, model: str, reason: str):
        super().__init__(f"Could not load {model!r} for {task}: {reason}")
        self.task, self.model, self.reason = task, model, reason


class ModelNotAllowed(StudioError, ValueError):
    """A model outside the curated list when --allow-any-model is off."""


@dataclass(frozen=True)
class PipelineKey:
    """The cache key: everything that makes two loaded pipelines different."""

    task: str
    model: str
    revision: str | None
    device: str
    dtype: str
    device_map: str | None = None
    max_memory: tuple[tuple[str, str], ...] | None = None
    quantization: str | None = None
    hub: bool = False  # resolved on the Hub only: a folder of that name on the server is never read

    @property
    def label(self) -> str:
        """The model as visitors see it: a Hub id, or a local folder's name (never a server path)."""
        return self.model if self.hub else model_label(self.model)

    @property
    def id(self) -> str:
        where = f"device_map={self.device_map}" if self.device_map else self.device
        dtype = f"{self.dtype}, {self.quantization}" if self.quantization else self.dtype
        return f"{self.task} | {self.label} | {where} | {dtype}"


@dataclass
class LoadedPipeline:
    key: PipelineKey
    pipeline: Any
    load_seconds: float
    last_used: float


# A Hub repository id as huggingface_hub validates it: 'name' or 'owner/name', no '..' or '--'.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")


def is_local_model(model: str) -> bool:
    return Path(model).expanduser().is_dir()


def is_hub_id(model: str) -> bool:
    return bool(_HUB_ID.match(model)) and ".." not in model and "--" not in model and not model.endswith(".")


def model_label(model: str) -> str:
    """How a model is shown: a path by its last part alone, a Hub id (or 'owner/name' folder) as it is."""
    return model if is_hub_id(model) else Path(model).name


def allowed_models(task: str, settings: Settings) -> tuple[str, ...]:
    """The models offered for a task, as shown: the one given at start first, then the curated list."""
    spec = TASKS[task]
    given = settings.model_for(task)
    names = ([model_label(given)] if given else []) + [spec.default_model, *spec.curated]
    return tuple(dict.fromkeys(names))


def model_source(task: str, model: str, settings: Settings) -> tuple[str, bool]:
    """(what to load, Hub only?) for a model name: the operator's own model as given at start, anything
    else resolved on the Hub, so a visitor's 'owner/name' never opens a folder of that name on the server.
    Names that are no Hub id (an absolute path) come only from the operator's own code and load as given."""
    given = settings.model_for(task)
    if given and model in (given, model_label(given)):
        return given, False
    return model, is_hub_id(model)


def check_model_allowed(task: str, model: str, settings: Settings) -> None:
    """Refuse models outside the offered list unless --allow-any-model; a typed name is a Hub id only."""
    if model in allowed_models(task, settings):
        return
    offered = ", ".join(allowed_models(task, settings))
    if not settings.allow_any_model:
        raise ModelNotAllowed(f"model {model!r} is not offered here; choose one of: {offered} "
                              "(the server's operator can allow any Hub model with --allow-any-model)")
    if "/" not in model or not is_hub_id(model):
        shown = model if len(model) <= 100 else model[:100] + "..."
        raise ModelNotAllowed(f"{shown!r} is not a Hub model id; use the form 'owner/name' (letters, digits, "
                              "'-', '_' and '.'), or choose one of: " + offered)


# Files a transformers pipeline reads from a Hub repository (weights in one format, never code).
HUB_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.spm", "*.vocab", "*.merges")


def hub_snapshot(model: str, revision: str | None) -> str:
    """Download (or find in the Hub cache) what a pipeline needs from a Hub repository; its local folder."""
    from huggingface_hub import HfApi, snapshot_download

    weights = ["*.safetensors", "*.bin"]
    try:  # one format: a repository with both would otherwise download its weights twice
        names = [s.rfilename for s in HfApi().model_info(model, revision=revision).siblings or ()]
        weights = ["*.safetensors"] if any(n.endswith(".safetensors") for n in names) else ["*.bin"]
    except Exception:  # noqa: BLE001 - offline or unknown: snapshot_download says why, or uses the cache
        pass
    return snapshot_download(model, revision=revision, allow_patterns=[*HUB_FILES, *weights])


def load_pipeline(key: PipelineKey) -> Any:
    """Build one pipeline for a key: a pure function of the key."""
    from transformers import pipeline

    spec = TASKS.get(key.task)
    source = hub_snapshot(key.model, key.revision) if key.hub else key.model
    kwargs: dict[str, Any] = dict(task=key.task, model=source, dtype=getattr(torch, key.dtype),
                                  trust_remote_code=False)
    if spec is not None:
        kwargs.update(spec.pipeline_kwargs)
    if key.revision and not key.hub and not is_local_model(key.model):
        kwargs["revision"] = key.revision
    if key.device_map:
        kwargs["device_map"] = key.device_map
        model_kwargs: dict[str, Any] = {"offload_folder": offload_folder(key)}
        if key.max_memory:
            model_kwargs["max_memory"] = _max_memory_kwarg(key.max_memory)
        if key.device == "cpu" and not key.max_memory:  # "auto" would spread onto any GPU it sees
            kwargs["device_map"] = "cpu"
        if key.quantization == "8bit":
            from transformers import BitsAndBytesConfig

            model_kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["model_kwargs"] = model_kwargs
    else:
        kwargs["device"] = key.device
    pipe = pipeline(**kwargs)
    tokenizer = getattr(pipe, "tokenizer", None)
    # Without tokenizer files transformers builds a tokenizer of special tokens only: every word would be
    # unknown and the answers meaningless, so refuse it here.
    if tokenizer is not None and len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        raise ModelLoadError(key.task, key.label, "the model has no tokenizer files (tokenizer.json, or "
                             "tokenizer_config.json with its vocabulary files); add them from the model's "
                             "repository")
    # Whisper batching needs a pad token; several checkpoints ship without one.
    if tokenizer is not None and tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return pipe


def _max_memory_kwarg(pairs: tuple[tuple[str, str], ...]) -> dict[int | str, int | str]:
    """accelerate wants GPU indices as ints and plain byte counts as ints ('123B' is refused)."""
    out: dict[int | str, int | str] = {}
    for name, size in pairs:
        digits = size[:-1] if size.upper().endswith("B") and size[:-1].isdigit() else size
        out[int(name) if name.isdigit() else name] = int(digits) if digits.isdigit() else size
    return out


def offload_folder(key: PipelineKey) -> str:
    """Where accelerate may put weights that fit on no device: one folder per key."""
    import hashlib
    import tempfile

    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / "pipeline-studio-offload" / digest)


_SERVER_PATH = re.compile(r"(?<![\w:/])(?:~|\.{1,2})?/(?:[^\s/'\"`]+/)*([^\s/'\"`]+)")


def scrub_paths(text: str) -> str:
    """A message with every file path cut to its last part: visitors read these."""
    return _SERVER_PATH.sub(lambda m: m.group(1), text)


def explain_load_error(key: PipelineKey, exc: BaseException, offline: bool) -> str:
    """Turn a loader exception into one sentence saying the cause (no server path in it)."""
    return scrub_paths(_explain(key, exc, offline))


def _explain(key: PipelineKey, exc: BaseException, offline: bool) -> str:
    low = f"{type(exc).__name__}: {exc}".lower()
    detail = _first_line(exc)
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in low:
        return f"out of memory on {key.device_map or key.device} while loading ({detail})"
    local = not key.hub and is_local_model(key.model)
    if not key.hub and not local and (key.model.startswith(("/", ".", "~")) or "\\" in key.model):
        return f"no model folder {model_label(key.model)!r}"
    if "device string: disk" in low:
        return ("with this --max-memory even the model's first layers would be offloaded to disk; "
                "give the first device more memory")
    if "bitsandbytes" in low:
        return f"8-bit loading failed ({detail}); install bitsandbytes and use a CUDA GPU"
    fits_task = _supports_task(key)
    if "could not load model" in low and fits_task is not False:
        detail = _inner_cause(str(exc)) or detail  # transformers hides the real cause in this text
        low = detail.lower()
        if "out of memory" in low:
            return f"out of memory on {key.device_map or key.device} while loading ({detail})"
    elif fits_task is False or any(w in low for w in ("unrecognized configuration", "should either be",
                                                      "is not supported", "does not support")):
        return f"not a model for the task {key.task} ({detail})"
    if local:
        return f"the model folder is incomplete or corrupt ({detail})"
    hub_words = ("offline", "connect", "valid model identifier", "entrynotfound", "repositorynotfound",
                 "not found", "couldn't find", "cannot find", "resolve", "network", "timed out", "hub")
    if any(w in low for w in hub_words):
        why = "offline mode is on" if offline else "the Hugging Face Hub is unreachable or has no such model"
        return f"not found locally and {why} ({detail})"
    return detail


def _supports_task(key: PipelineKey) -> bool | None:
    """Whether a local folder's config fits the task's model classes; None when unknown."""
    if key.hub:
        return None
    try:
        from transformers import AutoConfig
        from transformers.pipelines import SUPPORTED_TASKS

        config = AutoConfig.from_pretrained(key.model, local_files_only=True)
        classes = SUPPORTED_TASKS[key.task]["pt"]
        return any(type(config) in cls._model_mapping for cls in classes)
    except Exception:  # noqa: BLE001 - unreadable config: the caller falls back to other causes
        return None


def _inner_cause(text: str) -> str | None:
    """The last 'SomeError: message' line of an error that wraps others' tracebacks."""
    import re

    found = re.findall(r"^(\w+(?:Error|Exception): .+)$", text, flags=re.MULTILINE)
    inner = [line for line in found if "could not load model" not in line.lower()]
    return inner[-1][:300] if inner else None


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE set outside the app (the --offline flag sets it too)."""
    from huggingface_hub import is_offline_mode

    return bool(is_offline_mode())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.pipeline: Any = None
        self.error: BaseException | None = None


class PipelineRegistry:
    """Lazy, cached, single-flight pipeline loading with LRU eviction."""

    def __init__(self, settings: Settings, loader: Callable[[PipelineKey], Any] = load_pipeline,
                 placement: Placement | None = None):
        self.settings = settings
        self.placement = placement or resolve_placement(settings.device, settings.dtype,
                                                        settings.device_map, settings.max_memory,
                                                        settings.load_in_8bit)
        self._loader = loader
        self._lock = threading.Lock()
        self._loaded: OrderedDict[PipelineKey, LoadedPipeline] = OrderedDict()
        self._pending: dict[PipelineKey, _Pending] = {}
        self.events: deque[str] = deque(maxlen=20)  # what was unloaded by the registry itself, and why
        self.loads = 0  # how many times the loader ran; read by tests and benchmarks

    def default_model(self, task: str) -> str:
        return allowed_models(task, self.settings)[0]

    def key_for(self, task: str, model: str | None = None, revision: str | None = None) -> PipelineKey:
        if task not in TASKS and model is None:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        model, hub = model_source(task, model or self.default_model(task), self.settings)
        spec = TASKS.get(task)
        if revision is None and spec is not None and model == spec.default_model:
            revision = spec.revision
        p = self.placement
        return PipelineKey(task, model, revision, p.device, p.dtype_name, p.device_map, p.max_memory,
                           p.quantization, hub)

    def get(self, task: str, model: str | None = None, revision: str | None = None) -> Any:
        """The pipeline for (task, model), loading it once however many threads ask."""
        return self.get_key(self.key_for(task, model, revision))

    def get_key(self, key: PipelineKey) -> Any:
        with self._lock:
            entry = self._loaded.get(key)
            if entry is not None:
                entry.last_used = time.time()
                self._loaded.move_to_end(key)
                return entry.pipeline
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = _Pending()
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.pipeline
        started = time.perf_counter()
        try:
            pipe = self._load_making_room(key)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes one clear error
            error = exc if isinstance(exc, ModelLoadError) else ModelLoadError(
                key.task, key.label, explain_load_error(key, exc, self.settings.offline or _hub_offline()))
            with self._lock:
                del self._pending[key]
            pending.error = error
            pending.done.set()
            release_memory(exc)  # a half-built model lives on in exc's traceback
            raise error from exc
        entry = LoadedPipeline(key, pipe, time.perf_counter() - started, time.time())
        with self._lock:
            self._loaded[key] = entry
            del self._pending[key]
            # Only now, with the new pipeline working, does the least recently used one make room.
            evicted = self._pop_lru(room_for=0)
        self._note_unloaded(evicted, f"to make room for {key.label} (at most {self.settings.max_loaded} "
                                     "loaded, --max-loaded)")
        pending.pipeline = pipe
        pending.done.set()
        self._release(evicted)
        return pipe

    def preload(self, tasks: Iterable[str] = TASKS, warm: bool = True) -> list[tuple[str, str, float]]:
        """Load each task's default model now (--preload); (task, model, seconds) for each. warm=False
        runs no model (on ZeroGPU no model may run outside a GPU call, and start-up has none)."""
        done = []
        for task in tasks:
            started = time.perf_counter()
            key = self.key_for(task)
            pipe = self.get_key(key)
            if warm and task == "automatic-speech-recognition":
                from engine.speech import warm_up

                warm_up(pipe)
            done.append((task, key.label, time.perf_counter() - started))
        return done

    def _load_making_room(self, key: PipelineKey) -> Any:
        """The loader's pipeline; out of memory, the least recently used pipelines go one by one and it
        tries again. Nothing is unloaded for a load that fails for any other reason."""
        while True:
            try:
                self.loads += 1
                return self._ready(key, self._loader(key))
            except torch.OutOfMemoryError:
                with self._lock:
                    evicted = [self._loaded.popitem(last=False)[1]] if self._loaded else []
                if not evicted:
                    raise
                self._note_unloaded(evicted, f"{key.label} ran out of memory while loading")
                self._release(evicted)

    def _ready(self, key: PipelineKey, pipe: Any) -> Any:
        """The loaded pipeline, a speech one marked with --speech-int8 and --speech-bf16 (engine.speech reads them)."""
        if key.task == "automatic-speech-recognition":
            from engine.speech import SPEECH_BF16_ATTR, SPEECH_INT8_ATTR

            try:
                setattr(pipe, SPEECH_INT8_ATTR, self.settings.speech_int8)
                setattr(pipe, SPEECH_BF16_ATTR, self.settings.speech_bf16)
            except AttributeError:  # a stand-in loader's object that takes no attributes
                pass
        return pipe

    def _note_unloaded(self, entries: list[LoadedPipeline], why: str) -> None:
        for entry in entries:
            self.events.append(f"{time.strftime('%H:%M:%S')} unloaded {entry.key.label} ({entry.key.task}) {why}")

    def _pop_lru(self, room_for: int) -> list[LoadedPipeline]:
        out = []
        while self._loaded and len(self._loaded) + room_for > self.settings.max_loaded:
            out.append(self._loaded.popitem(last=False)[1])
        return out

    @staticmethod
    def _release(entries: list[LoadedPipeline]) -> None:
        if not entries:
            return
        for entry in entries:
            entry.pipeline = None
            if entry.key.device_map:
                shutil.rmtree(offload_folder(entry.key), ignore_errors=True)
        entries.clear()
        release_memory()

    def unload(self, key: PipelineKey | str) -> bool:
        """Drop a loaded pipeline (by key or its id string) and free its memory."""
        with self._lock:
            match = next((k for k in self._loaded if k == key or k.id == key), None)
            entry = self._loaded.pop(match) if match is not None else None
        self._release([entry] if entry else [])
        return entry is not None

    def unload_all(self) -> None:
        with self._lock:
            entries = list(self._loaded.values())
            self._loaded.clear()
        self._release(entries)

    def is_loaded(self, key: PipelineKey) -> bool:
        with self._lock:
            return key in self._loaded

    def status(self) -> list[dict[str, Any]]:
        """One row per loaded pipeline: what, where, how big, how long it took."""
        with self._lock:
            entries = list(self._loaded.values())
        return [_describe(e) for e in entries]


def _describe(entry: LoadedPipeline) -> dict[str, Any]:
    model = getattr(entry.pipeline, "model", None)
    params, per_device = 0, {}
    if model is not None:
        params = sum(p.numel() for p in model.parameters())
        per_device = _memory_by_device(model)
    key = entry.key
    return {
        "id": key.id,
        "task": key.task,
        "model": key.label,
        "device": ", ".join(sorted(per_device)) if key.device_map else key.device,
        "dtype": f"{key.dtype}, {key.quantization}" if key.quantization else key.dtype,
        "parameters": params,
        "memory_bytes": sum(per_device.values()),
        "memory_mb": round(sum(per_device.values()) / 2**20, 2),
        "memory_by_device_mb": {d: round(b / 2**20, 2) for d, b in sorted(per_device.items())},
        "load_seconds": round(entry.load_seconds, 2),
        "last_used": time.strftime("%H:%M:%S", time.localtime(entry.last_used)),
    }


def _memory_by_device(model: torch.nn.Module) -> dict[str, int]:
    """Bytes of weights per device; accelerate's map says where offloaded (meta) weights live."""
    def size(module: torch.nn.Module) -> int:
        tensors = list(module.parameters()) + list(module.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)

    device_map = getattr(model, "hf_device_map", None)
    out: dict[str, int] = {}
    if device_map:
        for name, dev in device_map.items():
            label = f"cuda:{dev}" if isinstance(dev, int) or str(dev).isdigit() else str(dev)
            out[label] = out.get(label, 0) + size(model.get_submodule(name) if name else model)
        return out
    for t in list(model.parameters()) + list(model.buffers()):
        out[str(t.device)] = out.get(str(t.device), 0) + t.numel() * t.element_size()
    return out

