"""Load: N concurrent gradio_client users against the whole app for a bounded time.

`python app.py` runs in a subprocess with every tab pointed at a local model (the tests'
tiny random models, and the real whisper-tiny.en for speech when it is there). After one
warm-up request per endpoint, N users (threads, each with its own gradio_client.Client)
send R requests each, back to back, mixing /transcribe, /classify_image, /classify_text and
/answer_document; a share of them carry invalid input on purpose. Users stop sending after
--duration seconds; whatever has no answer --grace seconds later is counted as lost.

Each request ends as exactly one of: answered, rejected (queue full), user error (an invalid
input refused with a message meant for people), failed (anything else: a valid input refused,
or a message that is not for people), lost (no answer by the deadline). Reported with p50/p95/
p99 latency overall and per endpoint, the server's RSS idle / before / peak / after the load,
and the files in its Gradio temp dir before and after. Variants: the app's own queue size, and
a small --queue-size so that rejections really happen.

    python bench/load.py [--users 20] [--requests 10] [--rounds 3] [--duration 300] [--grace 120]
                         [--asr real|tiny] [--invalid-share 0.1] [--small-queue 4]
                         [--variants default,small_queue] [--out-dir bench/results]

The figures are round 1's (N users x R requests); rounds 2.. send the same load again with new
users on the same server, to see whether memory and the temp dir level off.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (RESULTS, ROOT, WHISPER_TINY_EN, free_port, machine, stop, tiny_model,  # noqa: E402
                          wait_for_http, write_result)

ENDPOINTS = ("/transcribe", "/classify_image", "/classify_text", "/answer_document")
LABELS = "urgent, not urgent, phone, tablet, computer"
TEXTS = ("My phone screen cracked and I need it fixed today.",
         "Could you tell me when the new tablets are in stock?",
         "The office computer will not start since this morning.",
         "Thanks for the quick repair last week, no rush on the invoice.")
QUESTIONS = ("What is the invoice number?", "What is the total?", "Who is the invoice for?",
             "What is the due date?")
SPOKEN = "The quiet garden is next to the old school."
# Invalid input sent on purpose, one kind per endpoint; each should be refused with a message for people.
INVALID = {
    "/transcribe": "bytes that are not audio, named .wav",
    "/classify_image": "a text file named .png",
    "/classify_text": "a text with no candidate labels",
    "/answer_document": "the invoice with an empty question",
}
# Messages that are not written for the person who sent the input: Gradio's own preprocessing
# failure (it names server paths and component indexes) and the app's catch-all.
NOT_FOR_PEOPLE = ("Could not preprocess input component", "Something went wrong", "Traceback")
RSS_EVERY_S = 0.1
REJECTED_BACKOFF_S = 0.5


@dataclass
class Inputs:
    wav: str
    pngs: list[str]
    invoice: str
    bad_wav: str
    bad_png: str


@dataclass
class Outcome:
    user: int
    index: int
    endpoint: str
    valid: bool
    kind: str  # answered | rejected | user_error | failed | lost
    seconds: float
    message: str = ""


def make_inputs(folder: Path) -> Inputs:
    """A short spoken wav (a tone sweep without espeak-ng), two small pngs, broken files."""
    import numpy as np
    from PIL import Image, ImageDraw

    from bench.speech_audio import RATE, speak, write_wav

    try:
        audio = speak(SPOKEN)
    except RuntimeError:
        t = np.arange(int(2.5 * RATE)) / RATE
        audio = (0.3 * np.sin(2 * np.pi * (200 + 150 * t) * t)).astype(np.float32)
    wav = folder / "short.wav"
    write_wav(wav, audio)
    pngs = []
    for i, colour in enumerate(((200, 60, 40), (40, 120, 220))):
        image = Image.new("RGB", (96, 64), colour)
        ImageDraw.Draw(image).ellipse([10 + 20 * i, 8, 60 + 20 * i, 56], fill=(250, 230, 60))
        pngs.append(str(folder / f"small_{i}.png"))
        image.save(pngs[-1])
    bad_wav, bad_png = folder / "broken.wav", folder / "broken.png"
    bad_wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all" * 8)
    bad_png.write_text("this is a text file, not an image\n")
    return Inputs(str(wav), pngs, str(ROOT / "assets" / "invoice.png"), str(bad_wav), str(bad_png))


def call(client, endpoint: str, valid: bool, n: int, inputs: Inputs):
    """Submit one request; returns the gradio_client Job."""
    from gradio_client import handle_file

    if endpoint == "/transcribe":
        return client.submit(handle_file(inputs.wav if valid else inputs.bad_wav), api_name=endpoint)
    if endpoint == "/classify_image":
        path = inputs.pngs[n % len(inputs.pngs)] if valid else inputs.bad_png
        return client.submit(handle_file(path), api_name=endpoint)
    if endpoint == "/classify_text":
        return client.submit(TEXTS[n % len(TEXTS)], LABELS if valid else "", api_name=endpoint)
    question = QUESTIONS[n % len(QUESTIONS)] if valid else ""
    return client.submit(handle_file(inputs.invoice), question, api_name=endpoint)


def answer_problem(endpoint: str, result) -> str | None:
    """Why an answer is not what the endpoint promises (None when it is)."""
    try:
        if endpoint == "/transcribe":
            text, segments, _files = result
            ok = isinstance(text, str) and isinstance(segments, list)
        elif endpoint == "/classify_image":
            ok = bool(result) and all("label" in r and 0 <= r["score"] <= 1 for r in result)
        elif endpoint == "/classify_text":
            ok = sorted(result["labels"]) == sorted(s.strip() for s in LABELS.split(","))
        else:
            ok = isinstance(result, list) and all("answer" in a and "page" in a for a in result)
    except (TypeError, KeyError, ValueError):
        ok = False
    return None if ok else f"answer of an unexpected shape: {str(result)[:200]}"


def plan(users: int, requests: int, invalid_share: float, seed: int) -> list[list[tuple[str, bool]]]:
    """Per user, (endpoint, valid) for each request: every endpoint in turn from a random start,
    and every k-th request overall invalid (k = 1 / invalid_share), so the mix is exact."""
    rng = random.Random(seed)
    every = round(1 / invalid_share) if invalid_share > 0 else 0
    out = []
    for u in range(users):
        start = rng.randrange(len(ENDPOINTS))
        out.append([(ENDPOINTS[(start + i) % len(ENDPOINTS)],
                     not (every and (u * requests + i) % every == every - 1)) for i in range(requests)])
    return out


def classify(endpoint: str, valid: bool, exc: BaseException) -> tuple[str, str]:
    """(outcome kind, message) for a request that raised."""
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    message = str(exc).strip()
    if isinstance(exc, QueueError):
        return "rejected", message
    if isinstance(exc, AppError) and not valid and message and not any(m in message for m in NOT_FOR_PEOPLE):
        return "user_error", message
    return "failed", f"{type(exc).__name__}: {message}"


def run_user(client, user: int, todo, inputs: Inputs, barrier, stop_sending: float, deadline: float,
             outcomes: list[Outcome], lock: threading.Lock) -> None:
    barrier.wait()
    for i, (endpoint, valid) in enumerate(todo):
        if time.monotonic() >= stop_sending:
            break
        started = time.monotonic()
        job = None
        try:
            job = call(client, endpoint, valid, user + i, inputs)
            result = job.result(timeout=max(0.0, deadline - time.monotonic()))
            problem = answer_problem(endpoint, result)
            if problem:
                kind, message = "failed", problem
            elif not valid:
                kind, message = "failed", f"invalid input was answered: {str(result)[:200]}"
            else:
                kind, message = "answered", ""
        except concurrent.futures.TimeoutError:
            kind, message = "lost", f"no answer {deadline - started:.0f} s after it was sent"
            if job is not None:
                job.cancel()
        except Exception as exc:  # noqa: BLE001 - every way a request can end is counted
            kind, message = classify(endpoint, valid, exc)
        with lock:
            outcomes.append(Outcome(user, i, endpoint, valid, kind, time.monotonic() - started, message))
        if kind == "rejected":
            time.sleep(REJECTED_BACKOFF_S)  # a person told "try again" waits a moment before retrying


class RssSampler(threading.Thread):
    """The server's resident memory every RSS_EVERY_S seconds while it runs."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []
        self.started = time.monotonic()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.monotonic() - self.started, rss_mb(self.process)))
            self.done.wait(RSS_EVERY_S)

    def stop(self) -> None:
        self.done.set()
        self.join()


