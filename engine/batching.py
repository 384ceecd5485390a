"""Cross-user micro-batching: requests that arrive together run as one model call."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

# fn(key, items) -> one result per item, in order. Requests with the same (fn, key) share a call.
BatchFn = Callable[[Any, list[Any]], Sequence[Any]]


@dataclass(eq=False)
class _Request:
    fn: BatchFn
    key: Hashable
    item: Any
    future: Future = field(default_factory=Future)
    company: bool = False  # another request was submitted shortly before this one


class MicroBatcher:
    """A thread-safe queue that gathers requests for up to ``wait_s`` and runs each group as one batch.

    One worker thread runs the batches one after another, so while a batch runs the next one fills
    up by itself; the worker stops after ``idle_s`` without requests and restarts on the next one.
    A request that comes alone (none other within ``wait_s`` before it, none queued behind it)
    runs at once: a single user does not pay the wait for company that is not coming.
    With ``enabled=False`` every caller runs its own items directly (in chunks of
    ``max_batch_size``): the same code path, without merging callers, for comparisons.
    """

    def __init__(self, max_batch_size: int, wait_s: float = 0.01, enabled: bool = True, idle_s: float = 5.0):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.max_batch_size = max_batch_size
        self.wait_s = max(0.0, wait_s)
        self.enabled = enabled
        self.idle_s = idle_s
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._last_submit = float("-inf")
        self.batches = 0  # model calls made; read by tests and the benchmark

    @classmethod
    def from_settings(cls, settings: Any) -> "MicroBatcher":
        return cls(settings.max_batch_size, settings.batch_wait_ms / 1000.0, enabled=settings.batching)

    def submit(self, fn: BatchFn, key: Hashable, item: Any) -> Future:
        """Queue one item; its future resolves to fn's result for it (or fn's exception)."""
        request = _Request(fn, key, item)
        with self._lock:
            now = time.monotonic()
            request.company = now - self._last_submit < self.wait_s
            self._last_submit = now
            self._queue.put(request)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="micro-batcher", daemon=True)
                self._worker.start()
        return request.future

    def map(self, fn: BatchFn, key: Hashable, items: Sequence[Any]) -> list[Any]:
        """fn's results for items, in order; merged with other callers' items when enabled."""
        items = list(items)
        if not self.enabled:
            out: list[Any] = []
            for start in range(0, len(items), self.max_batch_size):
                chunk = items[start:start + self.max_batch_size]
                with self._lock:
                    self.batches += 1
                out.extend(_checked(fn(key, chunk), len(chunk)))
            return out
        futures = [self.submit(fn, key, item) for item in items]
        return [f.result() for f in futures]

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:  # submit() puts under this lock, so nothing slips past the exit
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            batch = [first]
            wait = self.wait_s if first.company or not self._queue.empty() else 0.0
            deadline = time.monotonic() + wait
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        groups: dict[tuple[BatchFn, Hashable], list[_Request]] = {}
        for request in batch:
            groups.setdefault((request.fn, request.key), []).append(request)
        for (fn, key), group in groups.items():
            self._run_group(fn, key, group)

    def _run_group(self, fn: BatchFn, key: Hashable, group: list[_Request]) -> None:
        with self._lock:
            self.batches += 1
        try:
            results = _checked(fn(key, [r.item for r in group]), len(group))
        except BaseException as exc:  # noqa: BLE001 - handed to the callers, never lost in the worker
            if len(group) > 1:
                # One caller's bad input must not fail everyone who happened to share its batch.
                for request in group:
                    self._run_group(fn, key, [request])
            else:
                group[0].future.set_exception(exc)
            return
        for request, result in zip(group, results):
            request.future.set_result(result)


def _checked(results: Sequence[Any], expected: int) -> Sequence[Any]:
    if len(results) != expected:
        raise RuntimeError(f"a batch of {expected} items gave {len(results)} results")
    return results


def event_concurrency(settings: Any) -> int:
    """Requests one event lets in at once: with batching, enough to fill a batch while another runs."""
    return 2 * settings.max_batch_size if settings.batching else settings.concurrency
