"""Start-up and memory: `python app.py` with tiny local models -> HTTP 200; RSS idle and per model.

Start time: wall seconds from spawning `python app.py --asr-model ... --image-model ...
--zero-shot-model ... --docqa-model ...` to the first HTTP 200 on "/" (median of --starts runs).
Memory: resident set size of the app process idle, then after each tab's model is loaded
through the app's registry (a hidden endpoint of an otherwise identical app, see `serve`).

    python bench/startup.py [--starts 3] [--out-dir bench/results]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (RESULTS, ROOT, free_port, machine, start_app, stop, tiny_model,  # noqa: E402
                          wait_for_http, write_result)

TABS = (("automatic-speech-recognition", "--asr-model", "whisper_en"),
        ("image-classification", "--image-model", "vit_classifier"),
        ("zero-shot-classification", "--zero-shot-model", "bert_nli"),
        ("document-question-answering", "--docqa-model", "layoutlm_qa"))


def model_args() -> list[str]:
    args = ["--device", "cpu", "--offline"]
    for _, flag, fixture in TABS:
        args += [flag, tiny_model(fixture)]
    return args


def rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def serve(argv: list[str]) -> None:
    """The app exactly as app.py builds it, plus a hidden endpoint that loads one task's model."""
    import gradio as gr

    from engine.cli import build_parser, prepare_environment, settings_from_args
    from engine.registry import PipelineRegistry
    from ui.app import build_app, launch

    settings = settings_from_args(build_parser().parse_args(argv))
    prepare_environment(settings)
    registry = PipelineRegistry(settings)
    demo = build_app(settings, registry)
    with demo:
        task = gr.Textbox(visible=False)
        status = gr.JSON(visible=False)
        gr.Button(visible=False).click(lambda t: (registry.get(t), registry.status())[1], task, status,
                                       api_name="bench_load")
    launch(demo, settings)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--out-dir", default=str(RESULTS))
    args, rest = parser.parse_known_args(argv)
    if rest[:1] == ["serve"]:
        return serve(rest[1:])

    margs = model_args()
    starts, idle = [], []
    for _ in range(args.starts):
        proc, url, seconds = start_app(margs)
        try:
            starts.append(seconds)
            time.sleep(1.0)
            idle.append(rss_mb(proc.pid))
        finally:
            stop(proc)
    print(f"start -> HTTP 200: {[round(s, 2) for s in starts]} s; idle RSS {idle} MB", flush=True)

    loaded = _per_model_rss(margs)
    result = {
        "what": "python app.py with the four tiny test-fixture models (whisper_en, vit_classifier, bert_nli, "
                "layoutlm_qa) on CPU: spawn -> first HTTP 200 on '/', and the app process's RSS",
        "start_to_http_200_s": {"runs": [round(s, 2) for s in starts], "median": round(statistics.median(starts), 2)},
        "rss_idle_mb": {"runs": idle, "median": statistics.median(idle)},
        "rss_after_loading_mb": loaded,
        "machine": machine(), "command": "python bench/startup.py",
    }
    write_result("startup", result, Path(args.out_dir))
    return result


def _per_model_rss(margs: list[str]) -> list[dict]:
    from gradio_client import Client

    port = free_port()
    cmd = [sys.executable, __file__, "serve", "--port", str(port), "--host", "127.0.0.1", *margs]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = []
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", proc)
        time.sleep(1.0)
        rows.append({"after": "idle (nothing loaded)", "rss_mb": rss_mb(proc.pid)})
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for task, _, fixture in TABS:
            start = time.perf_counter()
            status = client.predict(task, api_name="/bench_load")
            seconds = time.perf_counter() - start
            mine = next((s for s in status if s.get("task") == task), {})
            rows.append({"after": f"+ {task} ({fixture})", "rss_mb": rss_mb(proc.pid),
                         "load_s": round(seconds, 2), "model_mb": mine.get("memory_mb")})
            print(f"  {rows[-1]}", flush=True)
    finally:
        stop(proc)
    return rows


if __name__ == "__main__":
    main()
