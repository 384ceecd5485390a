"""engine.batching: callers arriving together share one model call and each gets its own answer."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from PIL import Image

from engine import text, vision
from engine.batching import MicroBatcher, event_concurrency


class CountingPipe:
    """A pipeline wrapper that records how many calls it got and how big each was."""

    def __init__(self, pipe):
        self.pipe, self.sizes = pipe, []
        self._lock = threading.Lock()

    def __call__(self, inputs, **kwargs):
        with self._lock:
            self.sizes.append(len(inputs))
        return self.pipe(inputs, **kwargs)

    def __getattr__(self, name):
        return getattr(self.pipe, name)


def together(n, fn):
    """fn(i) from n threads released at the same moment; results by i."""
    barrier = threading.Barrier(n)

    def call(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def square_all(key, items):
    time.sleep(0.02)
    return [key * item * item for item in items]


def test_concurrent_callers_share_batches_and_get_their_own_results():
    batcher = MicroBatcher(max_batch_size=8, wait_s=0.05)
    results = together(16, lambda i: batcher.map(square_all, 1, [i]))
    assert results == [[i * i] for i in range(16)]
    assert 2 <= batcher.batches < 16


def test_different_keys_never_share_a_call():
    calls = []

    def record(key, items):
        calls.append((key, list(items)))
        return [f"{key}:{item}" for item in items]

    batcher = MicroBatcher(max_batch_size=16, wait_s=0.05)
    results = together(8, lambda i: batcher.map(record, "ab"[i % 2], [i]))
    assert results == [[f"{'ab'[i % 2]}:{i}"] for i in range(8)]
    assert all(len({item % 2 for item in items}) == 1 for _, items in calls)


def test_one_bad_input_fails_only_its_own_caller():
    sizes = []

    def picky(key, items):
        sizes.append(len(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    batcher = MicroBatcher(max_batch_size=8, wait_s=0.05)

    def call(i):
        try:
            return batcher.map(picky, None, ["bad" if i == 3 else f"ok{i}"])
        except ValueError as exc:
            return str(exc)

    assert together(6, call) == [["OK0"], ["OK1"], ["OK2"], "bad item", ["OK4"], ["OK5"]]
    assert max(sizes) > 1  # the bad item did share a batch before being retried alone


def test_disabled_batcher_runs_each_caller_alone_in_chunks():
    batcher = MicroBatcher(max_batch_size=3, enabled=False)
    assert batcher.map(square_all, 2, range(7)) == [2 * i * i for i in range(7)]
    assert batcher.batches == 3  # 3 + 3 + 1
    together(4, lambda i: batcher.map(square_all, 1, [i]))
    assert batcher.batches == 7


def test_worker_stops_when_idle_and_restarts():
    batcher = MicroBatcher(max_batch_size=4, wait_s=0.0, idle_s=0.05)
    assert batcher.map(square_all, 1, [3]) == [9]
    deadline = time.time() + 5
    while batcher._worker is not None and time.time() < deadline:
        time.sleep(0.02)
    assert batcher._worker is None
    assert batcher.map(square_all, 1, [4]) == [16]


def test_event_concurrency_lets_a_batch_in_only_when_batching(make_settings):
    assert event_concurrency(make_settings(max_batch_size=8)) == 16
    assert event_concurrency(make_settings(batching=False, concurrency=2)) == 2


def test_real_pipelines_batched_across_threads_keep_each_answer(tiny_model):
    from transformers import pipeline

    vit = CountingPipe(pipeline("image-classification", model=str(tiny_model("vit_classifier")), device="cpu",
                                dtype=torch.float32))
    images = [Image.new("RGB", (32, 32), (i * 16, 255 - i * 16, (i * 40) % 256)) for i in range(12)]
    expected = [vision.classify_images(vit.pipe, [image], 3)[0] for image in images]
    batcher = MicroBatcher(max_batch_size=16, wait_s=0.1)
    got = together(12, lambda i: vision.classify_with(batcher, vit, [images[i]], 3)[0])
    for mine, alone in zip(got, expected):
        assert [p.label for p in mine] == [p.label for p in alone]
        assert [p.score for p in mine] == pytest.approx([p.score for p in alone], abs=1e-5)
    assert len(vit.sizes) < 12 and sum(vit.sizes) == 12

    nli = CountingPipe(pipeline("zero-shot-classification", model=str(tiny_model("bert_nli")), device="cpu",
                                dtype=torch.float32))
    texts = [f"my {thing} is broken today" for thing in ("phone", "tablet", "car", "house", "dog", "tree")]
    labels = ("urgent", "not urgent", "phone")
    expected = [text.classify_texts(nli.pipe, [t], labels, False)[0] for t in texts]
    got = together(6, lambda i: text.classify_with(batcher, nli, [texts[i]], labels, False)[0])
    for mine, alone in zip(got, expected):
        assert mine.labels == alone.labels
        assert mine.scores == pytest.approx(alone.scores, abs=1e-5)
    assert len(nli.sizes) < 6


def test_a_request_that_comes_alone_does_not_wait_for_company():
    batcher = MicroBatcher(max_batch_size=8, wait_s=0.5)
    for _ in range(3):
        start = time.perf_counter()
        assert batcher.map(square_all, 2, [3]) == [18]
        assert time.perf_counter() - start < 0.3  # square_all takes 0.02 s; the wait would be 0.5 s
        time.sleep(0.6)  # more than wait_s: the next one comes alone too
    results = together(6, lambda i: batcher.map(square_all, 1, [i]))  # together: they wait and share
    assert results == [[i * i] for i in range(6)] and batcher.batches <= 3 + 2