def rss_mb(process) -> float:
    return round(process.memory_info().rss / 2**20, 1)


def files_in(folder: Path) -> tuple[int, int, dict[str, int]]:
    """(files, bytes, files by suffix) under a folder."""
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    suffixes = Counter(p.suffix or "(none)" for p in files)
    return len(files), sum(p.stat().st_size for p in files), dict(sorted(suffixes.items()))


def percentiles_ms(seconds: list[float]) -> dict:
    """Nearest-rank p50/p95/p99 (and max, mean) in milliseconds; n = 0 when empty."""
    if not seconds:
        return {"n": 0}
    ms = sorted(s * 1000 for s in seconds)

    def rank(q: float) -> float:
        return round(ms[max(0, math.ceil(q * len(ms)) - 1)], 1)

    return {"n": len(ms), "p50_ms": rank(0.50), "p95_ms": rank(0.95), "p99_ms": rank(0.99),
            "max_ms": round(ms[-1], 1), "mean_ms": round(sum(ms) / len(ms), 1)}


def _tidy(message: str) -> str:
    """Messages grouped by their text: hashes and temp paths taken out, cut to one line."""
    message = re.sub(r"[0-9a-f]{32,}", "<hash>", message)
    message = re.sub(r"/tmp/\S+?/", "/tmp/.../", message)
    return " ".join(message.split())[:600]


