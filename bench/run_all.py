"""`make bench`: every CPU benchmark in one run, then the plot. The GPU part is run separately.

Each benchmark runs in its own process (so one's threads and memory do not colour the next)
and writes bench/results/<name>.json; bench/results/gpu_long_audio.json comes from the GPU
machine (bench/gpu_long_audio.py). Ends with bench/results/audio_minutes_per_second.png.

    python bench/run_all.py [--quick] [--only overhead,registry,...] [--out-dir bench/results]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, ROOT  # noqa: E402

BENCH = ROOT / "bench"
# name -> (script, full-run args, quick-run args).
STEPS = {
    "overhead": ("overhead.py", [], ["--calls", "5"]),
    "registry": ("registry_bench.py", [], []),
    "startup": ("startup.py", [], ["--starts", "1"]),
    "long_audio_cpu": ("long_audio_cpu.py", ["--cold"], ["--seconds", "40", "--rounds", "1", "--rows", "app_default,app_int8", "--once", ""]),
    "batching": ("batching.py", ["--requests", "3"], ["--models", "tiny", "--requests", "1", "--rounds", "1"]),
    "load": ("load.py", ["--rounds", "2"], ["--users", "3", "--requests", "3", "--duration", "15", "--asr", "tiny",
                             "--invalid-share", "0.25", "--variants", "default", "--rounds", "1"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--only", default=",".join(STEPS), help="comma-separated steps to run")
    parser.add_argument("--out-dir", help="default bench/results; build/bench-quick with --quick, so a "
                                          "smoke run never replaces the recorded figures")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir or (ROOT / "build" / "bench-quick" if args.quick else RESULTS))
    out_dir.mkdir(parents=True, exist_ok=True)
    failed, took = [], {}
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        script, full, quick = STEPS[name]
        path = BENCH / script
        if not path.exists():
            print(f"== {name}: {script} is not there; skipped", flush=True)
            continue
        cmd = [sys.executable, str(path), *(quick if args.quick else full)]
        if name == "batching":  # batching.json is the GPU machine's run (cuda and cpu); this one is local
            cmd += ["--out", str(out_dir / "batching_cpu.json")]
        else:
            cmd += ["--out-dir", str(out_dir)]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(cmd, cwd=ROOT)
        took[name] = round(time.perf_counter() - start, 1)
        print(f"== {name}: exit {code} after {took[name]} s", flush=True)
        if code:
            failed.append(name)
    plot(out_dir)
    (out_dir / "run_all.json").write_text(json.dumps({"seconds": took, "failed": failed,
                                                       "quick": args.quick}, indent=2) + "\n")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def plot_rows(out_dir: Path) -> list[tuple[str, str, float]]:
    """(label, device, audio-minutes per second) from the long-audio JSONs that exist."""
    rows = []
    cpu = out_dir / "long_audio_cpu.json"
    if cpu.exists():
        data = json.loads(cpu.read_text())
        named = data.get("summary") or {r["name"]: r for r in data.get("rows", [])}
        for name, r in named.items():
            rows.append((name.replace("_", " "), "CPU (2 cores), whisper-tiny.en", r["audio_min_per_s"]))
    gpu = out_dir / "gpu_long_audio.json"
    if not gpu.exists():
        gpu = RESULTS / "gpu_long_audio.json"
    if gpu.exists():
        data = json.loads(gpu.read_text())
        device = f"{data.get('device', 'GPU')}, large-v3 shape"
        for r in data.get("rows", []):
            if r["name"].startswith(("raw_", "app_")) and "audio_min_per_s" in r:
                rows.append((r["name"].replace("_", " "), device, r["audio_min_per_s"]))
    return rows


def plot(out_dir: Path) -> Path | None:
    rows = plot_rows(out_dir)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = list(dict.fromkeys(d for _, d, _ in rows))
    fig, axes = plt.subplots(len(devices), 1, figsize=(9, 1.2 + 0.42 * len(rows)), squeeze=False,
                             gridspec_kw={"height_ratios": [sum(d == dev for _, d, _ in rows) for dev in devices]})
    for ax, dev in zip(axes[:, 0], devices):
        mine = [(label, v) for label, d, v in rows if d == dev]
        labels, values = [m[0] for m in mine], [m[1] for m in mine]
        colours = ["#2b7bba" if label.startswith("app") else "#e08a2c" if label.startswith("fw") else "#aaaaaa"
                   for label in labels]
        bars = ax.barh(labels, values, color=colours)
        ax.bar_label(bars, labels=[f"{v:.2f}" if v < 10 else f"{v:.1f}" for v in values], padding=3, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(dev, fontsize=10, loc="left")
        ax.set_xlim(0, max(values) * 1.18)
        ax.tick_params(axis="y", labelsize=8)
    axes[-1, 0].set_xlabel("audio-minutes per second (higher is better); blue: app, orange: faster-whisper, grey: raw pipeline")
    fig.tight_layout()
    path = out_dir / "audio_minutes_per_second.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}", flush=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
