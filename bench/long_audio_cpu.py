"""Long audio on CPU: the app's default path vs faster-whisper and the raw pipeline, in one run.

A 10-minute espeak-ng recording (sentences with pauses, bench/speech_audio.py) with whisper tiny.en
weights on 2 CPU threads: engine.speech.transcribe at the Speech tab's defaults (and with int8 off),
faster-whisper 1.2.1 int8 on the CTranslate2 checkpoint the app's model was converted from
(BatchedInferencePipeline and sequential), and the raw transformers pipeline with and without
timestamps. Each row runs in a process of its own (bench/speech_worker.py: load, warm up on the
same 30 s, then one timed pass); the rows are interleaved round by round (A B C A B C) because the
machine is shared. Wall time, CPU time, WER (jiwer, Whisper's English normaliser) and the median
distance from each sentence's start to the nearest segment start.

    python bench/long_audio_cpu.py [--seconds 600] [--rounds 2] [--rows ...] [--once raw_ts,...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, ROOT, machine, write_result  # noqa: E402
from bench.speech_audio import RATE, recording, sentence_starts, wer  # noqa: E402

ROWS = "app_default,fw_batched,fw_sequential,app_float32"
ONCE = "app_greedy,app_no_bf16,app_greedy_float32,app_token_times,app_float32_token_times,fw_batched_greedy,raw_ts,raw_nots"


def start_error(truth: list[float], starts: list[float]) -> float | None:
    """Median over sentences of the distance to the nearest segment start (s)."""
    if not starts:
        return None
    return round(statistics.median(min(abs(s - t) for s in starts) for t in truth), 3)


def worker(config: str, seconds: float, threads: int, cold: bool = False) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "speech_worker.py"), config, "--seconds", str(seconds),
           "--threads", str(threads)] + (["--cold"] if cold else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"config": config, "error": (done.stderr or done.stdout)[-1500:]}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of --rows")
    parser.add_argument("--rows", default=ROWS, help="rows timed every round")
    parser.add_argument("--once", default=ONCE, help="slow rows timed in the first round only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="also time the app's first call after loading")
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)

    audio, text = recording(args.seconds, seed=0)
    truth = sentence_starts(args.seconds, seed=0)
    duration = audio.size / RATE
    rows_each = [r for r in args.rows.split(",") if r]
    once = [r for r in args.once.split(",") if r]
    print(f"{duration / 60:.1f} min of speech, {len(text.split())} words, {len(truth)} sentences; "
          f"rounds of {rows_each}, once {once}", flush=True)
    runs = []
    for round_ in range(args.rounds):
        order = rows_each[round_ % len(rows_each):] + rows_each[: round_ % len(rows_each)]
        order += once if round_ == 0 else []
        if round_ == 0 and args.cold:
            order.insert(0, "app_default:cold")
        for name in order:
            config, cold = name.split(":")[0], name.endswith(":cold")
            row = worker(config, args.seconds, args.threads, cold)
            row["round"] = round_
            if "error" not in row:
                row["wer"] = round(wer(text, row.pop("text")), 4)
                row["median_start_error_s"] = start_error(truth, row.pop("starts"))
                row["segments"] = None
                print(f"round {round_} {name:24s} {row['wall_s']:7.1f} s (cpu {row['cpu_s']:6.1f}) "
                      f"WER {row['wer']:.3f} start err {row['median_start_error_s']} "
                      f"load {row['load_avg_before']}->{row['load_avg_after']}", flush=True)
            else:
                print(f"round {round_} {name}: FAILED {row['error'][-300:]}", flush=True)
            runs.append(row)
    summary = {}
    for row in runs:
        if "error" in row:
            continue
        key = row["config"] + (" (cold)" if row.get("cold") else "")
        s = summary.setdefault(key, {"what": row["what"], "wall_s": [], "cpu_s": [], "wer": row["wer"],
                                     "median_start_error_s": row["median_start_error_s"], "load_s": row["load_s"]})
        s["wall_s"].append(row["wall_s"])
        s["cpu_s"].append(row["cpu_s"])
    for s in summary.values():
        s["wall_s_median"] = round(statistics.median(s["wall_s"]), 2)
        s["audio_min_per_s"] = round(duration / 60 / s["wall_s_median"], 3)
    targets = {}
    if "app_default" in summary and "fw_batched" in summary:
        app_, fw = summary["app_default"], summary["fw_batched"]
        paired = [(a["wall_s"], f["wall_s"]) for a in runs for f in runs
                  if a.get("config") == "app_default" and f.get("config") == "fw_batched"
                  and a.get("round") == f.get("round") and not a.get("cold") and "error" not in a and "error" not in f]
        targets["faster_than_fw_batched"] = {
            "app_wall_s": app_["wall_s"], "fw_batched_wall_s": fw["wall_s"],
            "ratio_per_round": [round(f / a, 3) for a, f in paired],
            "met": all(a < f for a, f in paired) and bool(paired)}
    if "app_default" in summary and "fw_sequential" in summary:
        targets["wer_within_0.5_of_fw_sequential"] = {
            "app_wer": summary["app_default"]["wer"], "fw_sequential_wer": summary["fw_sequential"]["wer"],
            "met": summary["app_default"]["wer"] <= summary["fw_sequential"]["wer"] + 0.005}
        err = summary["app_default"]["median_start_error_s"]
        targets["median_start_error_within_0.15_s"] = {"app": err, "met": err is not None and err <= 0.15}
    result = {
        "what": f"{duration / 60:.1f} min espeak-ng recording ({len(text.split())} words, {len(truth)} sentences, "
                f"pauses 0.4-1.5 s), whisper tiny.en weights, {args.threads} CPU threads per row; each row in its "
                "own process, loaded and warmed on the same 30 s before one timed pass; rows interleaved",
        "audio_s": round(duration, 1), "rounds": args.rounds, "summary": summary, "runs": runs,
        "targets": targets, "machine": machine(),
        "command": "python bench/long_audio_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_result("long_audio_cpu", result, Path(args.out_dir))
    for name, s in summary.items():
        print(f"{name:26s} median {s['wall_s_median']:7.1f} s  {s['audio_min_per_s']:6.2f} audio-min/s  "
              f"WER {s['wer']:.3f}  start err {s['median_start_error_s']}")
    print(json.dumps(targets, indent=1))
    return result


if __name__ == "__main__":
    main()
