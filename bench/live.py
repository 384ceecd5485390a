"""Live transcription and many files: real-time factor, utterance-to-commit latency, shared batches.

1. Live: an espeak-ng recording (bench/speech_audio.py) fed to engine.live.LiveSession as the page
   sends it, 0.5 s at a time, on a simulated clock: chunk k arrives at 0.5*(k+1) s; the worker takes
   everything that has arrived whenever it is free (what LiveStream does), so time spent behind real
   time shows up in the latency. Real-time factor = processing seconds / audio seconds; latency =
   when an utterance's text was committed minus when its speech ended. WER against the script's text
   for live and for file mode (engine.speech.transcribe) on the same audio.
2. Many files: --files recordings of --file-seconds each through engine.batch.transcribe_many
   (chunks of all files in shared batches), the same files one transcribe() call each, and the same
   audio joined into one file through transcribe(); wall time and audio-minutes per second.

    python bench/live.py [--live-seconds 60] [--files 10 --file-seconds 30] [--out-dir bench/results]
GPU machine (random weights of a given shape, every piece decodes exactly --tokens tokens):
    python3 bench/live.py --assets .gpu-live --shape large-v3 --tokens 100 --device cuda --out-dir $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.speech_audio import RATE  # noqa: E402

CHUNK_S = 0.5
WHISPER_TINY_EN = ROOT.parent / "shared" / "models" / "whisper-tiny.en"
TINY = dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6, decoder_attention_heads=6,
            encoder_ffn_dim=1536, decoder_ffn_dim=1536, num_mel_bins=80)


def wer(reference: str, hypothesis: str) -> float | None:
    try:
        from bench.speech_audio import wer as word_error_rate
        return round(word_error_rate(reference, hypothesis), 4) if reference else None
    except ImportError:  # the GPU machine has neither jiwer nor whisper-normalizer
        return None


def audio_for(seconds: float, seed: int, assets: Path | None) -> tuple[np.ndarray, str]:
    if assets is not None:  # the GPU machine has no espeak: one recording made here, rotated and tiled
        base = np.load(assets / "speech.npz")["audio"].astype(np.float32) / 32767
        base = np.roll(base, -int(seed * 7.3 * RATE) % base.shape[0])
        return np.resize(base, int(seconds * RATE)), ""
    from bench.speech_audio import recording

    return recording(seconds, seed=seed)


def simulate_live(pipe, audio: np.ndarray, options) -> dict:
    """Feed audio as a page would, on a simulated real-time clock; figures of the session."""
    from engine.live import LiveOptions, LiveSession

    session = LiveSession(rate=RATE, options=LiveOptions(max_seconds=24 * 3600),
                          transcribe_options=options)
    step = int(CHUNK_S * RATE)
    arrivals = [(min(audio.shape[0], i + step), (i + step) / RATE) for i in range(0, audio.shape[0], step)]
    clock, fed, latencies, feeds = 0.0, 0, [], 0
    while fed < audio.shape[0]:
        # The worker is free at `clock`; it waits for the next chunk if none has arrived yet.
        ready = [end for end, at in arrivals if at <= clock and end > fed]
        if not ready:
            clock = next(at for end, at in arrivals if end > fed)
            continue
        upto = ready[-1]
        before, start = len(session.commits), time.perf_counter()
        session.feed(pipe, audio[fed:upto])
        for commit in session.commits[before:]:
            latencies.append(clock + (commit.wall - start) - commit.speech_end)
        clock += time.perf_counter() - start
        fed, feeds = upto, feeds + 1
    start = time.perf_counter()
    before = len(session.commits)
    result = session.finish(pipe)
    for commit in session.commits[before:]:
        latencies.append(clock + (commit.wall - start) - commit.speech_end)
    clock += time.perf_counter() - start
    duration = audio.shape[0] / RATE
    return {"audio_s": round(duration, 2), "processing_s": round(session.busy_s, 2),
            "real_time_factor": round(session.busy_s / duration, 3), "feeds": feeds, "utterances": len(latencies),
            "latency_median_s": round(float(np.median(latencies)), 2) if latencies else None,
            "latency_p90_s": round(float(np.percentile(latencies, 90)), 2) if latencies else None,
            "latency_max_s": round(max(latencies), 2) if latencies else None,
            "finished_behind_s": round(max(0.0, clock - duration), 2), "text": result.text}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live-seconds", type=float, default=60.0)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--file-seconds", type=float, default=30.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--assets", help="GPU machine: folder with whisper-tiny.en's config/tokenizer and .npz audio")
    parser.add_argument("--shape", choices=("tiny", "large-v3"), default="tiny", help="with --assets: random weights")
    parser.add_argument("--tokens", type=int, default=0, help="with --assets: tokens decoded per piece")
    parser.add_argument("--skip", default="", help="comma-separated: live, many")
    parser.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from engine.batch import transcribe_many
    from engine.speech import TranscribeOptions, transcribe

    assets = Path(args.assets) if args.assets else None
    if assets is None:
        from engine.registry import PipelineRegistry
        from engine.settings import Settings

        pipe = PipelineRegistry(Settings.from_env(env={}, device=args.device, offline=True)).get(
            "automatic-speech-recognition", str(WHISPER_TINY_EN))
        model = "whisper-tiny.en"
    else:
        from bench.gpu_long_audio import LARGE_V3, build_pipeline

        dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
        pipe = build_pipeline(assets, LARGE_V3 if args.shape == "large-v3" else TINY, args.device, dtype)
        model = f"random {args.shape}-shaped Whisper, {dtype}".replace("torch.", "")
    gk = {"min_new_tokens": args.tokens, "max_new_tokens": args.tokens} if args.tokens else {}
    options = TranscribeOptions(batch_size=args.batch_size, generate_kwargs=gk)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    transcribe(pipe, audio_for(args.file_seconds, 1, assets)[0][:5 * RATE], options)  # warm-up, not timed
    result: dict = {"what": __doc__.splitlines()[0], "model": model, "device": args.device,
                    "threads": torch.get_num_threads(), "command": "python bench/live.py " + " ".join(argv or sys.argv[1:]),
                    "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load average "
                               f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at start",
                    "fixed_tokens": args.tokens or None}
    skip = set(filter(None, args.skip.split(",")))
    if "live" not in skip:
        audio, text = audio_for(args.live_seconds, 2, assets)
        live = simulate_live(pipe, audio, options)
        (file_result, file_s) = timed(lambda: transcribe(pipe, audio, options))
        live.update(wer_live=wer(text, live.pop("text")), wer_file=wer(text, file_result.text),
                    file_mode_s=round(file_s, 2))
        result["live"] = live
        print(json.dumps(live), flush=True)
    if "many" not in skip:
        files = [audio_for(args.file_seconds, 10 + i, assets)[0] for i in range(args.files)]
        joined = np.concatenate(files)
        total_min = joined.shape[0] / RATE / 60
        rows = []
        for name, fn in (("many files, shared batches (transcribe_many)", lambda fs: transcribe_many(pipe, fs, options)),
                         ("the same files one transcribe() each", lambda fs: [transcribe(pipe, f, options) for f in fs]),
                         ("the same audio joined into one file", lambda fs: transcribe(pipe, np.concatenate(fs), options))):
            fn(files[:2])  # each configuration warmed the same way, on its own first two files, untimed
            sync()
            _, seconds = timed(lambda: fn(files))
            sync()
            rows.append({"name": name, "wall_s": round(seconds, 2), "audio_min_per_s": round(total_min / seconds, 3)})
            print(json.dumps(rows[-1]), flush=True)
        result["many"] = {"files": args.files, "file_seconds": args.file_seconds,
                          "audio_min": round(total_min, 2), "batch_size": args.batch_size, "rows": rows}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = "live_gpu.json" if args.device.startswith("cuda") else "live.json"
    (out / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / name}", flush=True)
    return result


if __name__ == "__main__":
    main()
