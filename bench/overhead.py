"""Overhead of the app: the same tiny image model and image through the running app vs a direct call.

Direct: the pipeline from the registry called on the decoded image in this process.
App: `python app.py --image-model <tiny ViT>` in a subprocess, a gradio_client calling
/classify_image (upload, queue, handler, micro-batcher, pipeline, JSON back). Measured with
cross-user batching on (the default, which waits batch_wait_ms for company) and off.

    python bench/overhead.py [--calls 100] [--out-dir bench/results]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (RESULTS, ROOT, free_port, machine, start_app, stop, summary_ms, tiny_model,  # noqa: E402
                          wait_for_http, write_result)

TASK = "image-classification"
TOP_K = 5


def direct_times(model: str, image_path: str, calls: int) -> list[float]:
    from PIL import Image

    from engine.registry import PipelineRegistry
    from engine.settings import Settings

    pipe = PipelineRegistry(Settings.from_env(env={}, device="cpu")).get(TASK, model)
    image = Image.open(image_path).convert("RGB")
    for _ in range(5):
        pipe(image, top_k=TOP_K)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        pipe(image, top_k=TOP_K)
        times.append(time.perf_counter() - start)
    return times


class BrowserProtocol:
    """The calls the page itself makes: upload, join the queue, read the SSE stream; one session."""

    def __init__(self, url: str, api_name: str):
        import uuid

        import httpx

        self.url, self.http, self.session = url, httpx.Client(timeout=60), uuid.uuid4().hex
        deps = self.http.get(f"{url}config").json()["dependencies"]
        self.fn_index = next(i for i, d in enumerate(deps) if d.get("api_name") == api_name)

    def predict(self, path: str, *args: Any) -> Any:
        with open(path, "rb") as fh:
            (uploaded,) = self.http.post(f"{self.url}gradio_api/upload",
                                         files={"files": (Path(path).name, fh)}).json()
        data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, *args]
        self.http.post(f"{self.url}gradio_api/queue/join", json={
            "data": data, "fn_index": self.fn_index, "session_hash": self.session, "event_data": None,
            "trigger_id": None}).raise_for_status()
        with self.http.stream("GET", f"{self.url}gradio_api/queue/data",
                              params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and '"process_completed"' in line:
                    message = json.loads(line[5:])
                    if not message.get("success", True):
                        raise RuntimeError(f"the app failed: {message}")
                    return message["output"]["data"][0]
        raise RuntimeError("the stream ended without a result")


def timed(fn: Callable[[], Any], calls: int, warm: int = 5) -> tuple[list[float], Any]:
    for _ in range(warm):
        result = fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times, result


def app_times(model: str, image_path: str, calls: int, extra: list[str]) -> dict:
    """One app, three clients: gradio_client, the page's own protocol, and gradio_client on a no-model call."""
    from gradio_client import Client, handle_file

    proc, url, start_s = start_app(["--device", "cpu", "--offline", "--image-model", model, *extra])
    try:
        client = Client(url, verbose=False)
        page = BrowserProtocol(url, "classify_image")
        out = {"app_start_s": round(start_s, 2)}
        shown = Path(model).name  # a local model is offered by its folder's name
        times, out["sample_output"] = timed(
            lambda: client.predict(handle_file(image_path), shown, TOP_K, api_name="/classify_image"), calls)
        out["gradio_client"] = summary_ms(times)
        times, page_output = timed(lambda: page.predict(image_path, shown, TOP_K, ""), calls)  # "": no URL
        out["browser_protocol"] = summary_ms(times)
        out["same_output_both_ways"] = page_output == out["sample_output"]
        times, _ = timed(lambda: client.predict(api_name="/models_status"), calls)
        out["gradio_client_no_model_call"] = summary_ms(times)
        return out
    finally:
        stop(proc)


def serve_floor(port: int) -> None:
    """Gradio's own floor: a bare Blocks whose image upload returns a constant, queued like the app."""
    import gradio as gr

    with gr.Blocks() as demo:
        image, out = gr.Image(type="filepath"), gr.JSON()
        gr.Button().click(lambda path: [{"label": "none", "score": 1.0}], image, out, api_name="classify_image",
                          concurrency_limit=1)
    demo.queue().launch(server_name="127.0.0.1", server_port=port, quiet=True)


def floor_times(image_path: str, calls: int) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "serve-floor", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url, proc)
        page = BrowserProtocol(url, "classify_image")
        times, _ = timed(lambda: page.predict(image_path), calls)
        return summary_ms(times)
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="bench", choices=("bench", "serve-floor"))
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.role == "serve-floor":
        return serve_floor(args.port)

    model = tiny_model("vit_classifier")
    image = str(sorted((ROOT / "assets").glob("image_example*.png"))[0]) if list(
        (ROOT / "assets").glob("image_example*.png")) else _make_image()
    direct = summary_ms(direct_times(model, image, args.calls))
    floor = floor_times(image, args.calls)
    runs = {}
    for name, extra in (("batching_on", []), ("batching_off", ["--no-batching"])):
        run = app_times(model, image, args.calls, extra)
        for client in ("gradio_client", "browser_protocol"):
            run[f"added_median_ms_{client}"] = round(run[client]["median_ms"] - direct["median_ms"], 2)
            run[f"added_p95_ms_{client}"] = round(run[client]["p95_ms"] - direct["p95_ms"], 2)
        run["ours_over_gradio_floor_median_ms"] = round(
            run["browser_protocol"]["median_ms"] - floor["median_ms"] - direct["median_ms"], 2)
        runs[name] = run
        print(f"{name}: direct median {direct['median_ms']} ms; app via the page's protocol median "
              f"{run['browser_protocol']['median_ms']} ms (adds {run['added_median_ms_browser_protocol']}); via "
              f"gradio_client {run['gradio_client']['median_ms']} ms (adds {run['added_median_ms_gradio_client']}; "
              f"its floor on a no-model call: {run['gradio_client_no_model_call']['median_ms']} ms); Gradio's own "
              f"floor {floor['median_ms']} ms, so our code adds {run['ours_over_gradio_floor_median_ms']} ms",
              flush=True)
    result = {
        "what": f"{args.calls} calls of image classification (tiny ViT fixture, top_k={TOP_K}) on one "
                f"{Path(image).name}: the direct pipeline call on the decoded image vs the running app's "
                "/classify_image (upload, queue, decode, micro-batcher, pipeline, JSON back), called two ways: "
                "gradio_client, and the page's own HTTP protocol (upload, queue/join, queue/data SSE) in one "
                "session. gradio_client_no_model_call: gradio_client on /models_status, which runs no model.",
        "target": "the app adds under 25 ms median on CPU",
        "gradio_floor": floor,
        "gradio_floor_what": "the page's protocol against a bare gr.Blocks whose image upload returns a constant "
                             "(upload, queue, SSE: what Gradio costs before any of our code runs)",
        "direct": direct, **runs,
        "target_met": runs["batching_on"]["added_median_ms_browser_protocol"] < 25,
        "machine": machine(),
        "command": "python bench/overhead.py",
    }
    write_result("overhead", result, Path(args.out_dir))
    return result


def _make_image() -> str:
    from PIL import Image

    from bench.common import MODELS

    path = MODELS.parent / "overhead.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (200, 120, 40)).save(path)
    return str(path)


if __name__ == "__main__":
    main()
