"""Registry: cold load vs cached get, and 8 threads asking for one cold key at once (loads counted).

    python bench/registry_bench.py [--out-dir bench/results]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, WHISPER_TINY_EN, machine, summary_ms, tiny_model, write_result  # noqa: E402


def registry():
    from engine.registry import PipelineRegistry
    from engine.settings import Settings

    return PipelineRegistry(Settings.from_env(env={}, device="cpu", offline=True))


def cold_vs_cached(task: str, model: str, gets: int = 2000) -> dict:
    reg = registry()
    start = time.perf_counter()
    reg.get(task, model)
    cold = time.perf_counter() - start
    times = []
    for _ in range(gets):
        start = time.perf_counter()
        reg.get(task, model)
        times.append(time.perf_counter() - start)
    cached = summary_ms([t * 1000 for t in times])  # in microseconds: a cached get takes a few
    cached = {k.replace("_ms", "_us"): v for k, v in cached.items()}
    return {"cold_load_s": round(cold, 3), "cached_get": cached, "loads": reg.loads,
            "speedup": round(cold / (cached["median_us"] / 1e6))}


def threads_on_cold_key(task: str, model: str, threads: int = 8) -> dict:
    reg = registry()
    barrier = threading.Barrier(threads)
    got, errors, waited = [], [], []

    def worker() -> None:
        barrier.wait()
        start = time.perf_counter()
        try:
            got.append(reg.get(task, model))
        except BaseException as exc:  # noqa: BLE001 - counted and reported
            errors.append(repr(exc))
        waited.append(time.perf_counter() - start)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"threads": threads, "loads": reg.loads, "same_object_for_all": len({id(p) for p in got}) == 1,
            "errors": errors, "slowest_wait_s": round(max(waited), 3), "fastest_wait_s": round(min(waited), 3)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)

    models = {"tiny ViT fixture (image-classification)": ("image-classification", tiny_model("vit_classifier"))}
    if WHISPER_TINY_EN.is_dir():
        models["whisper-tiny.en (automatic-speech-recognition)"] = ("automatic-speech-recognition",
                                                                    str(WHISPER_TINY_EN))
    rows = {}
    for label, (task, model) in models.items():
        first = cold_vs_cached(task, model, gets=10)  # pays the imports and disk reads once
        rows[label] = {"first_load_in_process_s": first["cold_load_s"],
                       "cold_vs_cached": cold_vs_cached(task, model),
                       "threads_on_cold_key": threads_on_cold_key(task, model, args.threads)}
        r = rows[label]
        print(f"{label}: cold {r['cold_vs_cached']['cold_load_s']} s, cached get "
              f"{r['cold_vs_cached']['cached_get']['median_us']} us; {args.threads} threads -> "
              f"{r['threads_on_cold_key']['loads']} load(s)", flush=True)
    result = {"what": "PipelineRegistry.get on CPU: cold load (a new registry; imports and file cache already "
                      "warm; first_load_in_process_s is the very first) vs cached gets (median of 2000); "
                      f"{args.threads} threads released together on a cold key, PipelineRegistry.loads counted",
              "models": rows, "target": f"{args.threads} threads on a cold key -> 1 load",
              "target_met": all(r["threads_on_cold_key"]["loads"] == 1 and not r["threads_on_cold_key"]["errors"]
                                for r in rows.values()),
              "machine": machine(), "command": "python bench/registry_bench.py"}
    write_result("registry", result, Path(args.out_dir))
    return result


if __name__ == "__main__":
    main()
