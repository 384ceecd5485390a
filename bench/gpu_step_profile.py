"""Where the Speech tab's GPU time goes: stages of one transcription, the decoder step's kernels, variants.

The set-up of bench/gpu_long_audio.py (a random whisper-large-v3-shaped model, fp16, 30 minutes of espeak
speech, every chunk forced to --tokens new tokens). It reports:
  1. the VAD: silero's ONNX model on the CPU threads against engine.silero_torch on the GPU;
  2. one engine.speech.transcribe at the tab's defaults, split into stages (each timed from a device sync
     to a device sync, inclusive of the stages it calls);
  3. the CUDA kernels of one decoder step (eager, the graph's shapes), by name, and the encoder's;
  4. one decoder step replayed as a CUDA graph for each variant of engine.whisper_batch._StaticDecoder
     named in --variants (the profile's own subclasses: what a change would buy before it is made; "compile"
     is torch.compile of the whole step).

    python3 bench/gpu_step_profile.py --assets .gpu --out $OUT/gpu_step_profile.json
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gpu_long_audio import LARGE_V3, build_pipeline  # noqa: E402
from bench.speech_audio import RATE, read_wav  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def clock(fn, reps: int = 1) -> float:
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t) / reps


def stages(pipe, audio, options) -> dict:
    """Seconds per stage of one transcribe(), from wrappers put around the engine's functions for the call."""
    from unittest import mock

    from engine import audio as engine_audio, speech, whisper_align, whisper_batch

    spent: dict[str, float] = collections.defaultdict(float)
    calls: dict[str, int] = collections.defaultdict(int)

    def timed(name, fn):
        def wrapper(*a, **k):
            sync()
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                sync()
                spent[name] += time.perf_counter() - t
                calls[name] += 1
        return wrapper

    targets = [(speech, "speech_regions_and_chunks"), (speech, "_run_chunks"), (speech, "stitch"),
               (whisper_batch, "log_mel"), (whisper_batch, "log_mel_of"), (engine_audio.ChunkAudio, "waves"),
               (whisper_batch, "encode"), (whisper_batch, "_greedy"), (whisper_batch, "_token_times"),
               (whisper_batch, "_to_output"), (whisper_batch, "_warm"), (whisper_batch, "_capture"),
               (whisper_batch, "_start"),
               (whisper_align, "alignment_matrix"), (whisper_align, "window_medians"), (whisper_align, "dtw_starts"),
               (whisper_batch._StaticDecoder, "cross_weights")]
    patches = [mock.patch.object(obj, name, timed(name, getattr(obj, name))) for obj, name in targets]
    for p in patches:
        p.start()
    try:
        sync()
        t = time.perf_counter()
        speech.transcribe(pipe, audio, options)
        sync()
        total = time.perf_counter() - t
    finally:
        for p in reversed(patches):
            p.stop()
    return {"total": round(total, 4), **{k: {"s": round(v, 4), "calls": calls[k]} for k, v in spent.items()}}


