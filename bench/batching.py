"""Throughput of 16 concurrent gradio_client clients, cross-user batching on vs off, in one run.

The app (the Image and Zero-shot tabs) runs in a subprocess; every client has its own
gradio_client.Client and sends its requests one after another. Models have random weights,
built from configs into a temp dir (nothing is downloaded):
  --models base: ViT-base (86 M parameters, 224x224) and a BERT-base-sized NLI classifier
                 (12 layers, hidden 768) -- real-sized work for batching to amortise;
  --models tiny: the test fixtures' tiny ViT / BERT-NLI (pure per-request overhead).

    python bench/batching.py [--models base|tiny] [--device cuda,cpu] [--threads 2] [--clients 16]
                             [--requests 4] [--rounds 2]

Recorded in bench/results/batching.json:
    python bench/batching.py --models base --device cuda,cpu --threads 2 --requests 6 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LABELS = "urgent, not urgent, phone, tablet, computer"
ENDPOINTS = ("image", "zero_shot")
TEXTS = [
    "I have a problem with my iphone that needs to be resolved asap!!",
    "My tablet screen cracked when I dropped it, no rush though.",
    "The laptop will not boot since this morning and I have a deadline tonight.",
    "Can you tell me when the new phone models will be in stock?",
    "Printer keeps jamming, whenever you have time please take a look.",
    "Our whole office lost internet access, we cannot work at all.",
    "I would like to change the delivery address for my order.",
    "The charger for my tablet stopped working after two days.",
    "Please call me back about the invoice when convenient.",
    "Server room temperature alarm is going off right now!",
    "How do I move my contacts to a new phone?",
    "The keyboard on my computer is missing a key.",
    "Emergency: payment terminal down during the busiest hour.",
    "Just wanted to say thanks for the quick repair last week.",
    "My phone battery drains in an hour, it started today.",
    "Is there a discount on tablets for students?",
]


def build_models(kind: str, out: Path) -> tuple[str, str, str]:
    """(image model folder, zero-shot model folder, description)."""
    from tests.fixtures.tiny_models import cached_build

    tiny_vit, tiny_nli = cached_build("vit_classifier", out), cached_build("bert_nli", out)
    if kind == "tiny":
        return str(tiny_vit), str(tiny_nli), "tiny fixtures: ViT 32x32 hidden 16 / BERT-NLI hidden 16, 1 layer"
    import torch
    from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification, ViTConfig,
                              ViTForImageClassification)

    try:  # the PIL image processor (transformers 5 without torchvision)
        from transformers import ViTImageProcessorPil as ViTImageProcessor
    except ImportError:
        from transformers import ViTImageProcessor

    torch.manual_seed(0)
    vit_dir, nli_dir = out / "vit-base-random", out / "bert-base-nli-random"
    labels = {i: f"class {i}" for i in range(1000)}
    vit = ViTForImageClassification(ViTConfig(image_size=224, patch_size=16, id2label=labels,
                                              label2id={v: k for k, v in labels.items()}))
    vit.save_pretrained(vit_dir)
    ViTImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3
                         ).save_pretrained(vit_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_nli)
    nli_labels = {0: "contradiction", 1: "neutral", 2: "entailment"}
    nli = BertForSequenceClassification(BertConfig(vocab_size=len(tokenizer), id2label=nli_labels,
                                                   label2id={v: k for k, v in nli_labels.items()}))
    nli.save_pretrained(nli_dir)
    tokenizer.save_pretrained(nli_dir)
    return (str(vit_dir), str(nli_dir), "random weights from configs: ViT-base/16 224x224 (86 M parameters, "
            "1000 labels) / BERT-base-sized NLI classifier (12 layers, hidden 768, 3 labels)")


def serve(args: argparse.Namespace) -> None:
    """The app under test, with a hidden endpoint reporting how many pipeline calls were made."""
    import gradio as gr

    from engine.registry import PipelineRegistry, load_pipeline
    from engine.settings import Settings
    from ui.app import launch
    from ui.tabs import image, zero_shot

    if args.threads and args.device == "cpu":
        import torch

        torch.set_num_threads(args.threads)
    settings = Settings.from_env(device=args.device, port=args.port, batching=args.batching == "on",
                                 image_model=args.image_model, zero_shot_model=args.zero_shot_model,
                                 queue_size=4 * args.clients)
    sizes: dict[str, list[int]] = {}

    def counted(key):
        pipe = load_pipeline(key)
        calls = sizes.setdefault(key.task, [])

        def call(inputs, **kwargs):
            calls.append(len(inputs))
            return pipe(inputs, **kwargs)

        return call

    registry = PipelineRegistry(settings, loader=counted)
    with gr.Blocks() as demo:
        image.build(registry, settings)
        zero_shot.build(registry, settings)
        stats = gr.JSON(visible=False)
        gr.Button(visible=False).click(lambda: {k: list(v) for k, v in sizes.items()}, None, stats,
                                       api_name="bench_stats", queue=False)
        upload = gr.Image(type="filepath", image_mode=None, visible=False)
        gr.Button(visible=False).click(lambda path: [{"label": "none", "score": 1.0}], upload, stats,
                                       api_name="bench_echo", concurrency_limit=settings.concurrency)
    launch(demo, settings, quiet=True)


def start_server(mode: str, args, image_model: str, zs_model: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [sys.executable, __file__, "serve", "--batching", mode, "--port", str(port), "--device",
           args.current_device, "--image-model", image_model, "--zero-shot-model", zs_model,
           "--clients", str(args.clients)] + (["--threads", str(args.threads)] if args.threads else [])
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    _wait_for(url, server)
    return server, url


def measure(args, urls: dict[str, str], images: list[str]) -> dict:
    """Both apps up at once; rounds alternate on/off so a busy neighbour hurts both alike."""
    from gradio_client import Client, handle_file

    clients = {mode: [Client(url, verbose=False) for _ in range(args.clients)] for mode, url in urls.items()}
    endpoints = {
        "image": lambda c, i: c.predict(handle_file(images[i % len(images)]), api_name="/classify_image"),
        "zero_shot": lambda c, i: c.predict(TEXTS[i % len(TEXTS)], LABELS, api_name="/classify_text"),
    }
    assert tuple(endpoints) == ENDPOINTS
    out: dict[str, dict] = {mode: {} for mode in urls}
    for name, call in endpoints.items():
        seconds = {mode: [] for mode in urls}
        calls_before = {}
        for mode, group in clients.items():
            for i in range(3):  # load the model and warm up outside the timing
                call(group[0], i)
            calls_before[mode] = len(group[0].predict(api_name="/bench_stats").get(_task(name), []))
        for r in range(args.rounds):
            for mode in (("on", "off") if r % 2 == 0 else ("off", "on")):
                seconds[mode].append(_closed_loop(clients[mode], call, args.requests))
        for mode, group in clients.items():
            batches = group[0].predict(api_name="/bench_stats")[_task(name)][calls_before[mode]:]
            n = args.clients * args.requests * args.rounds
            total = sum(seconds[mode])
            out[mode][name] = {
                "requests": n, "seconds": round(total, 3), "requests_per_s": round(n / total, 3),
                "requests_per_s_by_round": [round(args.clients * args.requests / s, 3) for s in seconds[mode]],
                "model_calls": len(batches), "mean_batch": round(sum(batches) / max(1, len(batches)), 2),
                "largest_batch": max(batches, default=0)}
            print(f"  batching {mode:3s} {name:9s} {n / total:8.2f} req/s  ({n} requests in {total:.1f} s, "
                  f"{len(batches)} model calls, mean batch {out[mode][name]['mean_batch']})", flush=True)
    echo = lambda c, i: c.predict(handle_file(images[i % len(images)]), api_name="/bench_echo")  # noqa: E731
    n = args.clients * args.requests * args.rounds
    out["ceiling"] = round(n / _closed_loop(clients["off"], echo, args.requests * args.rounds), 3)
    print(f"  front-end ceiling (image upload, no model) {out['ceiling']:8.2f} req/s", flush=True)
    return out


def _task(name: str) -> str:
    return {"image": "image-classification", "zero_shot": "zero-shot-classification"}[name]


def _closed_loop(clients, call, per_client: int) -> float:
    """Every client sends per_client requests back to back; all start together. Wall seconds."""
    barrier = threading.Barrier(len(clients) + 1)
    errors: list[BaseException] = []

    def worker(index: int, client) -> None:
        barrier.wait()
        try:
            for r in range(per_client):
                call(client, index * per_client + r)
        except BaseException as exc:  # noqa: BLE001 - reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed; first: {errors[0]!r}")
    return time.perf_counter() - started


def _wait_for(url: str, server: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited early:\n{server.stderr.read()[-3000:]}")
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the app did not start in time")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_images(out: Path, n: int) -> list[str]:
    from PIL import Image, ImageDraw

    paths = []
    for i in range(n):
        im = Image.new("RGB", (320, 240), ((37 * i) % 256, (91 * i) % 256, (53 * i + 120) % 256))
        d = ImageDraw.Draw(im)
        d.ellipse([20 + 10 * i, 30, 140 + 10 * i, 150], fill=(255 - 15 * i, 40, 15 * i))
        d.rectangle([180, 60 + 5 * i, 300, 200], fill=(10 * i, 200, 255 - 10 * i))
        paths.append(str(out / f"image_{i}.png"))
        im.save(paths[-1])
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="bench", choices=("bench", "serve"))
    parser.add_argument("--models", default="base", choices=("base", "tiny"))
    parser.add_argument("--device", default="cpu", help="one device, or several comma-separated (cuda,cpu)")
    parser.add_argument("--threads", type=int, help="torch threads of a CPU server (default: torch's own)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4, help="requests each client sends per round")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per mode, alternating on/off")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "batching.json"))
    parser.add_argument("--batching", choices=("on", "off"), default="on")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--image-model")
    parser.add_argument("--zero-shot-model")
    args = parser.parse_args(argv)
    if args.role == "serve":
        return serve(args)

    import gradio
    import torch
    import transformers

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        image_model, zs_model, described = build_models(args.models, tmp_path / "models")
        print(f"models built in {time.perf_counter() - started:.0f} s: {described}", flush=True)
        images = make_images(tmp_path, args.clients)
        for device in args.device.split(","):
            args.current_device = device
            threads = args.threads if device == "cpu" and args.threads else "default"
            print(f"{device} (server torch threads: {threads}):", flush=True)
            servers = {mode: start_server(mode, args, image_model, zs_model) for mode in ("on", "off")}
            try:
                results = measure(args, {mode: url for mode, (_, url) in servers.items()}, images)
            finally:
                for server, _ in servers.values():
                    server.terminate()
                    try:
                        server.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        server.kill()
            speedup = {name: round(results["on"][name]["requests_per_s"] / results["off"][name]["requests_per_s"], 2)
                       for name in ENDPOINTS}
            for name, ratio in speedup.items():
                print(f"  {name}: batching on / off = {ratio}x", flush=True)
            runs.append({"device": device,
                         "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
                         "server_torch_threads": threads,
                         "front_end_ceiling_requests_per_s": results.pop("ceiling"),
                         "batching_on": results["on"], "batching_off": results["off"],
                         "speedup_on_over_off": speedup})
    report = {
        "what": f"{args.clients} concurrent gradio_client clients, {args.requests} requests each back to back, "
                f"{args.rounds} rounds alternating on/off; each app in its own subprocess; batching on "
                "(micro-batcher, max_batch_size 16, wait 10 ms) vs off (each request alone, concurrency 1). "
                "front_end_ceiling: the same image upload to an endpoint that runs no model.",
        "models": described,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "transformers": transformers.__version__,
                    "gradio": gradio.__version__},
        "clients": args.clients,
        "requests_per_client_per_round": args.requests,
        "rounds": args.rounds,
        "runs": runs,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
