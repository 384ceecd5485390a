"""Overhead of the app: the same tiny image model and image through the running app vs a direct call.

Direct: the pipeline from the registry called on the decoded image in this process.
App: `python app.py --image-model <tiny ViT>` in a subprocess, a gradio_client calling
/classify_image (upload, queue, handler, micro-batcher, pipeline, JSON back). Measured with
cross-user batching on (the default, which waits batch_wait_ms for company) and off.

    python bench/overhead.py [--calls 100] [--out-dir bench/results]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, ROOT, machine, start_app, stop, summary_ms, tiny_model, write_result  # noqa: E402

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


def app_times(model: str, image_path: str, calls: int, extra: list[str]) -> tuple[list[float], float, list]:
    from gradio_client import Client, handle_file

    proc, url, start_s = start_app(["--device", "cpu", "--offline", "--image-model", model, *extra])
    try:
        client = Client(url, verbose=False)
        for _ in range(5):  # loads the model and warms the path up
            result = client.predict(handle_file(image_path), model, TOP_K, api_name="/classify_image")
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            client.predict(handle_file(image_path), model, TOP_K, api_name="/classify_image")
            times.append(time.perf_counter() - start)
        return times, start_s, result
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)

    model = tiny_model("vit_classifier")
    image = str(sorted((ROOT / "assets").glob("image_example*.png"))[0]) if list(
        (ROOT / "assets").glob("image_example*.png")) else _make_image()
    direct = summary_ms(direct_times(model, image, args.calls))
    runs = {}
    for name, extra in (("batching_on", []), ("batching_off", ["--no-batching"])):
        times, start_s, sample = app_times(model, image, args.calls, extra)
        app = summary_ms(times)
        runs[name] = {"app": app, "added_median_ms": round(app["median_ms"] - direct["median_ms"], 2),
                      "added_p95_ms": round(app["p95_ms"] - direct["p95_ms"], 2), "app_start_s": round(start_s, 2),
                      "sample_output": sample[:2] if isinstance(sample, list) else sample}
        print(f"{name}: app median {app['median_ms']} ms p95 {app['p95_ms']} ms; direct median "
              f"{direct['median_ms']} ms -> adds {runs[name]['added_median_ms']} ms", flush=True)
    result = {
        "what": f"{args.calls} calls of image classification (tiny ViT fixture, top_k={TOP_K}) on one "
                f"{Path(image).name}: direct pipeline call vs gradio_client -> running app /classify_image",
        "target": "the app adds under 25 ms median on CPU",
        "direct": direct, **runs,
        "target_met": runs["batching_on"]["added_median_ms"] < 25,
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
