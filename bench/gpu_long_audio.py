"""Long audio on a GPU: the app's modes vs the raw transformers pipeline, same work per chunk.

A whisper-large-v3-shaped model with random weights (built from a WhisperConfig; vocabulary,
tokenizer and generation config from whisper-tiny.en), fp16, on about 30 minutes of espeak
speech tiled from a short recording. Every chunk decodes exactly --tokens new tokens
(min_new_tokens = max_new_tokens), so every configuration does the same decoding work.

Run on the GPU machine (see bench/README.md for the exact command):
    python3 bench/gpu_long_audio.py --assets .gpu --out $OUT/gpu_long_audio.json
Smoke run on a CPU (tiny model, tiny audio): python bench/gpu_long_audio.py --smoke
"""

from __future__ import annotations

import argparse
import os
import difflib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.speech_audio import RATE, read_wav  # noqa: E402

LARGE_V3 = dict(d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
                decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=128)
SMOKE = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=128)
PEER_BATCH = 24  # insanely-fast-whisper's default --batch-size
REPEAT = 3  # timed runs of the tab's defaults (the row's wall_s is their median; a run takes about 1.5 s)


def build_pipeline(assets: Path, shape: dict, device: str, dtype: torch.dtype):
    """A random-weight Whisper of the given shape with whisper-tiny.en's tokens, as an ASR pipeline."""
    from transformers import (AutoTokenizer, GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, pipeline)

    base = json.loads((assets / "whisper-tiny.en" / "config.json").read_text())
    keep = ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id",
            "begin_suppress_tokens", "max_source_positions", "max_target_positions", "activation_function")
    config = WhisperConfig(**{k: base[k] for k in keep}, **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = WhisperForConditionalGeneration(config)
    model = model.to(dtype).eval()
    model.generation_config = GenerationConfig.from_pretrained(assets / "whisper-tiny.en")
    tokenizer = AutoTokenizer.from_pretrained(assets / "whisper-tiny.en")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return pipeline("automatic-speech-recognition", model=model, tokenizer=tokenizer, feature_extractor=fe,
                    device=device, dtype=dtype)


class Bench:
    def __init__(self, device: str, audio_s: float, save: Callable[[list], None] = lambda rows: None,
                 skip: frozenset[str] = frozenset()):
        self.device, self.audio_s, self.rows, self.save, self.skip = device, audio_s, [], save, skip
        self.cuda = device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def measure(self, name: str, what: str, fn: Callable[[], Any], audio_s: float | None = None,
                repeat: int = 1, **extra) -> Any:
        """Times fn() (repeat times: the median is the row's wall_s, every run in walls_s)."""
        audio_s = audio_s or self.audio_s
        if name in self.skip:
            print(f"{name:34s} skipped (--skip)", flush=True)
            return None
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        walls = []
        try:
            for _ in range(repeat):
                self.sync()
                start = time.perf_counter()
                result = fn()
                self.sync()
                walls.append(time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001 - one failing configuration must not lose the others
            print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
            self.rows.append({"name": name, "what": what, "error": f"{type(exc).__name__}: {exc}"[:500]})
            self.save(self.rows)
            return None
        wall = float(np.median(walls))
        row = {"name": name, "what": what, "audio_s": round(audio_s, 1), "wall_s": round(wall, 3),
               **({"walls_s": [round(w, 3) for w in walls]} if repeat > 1 else {}),
               "audio_min_per_s": round(audio_s / 60 / wall, 3),
               "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.cuda else None, **extra}
        self.rows.append(row)
        self.save(self.rows)
        print(f"{name:34s} {wall:8.2f} s {row['audio_min_per_s']:8.2f} audio-min/s "
              f"{row['peak_gpu_gib'] or 0:6.1f} GiB  {what}", flush=True)
        return result


def similarity(a: str, b: str) -> float:
    return round(difflib.SequenceMatcher(None, a, b, autojunk=False).ratio(), 4)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(ROOT / ".gpu"), help="folder with speech.wav and whisper-tiny.en/")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--tokens", type=int, default=100, help="new tokens decoded per chunk")
    parser.add_argument("--b1-minutes", type=float, default=2.0, help="audio for the slow batch-1 pipeline run")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_long_audio.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny model and audio on the CPU (tests)")
    parser.add_argument("--skip", default="", help="comma-separated row names not to run (rows recorded before)")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="timed runs of the tab's defaults (median kept)")
    args = parser.parse_args(argv)

    import transformers

    transformers.logging.set_verbosity_error()
    from engine.audio import SileroVad, silero_vad
    from engine.speech import TranscribeOptions, speech_chunks, transcribe
    from engine.whisper_batch import DecodeOptions, transcribe_chunks

    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda:0"
    dtype = torch.float32 if device == "cpu" else torch.float16
    assets = Path(args.assets)
    minutes = 0.5 if args.smoke else args.minutes
    tokens = 3 if args.smoke else args.tokens
    b1_minutes = 0.25 if args.smoke else args.b1_minutes
    shape = SMOKE if args.smoke else LARGE_V3

    t0 = time.perf_counter()
    pipe = build_pipeline(assets, shape, device, dtype)
    build_s = time.perf_counter() - t0
    clip = read_wav(assets / "speech.wav")
    n = int(minutes * 60 * RATE)
    audio = np.tile(clip, -(-n // clip.size))[:n].copy()
    audio_s = audio.size / RATE
    gk = {"num_beams": 1, "min_new_tokens": tokens, "max_new_tokens": tokens}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    skip = frozenset(name.strip() for name in args.skip.split(",") if name.strip())
    bench = Bench(device, audio_s, save=lambda rows: out.write_text(json.dumps({"partial": True, "rows": rows},
                                                                               indent=2) + "\n"), skip=skip)
    print(f"device {device}, model built in {build_s:.1f} s, audio {audio_s / 60:.1f} min "
          f"(tiled from {clip.size / RATE:.0f} s), {tokens} tokens per chunk", flush=True)

    def raw(a, batch, timestamps=True):
        return pipe(a.copy(), chunk_length_s=30, batch_size=batch, return_timestamps=timestamps, generate_kwargs=gk)

    def app(mode, batch, a=audio, **options):
        options.setdefault("auto_batch", False)
        return transcribe(pipe, a, TranscribeOptions(mode=mode, batch_size=batch, generate_kwargs=gk, **options))

    def tab_defaults(a=audio, **options):
        """What the Speech tab sends: TranscribeOptions() with its slider's batch (8); the batch is chosen
        from free GPU memory and the chunks (auto_batch); segment times from aligned words; beams auto
        (greedy on a GPU). Only the token count is forced."""
        forced = {k: v for k, v in gk.items() if k != "num_beams"}
        return transcribe(pipe, a, TranscribeOptions(batch_size=8, generate_kwargs=forced, **options))

    # Warm-up (cuBLAS handles, kernels, VAD sessions) on one minute; not recorded. Each configuration
    # below is also run once on that minute right before it is timed (warmed the same way).
    warm = audio[: 60 * RATE]
    raw(warm, PEER_BATCH)
    app("vad", PEER_BATCH, warm)
    bench.sync()
    vad = silero_vad()
    ranges = speech_chunks(audio, RATE)
    chunks = [c.audio(audio) for c in ranges]
    speech_s = sum(c.samples for c in ranges) / RATE
    common = dict(vad_chunks=len(chunks), pipeline_windows=_window_count(audio_s))

    # 0. The Speech tab's defaults, through engine.speech.transcribe, and the raw pipeline with and
    # without timestamps, each warmed on the whole recording just before (untimed): the first pass of a
    # shape (all 62 chunks in one batch) pays for kernel selection and allocations a minute does not.
    for name, what, fn in (
            ("app_tab_defaults", "transcribe(TranscribeOptions(batch_size=8)): the Speech tab's defaults, "
                                 "vad, timestamps on (aligned words: one pass per chunk), batch from free GPU memory",
             tab_defaults),
            ("app_tab_defaults_beams5", "the tab's defaults with 5 beams (engine.whisper_batch's beam search: "
                                        "no CUDA graph)", lambda a: tab_defaults(a, num_beams=5)),
            ("app_tab_defaults_token_times", "the same with segment_times='tokens': Whisper's timestamp tokens, "
                                             "a further pass where a window ends on an open segment",
             lambda a: tab_defaults(a, segment_times="tokens")),
            ("raw_pipeline_b24_ts_warmed", "pipeline(chunk_length_s=30, batch_size=24, return_timestamps=True), "
                                           "warmed on itself", lambda a: raw(a, PEER_BATCH)),
            ("raw_pipeline_b24_nots_warmed", "pipeline(chunk_length_s=30, batch_size=24), no timestamps, "
                                             "warmed on itself", lambda a: raw(a, PEER_BATCH, False))):
        if name in skip:
            continue
        fn(audio)
        bench.sync()
        bench.measure(name, what, lambda fn=fn: fn(audio), warmed_on="the whole recording, untimed, just before",
                      repeat=args.repeat if name == "app_tab_defaults" else 1)

    # 1. The app as it ships (engine.speech.transcribe, what the Speech tab calls) vs the peer's pipeline.
    app_vad = bench.measure("app_vad_b24", f"transcribe(mode='vad', batch_size=24): {vad.kind} VAD on "
                            f"{vad.threads} threads + whisper_batch", lambda: app("vad", PEER_BATCH),
                            batch_size=PEER_BATCH, **common)
    bench.measure("raw_pipeline_chunked_b24", "pipeline(chunk_length_s=30, batch_size=24)",
                  lambda: raw(audio, PEER_BATCH), batch_size=PEER_BATCH, **common)
    bench.measure("app_chunked_b24", "transcribe(mode='chunked', batch_size=24)", lambda: app("chunked", PEER_BATCH),
                  batch_size=PEER_BATCH)
    fast_all = bench.measure("app_vad_all", "transcribe(mode='vad'), all chunks in one batch",
                             lambda: app("vad", len(chunks)), batch_size=len(chunks))
    b1 = audio[: int(b1_minutes * 60 * RATE)]
    bench.measure("raw_pipeline_chunked_b1", f"pipeline(chunk_length_s=30, batch_size=1) on the first "
                  f"{b1_minutes:g} min", lambda: raw(b1, 1), audio_s=b1.size / RATE, batch_size=1)

    # 2. Levers, one by one.
    pipe_vad = bench.measure("app_vad_pipeline_b24", "transcribe(mode='vad', decoding='pipeline'): the pipeline "
                             "per batch instead of whisper_batch",
                             lambda: app("vad", PEER_BATCH, decoding="pipeline"), batch_size=PEER_BATCH)
    for name, what, v in (("vad_torchscript", "VAD alone: silero TorchScript, one frame per call",
                           SileroVad(sequence=False)),
                          ("vad_onnx_1thread", "VAD alone: silero sequence ONNX, one thread", SileroVad(threads=1)),
                          ("vad_onnx_8threads", "VAD alone: 8 threads (the app's cap before)", SileroVad(threads=8)),
                          ("vad_onnx_threads", f"VAD alone: the CPU's, {vad.threads} threads", vad)):
        found = bench.measure(name, what, lambda: speech_chunks(audio, RATE, vad=v))
        if found is not None:
            bench.rows[-1]["same_chunks_as_onnx_threads"] = found == ranges
    if bench.cuda:
        speech_chunks(audio, RATE, vad=vad, device=torch.device(device))
        found = bench.measure("vad_gpu", "VAD alone: engine.silero_torch on the model's GPU (what the app runs there)",
                              lambda: speech_chunks(audio, RATE, vad=vad, device=torch.device(device)))
        if found is not None:
            bench.rows[-1]["chunks"] = len(found)
            bench.rows[-1]["same_chunks_as_onnx_threads"] = found == ranges

    def asr(batch, **opts):
        return lambda: transcribe_chunks(pipe, chunks, batch_size=batch, return_timestamps=True,
                                         generate_kwargs=gk, options=DecodeOptions(**opts))

    from engine.whisper_batch import _pipeline_path

    bench.measure("asr_pipeline_b24", "ASR only: pipeline on the VAD chunks, batch 24",
                  lambda: _pipeline_path(pipe, chunks, PEER_BATCH, True, gk, None), batch_size=PEER_BATCH)
    bench.measure("asr_fast_nograph_b24", "ASR only: whisper_batch, static cache, no CUDA graph, batch 24",
                  asr(PEER_BATCH, cuda_graph=False), batch_size=PEER_BATCH)
    bench.measure("asr_fast_graph_b24", "ASR only: + CUDA graph per decoder step", asr(PEER_BATCH),
                  batch_size=PEER_BATCH)
    bench.measure("asr_fast_graph_all", "ASR only: + all chunks in one batch", asr(len(chunks)),
                  batch_size=len(chunks))
    bench.measure("asr_fast_graph_all_aligned", "ASR only: all chunks in one batch, no timestamp tokens, word "
                  "times aligned (the tab's default)",
                  lambda: transcribe_chunks(pipe, chunks, batch_size=len(chunks), return_timestamps="word",
                                            generate_kwargs=gk), batch_size=len(chunks))
    bench.measure("asr_fast_graph_all_eager_attn", "ASR only: attention as softmax(q k^T) v instead of sdpa",
                  asr(len(chunks), attention="eager"), batch_size=len(chunks))
    bench.measure("asr_fast_graph_all_cpu_features", "ASR only: log-mel on the CPU instead of the GPU",
                  asr(len(chunks), features_on_device=False), batch_size=len(chunks))
    try:
        breakdown = _breakdown(pipe, chunks, gk, bench) if bench.cuda else {}
    except Exception as exc:  # noqa: BLE001
        breakdown = {"error": repr(exc)[:300]}
    pipe.model.to(torch.bfloat16)
    bench.measure("asr_fast_graph_all_bf16", "ASR only: bf16 weights instead of fp16", asr(len(chunks)),
                  batch_size=len(chunks))
    for row in bench.rows:
        if row["name"].startswith(("asr_", "vad_")):
            row["note"] = "one stage alone; audio-min/s counts the whole recording"

    fast_text = app_vad.text if app_vad else ""
    ref_text = pipe_vad.text if pipe_vad else ""
    result = {
        "what": "30 min espeak speech (tiled), random-weight whisper-large-v3 shape, every chunk "
                f"{tokens} new tokens, greedy; app rows at their defaults (word times aligned), ASR-only "
                "rows with timestamp tokens unless named aligned",
        "device": torch.cuda.get_device_name(0) if bench.cuda else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "dtype": str(dtype).removeprefix("torch."), "attn_implementation": pipe.model.config._attn_implementation,
        "model_build_s": round(build_s, 1), "audio_s": round(audio_s, 1), "clip_s": round(clip.size / RATE, 1),
        "vad_chunks": len(chunks), "vad_speech_s": round(speech_s, 1), "pipeline_windows": _window_count(audio_s),
        "vad": vad.kind, "vad_threads": vad.threads, "cpus": os.cpu_count(),
        "tokens_per_chunk": tokens,
        "agreement": {"whisper_batch_vs_pipeline_text_similarity": similarity(fast_text, ref_text)
                      if fast_text and ref_text else None,
                      "all_vs_b24_text_similarity": similarity(fast_all.text if fast_all else "", fast_text),
                      "note": "random weights in fp16 put many logits within rounding of each other, so "
                              "different kernels pick different tokens; exact agreement is tested on CPU "
                              "with the real whisper-tiny.en (tests/test_whisper_batch.py)"},
        "breakdown_all_chunks_s": breakdown,
        "rows": bench.rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n" + "\n".join(f"{r['name']:34s} {r.get('wall_s', 'FAILED')!s:>8} s "
                            f"{r.get('audio_min_per_s', '-')!s:>8} audio-min/s {r.get('peak_gpu_gib') or '-'!s:>6} GiB"
                            for r in bench.rows))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    print(f"wrote {out}")
    return result


def _window_count(audio_s: float, window: float = 30.0) -> int:
    import math

    step = window * 2 / 3
    return max(1, math.ceil(max(0.0, audio_s - window) / step) + 1)


def _breakdown(pipe, chunks, gk, bench: Bench) -> dict:
    """Seconds spent in log-mel, encoder and decoder for all chunks in one batch."""
    from engine import whisper_batch as wb

    model = pipe.model
    plan = wb._Plan.build(model, False, gk)  # the tab's default: no timestamp tokens, words aligned after
    frames = [max(1, -(-len(c) // pipe.feature_extractor.hop_length) // 2) for c in chunks]
    heads = wb.alignment_heads(model)
    times = {}
    with torch.inference_mode():
        bench.sync()
        t = time.perf_counter()
        feats = wb.log_mel(pipe.feature_extractor, chunks, model.device).to(model.dtype)
        bench.sync()
        times["log_mel"] = time.perf_counter() - t
        t = time.perf_counter()
        enc = wb.encode(model.get_encoder(), feats)
        bench.sync()
        times["encoder"] = time.perf_counter() - t
        t = time.perf_counter()
        wb._greedy(model, enc, plan, wb.DecodeOptions())
        bench.sync()
        times["decoder_incl_capture"] = time.perf_counter() - t
        t = time.perf_counter()
        wb._greedy(model, enc, plan, wb.DecodeOptions(), align=(heads, frames, []))
        bench.sync()
        times["decoder_and_word_alignment"] = time.perf_counter() - t
    return {k: round(v, 3) for k, v in times.items()}


if __name__ == "__main__":
    main()
