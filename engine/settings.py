"""Settings: one frozen dataclass, defaults from STUDIO_* environment variables."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16")
DEVICE_MAP_CHOICES = ("none", "auto")
MIN_ADMIN_TOKEN = 16


@dataclass(frozen=True)
class Settings:
    """Everything the app can be told at start; the CLI fills the same fields."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to serve on"})
    port: int = field(default=7860, metadata={"help": "port to serve on"})
    share: bool = field(default=False, metadata={"help": "ask Gradio for a public share link"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N | mps"})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | float16 | bfloat16"})
    device_map: str = field(
        default="none",
        metadata={"help": "none | auto (accelerate places the model across GPUs/CPU)"},
    )
    max_memory: str | None = field(
        default=None,
        metadata={"help": "with --device-map auto: per-device caps, e.g. '0=20GiB,1=20GiB,cpu=64GiB'"},
    )
    load_in_8bit: bool = field(
        default=False,
        metadata={"help": "load weights in 8 bits with bitsandbytes (CUDA only; implies --device-map auto)"},
    )
    asr_model: str | None = field(default=None, metadata={"help": "speech model: Hub id or local folder"})
    image_model: str | None = field(default=None, metadata={"help": "image model: Hub id or local folder"})
    zero_shot_model: str | None = field(default=None, metadata={"help": "zero-shot text model: Hub id or local folder"})
    docqa_model: str | None = field(default=None, metadata={"help": "document QA model: Hub id or local folder"})
    max_loaded: int = field(default=4, metadata={"help": "pipelines kept in memory before the least recently used is unloaded"})
    offline: bool = field(default=False, metadata={"help": "never contact the Hugging Face Hub (sets HF_HUB_OFFLINE=1)"})
    allow_any_model: bool = field(default=False, metadata={"help": "let users pick any Hub id, not only the curated ones"})
    allow_urls: bool = field(default=False, metadata={"help": "accept public http(s) URLs as inputs"})
    preload: bool = field(default=False, metadata={"help": "load each tab's default model at start, before serving (always on ZeroGPU); the speech model is also warmed up"})
    speech_int8: bool = field(default=True, metadata={"help": "speech on a CPU: int8 weights for the decoder of the fast Whisper path (1.6x faster on the bench's 2 cores, WER within 0.2 point of float32 there: bench/README.md section 3); --no-speech-int8 decodes in float32"})
    speech_bf16: bool = field(default=True, metadata={"help": "speech on a CPU with bfloat16 instructions (AVX512-BF16 or AMX; other CPUs and GPUs are not affected): the fast Whisper path's encoder under bfloat16 autocast and the decoder's cross-attention keys and values in bfloat16 (bench/README.md section 3 has its speed and WER); --no-speech-bf16 keeps them in float32"})
    mcp: bool = field(default=False, metadata={"help": "also serve the tabs' main endpoints as MCP tools at /gradio_api/mcp/ (needs the mcp package)"})
    auth: str | None = field(default=None, metadata={"help": "user:pass required to open the app"})
    auth_file: str | None = field(default=None, metadata={"help": "file of user:pass lines required to open the app"})
    admin_token: str | None = field(
        default=None, repr=False, metadata={"help": "secret that unlocks the Models panel's unload actions (at least 16 "
                                        "characters; prefer the env var, flags show in ps); unset: no visitor "
                                        "can unload"})
    # Limits: named here so handlers never hold magic numbers.
    max_file_mb: float = field(default=200.0, metadata={"help": "largest upload in MB"})
    url_timeout_s: float = field(default=10.0, metadata={"help": "with --allow-urls: most seconds one URL fetch may take, name lookups, redirects and the whole body included"})
    max_audio_seconds: float = field(default=4 * 3600.0, metadata={"help": "longest audio accepted, in seconds"})
    min_audio_seconds: float = field(default=0.25, metadata={"help": "shortest audio accepted, in seconds (a shorter clip holds no word, and CTC models cannot read it)"})
    max_live_sessions: int = field(default=8, metadata={"help": "most live microphone transcriptions at once (Speech tab)"})
    max_files: int = field(default=20, metadata={"help": "most recordings transcribed in one request (Speech tab, many files)"})
    max_total_audio_seconds: float = field(default=4 * 3600.0, metadata={"help": "longest total audio of one many-files request, in seconds"})
    max_pdf_pages: int = field(default=50, metadata={"help": "most PDF/TIFF pages read"})
    max_image_pixels: int = field(default=40_000_000, metadata={"help": "largest image, in pixels"})
    max_images: int = field(default=16, metadata={"help": "most images classified at once"})
    max_decodes: int = field(default=2, metadata={"help": "images decoded at once across all requests (a large image costs up to about 0.2 GB while it is decoded)"})
    max_labels: int = field(default=50, metadata={"help": "most zero-shot labels"})
    max_label_chars: int = field(default=200, metadata={"help": "longest zero-shot label, and longest hypothesis template, in characters (the hypothesis must fit the model's window beside the text)"})
    max_text_chars: int = field(default=10_000, metadata={"help": "longest text accepted, in characters"})
    max_texts: int = field(default=200, metadata={"help": "most texts classified at once"})
    max_question_chars: int = field(default=500, metadata={"help": "longest document question, in characters"})
    max_new_tokens: int = field(default=256, metadata={"help": "most tokens a generating model may add per request"})
    cache_hours: float = field(default=24.0, metadata={"help": "uploads and results are deleted from Gradio's cache once this many hours old (checked as often; 0 keeps them)"})
    ocr_cache_pages: int = field(default=256, metadata={"help": "document pages whose words (OCR or text layer) are kept in memory"})
    queue_size: int = field(default=64, metadata={"help": "requests waiting before new ones are refused"})
    concurrency: int = field(default=1, metadata={"help": "model jobs running at once per event"})
    max_batch_size: int = field(default=16, metadata={"help": "most requests from different users run as one batch"})
    batching: bool = field(default=True, metadata={"help": "run requests that arrive together from different users as one model batch"})
    batch_wait_ms: float = field(default=10.0, metadata={"help": "how long a batch waits for more requests to join, in ms"})
    max_pairs_per_forward: int = field(default=64, metadata={"help": "most (text, label) pairs the zero-shot model scores in one forward pass; bounds memory with many labels and long texts"})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults, then STUDIO_<FIELD> variables, then explicit overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"STUDIO_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def __post_init__(self) -> None:
        if self.device_map not in DEVICE_MAP_CHOICES:
            raise ValueError(f"device_map must be one of {', '.join(DEVICE_MAP_CHOICES)}, not {self.device_map!r}")
        if self.dtype not in DTYPE_CHOICES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, not {self.dtype!r}")
        if self.url_timeout_s <= 0:
            raise ValueError("url_timeout_s must be more than 0")
        if self.max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        if self.admin_token is not None and len(self.admin_token) < MIN_ADMIN_TOKEN:
            raise ValueError(f"admin_token must be at least {MIN_ADMIN_TOKEN} characters (e.g. "
                             "python -c 'import secrets; print(secrets.token_urlsafe())')")

    def model_for(self, task: str) -> str | None:
        """The model given at start for a task, if any."""
        return {
            "automatic-speech-recognition": self.asr_model,
            "image-classification": self.image_model,
            "zero-shot-classification": self.zero_shot_model,
            "document-question-answering": self.docqa_model,
        }.get(task)


def _parse(f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind.startswith("bool"):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"STUDIO_{f.name.upper()} must be true or false, not {raw!r}")
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"STUDIO_{f.name.upper()} must be a number, not {raw!r}") from None
    return raw
