"""Helpers the benchmarks share: tiny models, a free port, an app subprocess, timing summaries."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WHISPER_TINY_EN = ROOT.parent / "shared" / "models" / "whisper-tiny.en"
MODELS = Path(tempfile.gettempdir()) / "pipeline-studio-bench" / "models"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def tiny_model(name: str) -> str:
    """Folder of a tests/fixtures tiny random model (built once, reused across runs)."""
    from tests.fixtures.tiny_models import cached_build

    MODELS.mkdir(parents=True, exist_ok=True)
    return str(cached_build(name, MODELS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 180.0,
                  poll: float = 0.05) -> float:
    """Seconds until `url` answers 200; raises if the process exits or time runs out."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"the app exited early (code {proc.returncode}):\n{err[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(poll)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def start_app(args: list[str], port: int | None = None) -> tuple[subprocess.Popen, str, float]:
    """`python app.py <args>` on a free port: (process, url, seconds until HTTP 200)."""
    port = port or free_port()
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--host", "127.0.0.1", *args]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, proc)
    except BaseException:
        stop(proc)
        raise
    return proc, url, time.perf_counter() - started


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def summary_ms(seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))], 2),
            "mean_ms": round(statistics.fmean(ms), 2), "min_ms": round(ms[0], 2)}


def machine() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_result(name: str, data: dict, out_dir: Path = RESULTS) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)
    return path
