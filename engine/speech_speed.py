"""Speed levers for the fast Whisper path: int8 and bfloat16 on a CPU, a batch sized from free GPU memory.

Kept apart from engine.whisper_batch (the decoding loop) so each lever can be read, tested and
turned off on its own; bench/README.md gives each one's speed and WER.
"""

from __future__ import annotations

import functools
import threading
import warnings
import weakref
from pathlib import Path

import torch

# How much of the free GPU memory a batch may plan to use, and how much the per-row estimate
# is inflated by (allocator rounding, sdpa workspaces, the logits rules' temporaries).
GPU_MEMORY_SHARE = 0.8
ROW_BYTES_MARGIN = 1.5
MAX_AUTO_BATCH = 256

_int8_models: "weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module]" = weakref.WeakKeyDictionary()
_int8_lock = threading.Lock()


def _float32_on_cpu(model) -> bool:
    try:
        param = next(model.parameters())
    except (StopIteration, AttributeError):
        return False
    return param.device.type == "cpu" and param.dtype == torch.float32


def int8_applies(model) -> bool:
    """Dynamic int8 quantization runs on a CPU only (fbgemm/qnnpack kernels), on float32 weights."""
    return _float32_on_cpu(model) and _has_int8_engine()


def _has_int8_engine() -> bool:
    engines = torch.backends.quantized.supported_engines
    return any(e in engines for e in ("fbgemm", "x86", "qnnpack"))


def bf16_applies(model) -> bool:
    """bfloat16 autocast pays on a CPU with bfloat16 instructions only (elsewhere it is emulated, slower)."""
    return _float32_on_cpu(model) and cpu_has_bf16()


@functools.lru_cache(maxsize=1)
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this x86 CPU has AVX512-BF16 or AMX-BF16 (Linux's CPU flags; other systems: no)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def int8_parts(model: torch.nn.Module) -> set[str]:
    """The nn.Linear layers (by name) that get int8 weights: the decoder's and the output projection.

    The encoder stays in float32: it runs once per chunk on large matrices (compute, not weight bytes,
    bound), and quantizing its activations cost the most accuracy. On the bench's four 10-minute
    recordings, int8 everywhere averaged +0.65 point of WER over float32, the decoder alone +0.08
    (bench/README.md section 3). A model without those names is quantized whole."""
    linear = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    parts = {name for name in linear if name.startswith("model.decoder.") or name == "proj_out"}
    return parts if any(name.startswith("model.decoder.") for name in parts) else set()


def int8_model(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose decoder nn.Linear layers hold int8 weights (torch dynamic quantization).

    Built once per model and kept as long as the model lives (the registry unloading the
    pipeline frees both). Activations are quantized per call, so the copy runs the same code
    with about a quarter of the weight bytes: the decoder's steps are bound by those bytes on
    a CPU (proj_out alone is 51864 x 384 in Whisper tiny). See int8_parts for what is quantized.
    """
    with _int8_lock:
        found = _int8_models.get(model)
        if found is None:
            with warnings.catch_warnings():  # torch 2.13 points to torchao; the eager API still works
                warnings.simplefilter("ignore")
                found = torch.ao.quantization.quantize_dynamic(model, int8_parts(model) or {torch.nn.Linear},
                                                               dtype=torch.qint8)
            found.eval()
            _int8_models[model] = found
        return found


def row_bytes(model, max_len: int, beams: int = 1) -> int:
    """Device bytes one 30 s chunk needs while it is encoded and decoded by whisper_batch (estimate).

    Encoder: hidden states and the feed-forward's activations of 1500 frames; decoder: the
    cross-attention keys and values of every layer, the static self-attention cache, the
    float32 logits and their masks over the vocabulary (the last two once per beam), and the
    alignment heads' float32 cross-attention weights that word times are read from.
    """
    from engine.whisper_batch import alignment_heads

    cfg = model.config
    size = next(model.parameters()).element_size()
    frames = cfg.max_source_positions
    d = cfg.d_model
    encoder = frames * (4 * d + max(cfg.encoder_ffn_dim, 4 * d)) * size * 2 + 2 * cfg.num_mel_bins * frames * 2 * 4
    cross = cfg.decoder_layers * 2 * frames * d * size
    self_cache = cfg.decoder_layers * 2 * max_len * d * size
    logits = cfg.vocab_size * (4 * 4 + 4)
    align = len(alignment_heads(model)) * max_len * frames * 4
    return int((encoder + cross + max(1, beams) * (self_cache + logits) + align) * ROW_BYTES_MARGIN)


def auto_batch_size(model, chunks: int, floor: int, max_len: int = 448, beams: int = 1) -> int:
    """The batch for `chunks` chunks: on a GPU as many as free memory holds (at least `floor`),
    so long audio decodes in one or few batches; elsewhere `floor` (a CPU gains nothing past it)."""
    floor = max(1, int(floor))
    device = next(model.parameters()).device
    if device.type != "cuda" or chunks <= floor:
        return min(floor, max(1, chunks)) if chunks else floor
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # torch's cache is ours
    fits = int(free * GPU_MEMORY_SHARE) // max(1, row_bytes(model, max_len, beams))
    return max(floor, min(chunks, fits, MAX_AUTO_BATCH))