def tally(outcomes: list[Outcome]) -> dict:
    kinds = Counter(o.kind for o in outcomes)
    counts = {"sent": len(outcomes), "answered": kinds["answered"], "rejected_queue_full": kinds["rejected"],
              "user_errors": kinds["user_error"], "failed": kinds["failed"], "lost": kinds["lost"],
              "invalid_sent": sum(not o.valid for o in outcomes)}
    return {"counts": counts,
            "latency_answered": percentiles_ms([o.seconds for o in outcomes if o.kind == "answered"]),
            "latency_all": percentiles_ms([o.seconds for o in outcomes])}


def start_server(args: list[str], env: dict, log: Path) -> tuple[subprocess.Popen, str, float]:
    """`python app.py <args>` with its stderr in a file (a pipe nobody reads would block a chatty server)."""
    port = free_port()
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--host", "127.0.0.1", *args]
    started = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, proc)
    except BaseException as exc:
        stop(proc)
        raise RuntimeError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from None
    return proc, url, time.perf_counter() - started


def load_round(clients, todo, inputs: Inputs, args, pid: int) -> tuple[list[Outcome], float, list]:
    """Every user sends its requests; (outcomes, wall seconds, RSS samples to the end of the settle)."""
    outcomes: list[Outcome] = []
    lock, barrier = threading.Lock(), threading.Barrier(len(clients) + 1)
    sampler = RssSampler(pid)
    sampler.start()
    t0 = time.monotonic()
    stop_sending, deadline = t0 + args.duration, t0 + args.duration + args.grace
    threads = [threading.Thread(target=run_user, daemon=True,
                                args=(c, u, todo[u], inputs, barrier, stop_sending, deadline, outcomes, lock))
               for u, c in enumerate(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join(timeout=max(0.0, deadline + 30 - time.monotonic()))
    wall = time.monotonic() - t0
    time.sleep(args.settle)
    sampler.stop()
    with lock:
        return list(outcomes), wall, sampler.samples


def run_variant(name: str, queue_size: int | None, args, models: list[str], inputs: Inputs, tmp: Path) -> dict:
    """One app, warmed up, then --rounds rounds of the load; the figures are round 1's, memory is every round's."""
    import psutil
    from gradio_client import Client

    temp_dir, downloads = tmp / f"gradio-{name}", tmp / f"downloads-{name}"
    temp_dir.mkdir()
    downloads.mkdir()
    log = tmp / f"server-{name}.log"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(temp_dir)}
    server_args = models + (["--queue-size", str(queue_size)] if queue_size is not None else [])
    proc, url, start_s = start_server(server_args, env, log)
    process = psutil.Process(proc.pid)
    rounds = []
    try:
        time.sleep(1.0)
        rss_idle = rss_mb(process)
        new_client = lambda: Client(url, verbose=False, download_files=str(downloads),  # noqa: E731
                                    analytics_enabled=False)
        warm, warmup_s = new_client(), {}
        for n, endpoint in enumerate(ENDPOINTS):  # loads each model, OCRs the invoice once
            t = time.monotonic()
            problem = answer_problem(endpoint, call(warm, endpoint, True, n, inputs).result(timeout=300))
            if problem:
                raise RuntimeError(f"warm-up request to {endpoint} gave an {problem}")
            warmup_s[endpoint] = round(time.monotonic() - t, 2)
        time.sleep(args.settle)
        rss_before, (files_before, bytes_before, _) = rss_mb(process), files_in(temp_dir)
        todo = plan(args.users, args.requests, args.invalid_share, args.seed)
        for r in range(args.rounds):
            clients = [new_client() for _ in todo]
            outcomes, wall, samples = load_round(clients, todo, inputs, args, proc.pid)
            for client in clients:  # the users leave, as a closed browser tab does
                client.close()
            files_after, bytes_after, suffixes_after = files_in(temp_dir)
            rounds.append((outcomes, wall, samples, rss_mb(process), files_after, bytes_after, suffixes_after))
            counts = tally(outcomes)["counts"]
            print(f"{name} round {r + 1}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                  + f" in {wall:.1f} s; RSS peak {max(mb for _, mb in samples)} MB, after {rounds[-1][3]} MB; "
                  f"temp files {files_after}", flush=True)
        probe = answer_problem("/classify_text", new_client().predict(TEXTS[0], LABELS, api_name="/classify_text"))
        alive = proc.poll() is None
    finally:
        stop(proc)
    server_log = log.read_text(errors="replace")
    outcomes, wall, samples, rss_after, files_after, bytes_after, suffixes_after = rounds[0]
    result = {
        "queue_size": queue_size if queue_size is not None else "app default",
        "server_start_s": round(start_s, 2), "warmup_s": warmup_s,
        **tally(outcomes),
        "not_sent_time_limit": sum(len(t) for t in todo) - len(outcomes),
        "wall_s": round(wall, 2),
        "answered_per_s": round(sum(o.kind == "answered" for o in outcomes) / wall, 2),
        "by_endpoint": {e: tally([o for o in outcomes if o.endpoint == e]) for e in ENDPOINTS},
        "messages": {kind: dict(Counter(f"{o.endpoint} [{'valid' if o.valid else INVALID[o.endpoint]}] "
                                        f"{_tidy(o.message)}" for o in outcomes if o.kind == kind))
                     for kind in ("rejected", "user_error", "failed", "lost")},
        "rss_mb": {"idle_fresh": rss_idle, "before_load": rss_before,
                   "peak": max([mb for _, mb in samples] + [rss_before]), "after_settle": rss_after,
                   "after_minus_before": round(rss_after - rss_before, 1),
                   "max_each_second": _per_second_max(samples)},
        "temp_dir_files": {"before": files_before, "after": files_after,
                           "bytes_before": bytes_before, "bytes_after": bytes_after,
                           "after_by_suffix": suffixes_after},
        "rounds": [{"round": i + 1, **tally(o)["counts"], "wall_s": round(w, 2),
                    "rss_peak_mb": max(mb for _, mb in smp), "rss_after_mb": after, "temp_dir_files_after": files,
                    "temp_dir_bytes_after": size}
                   for i, (o, w, smp, after, files, size, _) in enumerate(rounds)],
        "requests": [{"user": o.user, "n": o.index, "endpoint": o.endpoint, "valid": o.valid, "outcome": o.kind,
                      "ms": round(o.seconds * 1000, 1), "message": _tidy(o.message)} for o in outcomes],
        "server": {"alive_after_load": alive, "answers_after_load": probe is None,
                   "stack_traces_in_log": logged_errors(server_log)},
    }
    c, lat = result["counts"], result["latency_answered"]
    print(f"{name}: sent {c['sent']} answered {c['answered']} rejected {c['rejected_queue_full']} "
          f"user errors {c['user_errors']} failed {c['failed']} lost {c['lost']} in {wall:.1f} s; "
          f"p50/p95/p99 {lat.get('p50_ms')}/{lat.get('p95_ms')}/{lat.get('p99_ms')} ms; RSS {rss_before} -> "
          f"peak {result['rss_mb']['peak']} -> {rss_after} MB; temp files {files_before} -> {files_after}", flush=True)
    return result


def _per_second_max(samples: list[tuple[float, float]]) -> list[float]:
    seconds: dict[int, float] = {}
    for t, mb in samples:
        seconds[int(t)] = max(mb, seconds.get(int(t), 0.0))
    return [seconds[k] for k in sorted(seconds)]


def logged_errors(log: str) -> dict[str, int]:
    """The exception line of each stack trace in the server's log, counted (chained ones once each)."""
    lines, found = log.splitlines(), Counter()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            error = next((ln for ln in lines[i + 1:] if ln.strip() and not ln.startswith(" ")), "?")
            found[_tidy(error)[:200]] += 1
    return dict(found)


def code_version() -> dict:
    """The commit measured, and any tracked file outside bench/ and tests/ that differs from it."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    changed = [path for path in git("diff", "--name-only", "HEAD").splitlines()
               if not path.startswith(("bench/", "tests/"))]
    return {"commit": git("rev-parse", "HEAD") or None, "app_files_changed": changed}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--requests", type=int, default=10, help="requests each user sends, one after another")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds during which users may send")
    parser.add_argument("--grace", type=float, default=120.0, help="seconds after that for answers to arrive")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before the before/after RSS readings")
    parser.add_argument("--asr", choices=("real", "tiny"), default="real",
                        help="real: ../shared/models/whisper-tiny.en (the tiny fixture where it is absent)")
    parser.add_argument("--invalid-share", type=float, default=0.1, help="share of requests with invalid input")
    parser.add_argument("--small-queue", type=int, default=4, help="--queue-size of the small_queue variant")
    parser.add_argument("--variants", default="default,small_queue")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the load this many times on one server, new users each time (memory over rounds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)

    import gradio
    import gradio_client
    import transformers

    asr = str(WHISPER_TINY_EN) if args.asr == "real" and WHISPER_TINY_EN.is_dir() else tiny_model("whisper_en")
    described = {"asr": "whisper-tiny.en (real)" if asr == str(WHISPER_TINY_EN) else "tiny fixture whisper_en",
                 "image": "tiny fixture vit_classifier", "zero_shot": "tiny fixture bert_nli",
                 "docqa": "tiny fixture layoutlm_qa (Tesseract OCR)"}
    models = ["--device", "cpu", "--offline", "--asr-model", asr, "--image-model", tiny_model("vit_classifier"),
              "--zero-shot-model", tiny_model("bert_nli"), "--docqa-model", tiny_model("layoutlm_qa")]
    queue_sizes = {"default": None, "small_queue": args.small_queue}
    variants = {}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        inputs = make_inputs(Path(tmp))
        for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
            variants[name] = run_variant(name, queue_sizes[name], args, models, inputs, Path(tmp))
    result = {
        "what": f"{args.users} gradio_client users x {args.requests} requests, back to back, against python app.py "
                f"(all tabs) on 127.0.0.1; endpoints in turn ({', '.join(ENDPOINTS)}), every "
                f"{round(1 / args.invalid_share) if args.invalid_share else 0}th request invalid on purpose; "
                f"users send for at most {args.duration:g} s, answers awaited {args.grace:g} s more; "
                f"a rejected user waits {REJECTED_BACKOFF_S} s before its next request. Client threads and "
                "server share the machine.",
        "invalid_inputs": INVALID,
        "models": described,
        "users": args.users, "requests_per_user": args.requests, "duration_s": args.duration, "grace_s": args.grace,
        "variants": variants,
        "versions": {"gradio": gradio.__version__, "gradio_client": gradio_client.__version__,
                     "transformers": transformers.__version__},
        "code": code_version(),
        "machine": machine(),
        "command": " ".join(["python bench/load.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    write_result("load", result, Path(args.out_dir))
    return result


if __name__ == "__main__":
    main()
