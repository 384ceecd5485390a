"""Long audio on CPU: the app's modes vs the raw transformers pipeline, in one run.

A 10-minute espeak-ng recording (sentences with pauses, made by bench/speech_audio.py) through
../shared/models/whisper-tiny.en on the CPU: engine.speech.transcribe in its sequential,
chunked and vad modes (vad is what the default mode, auto, picks for audio over 30 s), and
the raw pipeline with insanely-fast-whisper's settings (chunk_length_s=30, greedy,
return_timestamps=True) at several batch sizes. Wall time, real-time factor, and WER (jiwer)
against the script's text after Whisper's English normalisation.

    python bench/long_audio_cpu.py [--seconds 600] [--out-dir bench/results]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, WHISPER_TINY_EN, machine, pipeline_run_chunks, write_result  # noqa: E402
from bench.speech_audio import RATE, recording  # noqa: E402

TASK = "automatic-speech-recognition"


def wer(reference: str, hypothesis: str) -> float:
    import jiwer
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    norm = EnglishTextNormalizer({})
    return jiwer.wer(norm(reference), norm(hypothesis) or "<empty>")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--model", default=str(WHISPER_TINY_EN))
    parser.add_argument("--raw-batches", default="8,24", help="batch sizes for the raw pipeline (24: the peer's)")
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)

    import transformers

    from engine import speech
    from engine.registry import PipelineRegistry
    from engine.settings import Settings
    from engine.speech import TranscribeOptions, transcribe

    transformers.logging.set_verbosity_error()
    audio, text = recording(args.seconds, seed=0)
    duration = audio.size / RATE
    pipe = PipelineRegistry(Settings.from_env(env={}, device="cpu", offline=True)).get(TASK, args.model)
    print(f"{duration / 60:.1f} min of speech, {len(text.split())} words", flush=True)
    pipe(audio[: 5 * RATE].copy(), generate_kwargs={"num_beams": 1})  # warm-up, not timed

    def app(mode):
        return lambda: transcribe(pipe, audio, TranscribeOptions(mode=mode)).text

    def raw(batch):
        return lambda: pipe(audio.copy(), chunk_length_s=30, batch_size=batch, return_timestamps=True,
                            generate_kwargs={"num_beams": 1})["text"]

    def without_whisper_batch(fn):
        def run():
            saved = speech._run_chunks
            speech._run_chunks = pipeline_run_chunks
            try:
                return fn()
            finally:
                speech._run_chunks = saved
        return run

    runs = [("app sequential", "transcribe(mode='sequential')", app("sequential")),
            ("app chunked", "transcribe(mode='chunked', batch_size=8)", app("chunked")),
            ("app vad (default)", "transcribe(mode='auto' -> vad, batch_size=8): VAD + whisper_batch", app("auto")),
            ("app vad, pipeline batches", "the same with the pipeline per batch instead of whisper_batch (lever)",
             without_whisper_batch(app("auto")))]
    runs += [(f"raw pipeline b{b}", f"pipeline(chunk_length_s=30, batch_size={b}, return_timestamps=True, greedy)",
              raw(int(b))) for b in args.raw_batches.split(",")]
    rows = []
    for name, what, fn in runs:
        start = time.perf_counter()
        hypothesis = fn()
        wall = time.perf_counter() - start
        rows.append({"name": name, "what": what, "wall_s": round(wall, 2), "rtf": round(wall / duration, 4),
                     "audio_min_per_s": round(duration / 60 / wall, 3), "wer": round(wer(text, hypothesis), 4),
                     "text_start": hypothesis.strip()[:160]})
        print(f"{name:26s} {wall:7.1f} s  RTF {wall / duration:.3f}  WER {rows[-1]['wer']:.3f}", flush=True)

    by = {r["name"]: r for r in rows}
    default = by["app vad (default)"]
    fastest_raw = min((r for r in rows if r["name"].startswith("raw")), key=lambda r: r["wall_s"])
    result = {
        "what": f"{duration / 60:.1f} min espeak-ng recording ({len(text.split())} words, pauses 0.4-1.5 s) "
                f"with whisper-tiny.en on CPU, float32, greedy",
        "audio_s": round(duration, 1), "model": Path(args.model).name,
        "rows": rows,
        "targets": {
            "default_vs_fastest_raw": {"default": default["name"], "default_wall_s": default["wall_s"],
                                       "fastest_raw": fastest_raw["name"], "fastest_raw_wall_s": fastest_raw["wall_s"],
                                       "met": default["wall_s"] <= fastest_raw["wall_s"]},
            "wer_vs_sequential": {"default_wer": default["wer"], "sequential_wer": by["app sequential"]["wer"],
                                  "met": default["wer"] <= by["app sequential"]["wer"] + 0.02},
        },
        "machine": machine(), "command": "python bench/long_audio_cpu.py",
    }
    write_result("long_audio_cpu", result, Path(args.out_dir))
    return result


if __name__ == "__main__":
    main()