def kernel_table(fn, reps: int = 3, top: int = 30) -> dict:
    from torch.profiler import ProfilerActivity, profile

    fn()
    sync()
    with profile(activities=[ProfilerActivity.CUDA if torch.cuda.is_available() else ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            fn()
        sync()
    rows = []
    for e in prof.key_averages():
        t = (getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0) if torch.cuda.is_available()
             else e.self_cpu_time_total)
        if t:
            rows.append((e.key, e.count / reps, t / reps))
    rows.sort(key=lambda r: -r[2])
    total_us = sum(r[2] for r in rows)
    return {"kernels_per_call": round(sum(r[1] for r in rows), 1), "device_us_per_call": round(total_us, 1),
            "top": [{"kernel": k[:120], "per_call": round(c, 1), "us": round(t, 1)} for k, c, t in rows[:top]]}


def variant_class(base, name: str):
    """A _StaticDecoder whose masked self-attention (a step's, over a graph's window) runs differently:
    "selfmath", as explicit matmuls and a softmax; "selfeff", under sdpa's memory-efficient kernel;
    "crossbshd": the cross-attention keys and values read in the projections' layout, not copied."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    class Variant(base):
        def __init__(self, model, encoded, *a, **k):
            super().__init__(model, encoded, *a, **k)
            if "crossbshd" in name:  # cross keys and values left in the projections' layout (no copy)
                b, t = encoded.shape[:2]
                self.cross = [tuple(p(encoded).view(b, t, self.heads, self.head_dim).transpose(1, 2)
                                    for p in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj))
                              for layer in self.dec.layers]

        def _attend(self, q, k, v, mask=None):
            if mask is None or q.shape[2] != 1:
                return super()._attend(q, k, v, mask)
            if "selfmath" in name:
                scores = (q @ k.transpose(-1, -2)) * self.head_dim ** -0.5 + mask
                return scores.float().softmax(dim=-1).to(q.dtype) @ v
            if "selfeff" in name:
                with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
                    return super()._attend(q, k, v, mask)
            return super()._attend(q, k, v, mask)

    return Variant


def step_variants(model, encoded, plan, names, steps: int, out: list, save=lambda: None) -> list[dict]:
    """Appends a row per variant to `out`, calling save() after each (a compile may not finish)."""
    from engine import whisper_batch as wb

    reference = None
    for name in names:
        try:
            decoder = loop = replay = None
            cls = variant_class(wb._StaticDecoder, name)
            decoder = cls(model, encoded, 128, "sdpa")
            if "compile" in name:  # torch.compile of the whole step (inductor), captured in the graph as it is
                decoder._forward = torch.compile(decoder._forward, dynamic=False)
            prompt = torch.tensor([list(plan.init_tokens)] * encoded.shape[0], device=encoded.device)
            decoder.prefill(prompt[:, :-1])
            loop = wb._Loop(decoder, plan, prompt.shape[1] - 1, prompt[:, -1])
            with torch.inference_mode():
                t0 = time.perf_counter()
                if encoded.is_cuda:
                    wb._warm(loop, 128)
                replay = wb._capture(loop, 128) if encoded.is_cuda else (lambda: loop.step(128))
                capture_s = time.perf_counter() - t0
                saved = [s.clone() for s in loop.state()]
                left = steps - (wb.WARM_STEPS if encoded.is_cuda else 0)  # the warm-up took real steps
                per_step = clock(lambda: [replay() for _ in range(left)]) / left
                for s, v in zip(loop.state(), saved):
                    s.copy_(v)
                for _ in range(left):
                    replay()
                tokens = loop.out.clone()
            same = None if reference is None else float((tokens == reference).float().mean())
            reference = tokens if reference is None else reference
            out.append({"variant": name, "step_ms": round(per_step * 1e3, 3), "capture_s": round(capture_s, 3),
                        "tokens_equal_to_first_variant": same})
        except Exception as exc:  # noqa: BLE001 - a variant this torch cannot run: said, and the rest go on
            out.append({"variant": name, "error": repr(exc)[:300]})
        print(out[-1], flush=True)
        save()
        del decoder, loop, replay
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(ROOT / ".gpu"))
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--variants", default="base,selfmath,selfeff,crossbshd")
    parser.add_argument("--out", default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny model, half a minute, on the CPU (a check)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.smoke:
        print("needs a CUDA GPU")
        return {}
    import transformers

    transformers.logging.set_verbosity_error()
    from engine import whisper_batch as wb
    from engine.audio import SileroVad, speech_regions_and_chunks
    from engine.speech import TranscribeOptions, transcribe

    from bench.gpu_long_audio import SMOKE

    dev = "cpu" if args.smoke else "cuda:0"
    pipe = build_pipeline(Path(args.assets), SMOKE if args.smoke else LARGE_V3, dev,
                          torch.float32 if args.smoke else torch.float16)
    clip = read_wav(Path(args.assets) / "speech.wav")
    n = int((0.5 if args.smoke else args.minutes) * 60 * RATE)
    out = Path(args.out) if args.out else None

    def save() -> None:
        if out:
            out.write_text(json.dumps(result, indent=2) + "\n")
    audio = np.tile(clip, -(-n // clip.size))[:n].copy()
    result: dict = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if not args.smoke else "cpu"}
    try:
        import triton

        result["triton"] = triton.__version__
    except ImportError:
        result["triton"] = None

    vad = SileroVad()
    cpu = lambda: speech_regions_and_chunks(audio, RATE, vad=vad)  # noqa: E731
    gpu = lambda: speech_regions_and_chunks(audio, RATE, vad=vad, device=torch.device(dev))  # noqa: E731
    found_cpu, found_gpu = cpu(), gpu()
    result["vad"] = {"cpu_threads": vad.threads, "cpu_s": round(clock(cpu, 3), 4), "gpu_s": round(clock(gpu, 3), 4),
                     "same_chunks": found_cpu[1] == found_gpu[1], "chunks": len(found_cpu[1]),
                     "regions_cpu_gpu": [len(found_cpu[0]), len(found_gpu[0])]}
    print(result["vad"], flush=True)
    save()

    gk = {"min_new_tokens": args.tokens, "max_new_tokens": args.tokens}
    options = TranscribeOptions(batch_size=8, generate_kwargs=gk)
    transcribe(pipe, audio, options)
    result["tab_defaults_s"] = [round(clock(lambda: transcribe(pipe, audio, options)), 3) for _ in range(2)]
    result["stages"] = stages(pipe, audio, options)
    print(result["tab_defaults_s"], json.dumps(result["stages"]), flush=True)
    save()

    chunks = [c.audio(audio) for c in found_cpu[1]]
    model = pipe.model
    plan = wb._Plan.build(model, False, {"num_beams": 1, **gk})
    with torch.inference_mode():
        feats = wb.log_mel(pipe.feature_extractor, chunks, model.device).to(model.dtype)
        encoder = model.get_encoder()
        result["encoder_kernels"] = kernel_table(lambda: wb.encode(encoder, feats), reps=1, top=15)
        encoded = wb.encode(encoder, feats)
        decoder = wb._StaticDecoder(model, encoded, 128, "sdpa")
        prompt = torch.tensor([list(plan.init_tokens)] * encoded.shape[0], device=encoded.device)
        decoder.prefill(prompt[:, :-1])
        loop = wb._Loop(decoder, plan, prompt.shape[1] - 1, prompt[:, -1])
        result["decoder_step_kernels"] = kernel_table(lambda: loop.step(128), reps=3, top=40)
        del decoder, loop
        torch.cuda.empty_cache()
    print(json.dumps(result["decoder_step_kernels"], indent=1), flush=True)
    print(json.dumps(result["encoder_kernels"], indent=1), flush=True)
    save()
    result["variants"] = []
    with torch.inference_mode():
        step_variants(model, encoded, plan, [v for v in args.variants.split(",") if v],
                      3 if args.smoke else args.tokens, result["variants"], save)
    return result


if __name__ == "__main__":
    main()
