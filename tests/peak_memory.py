"""The server's peak memory while a block runs: what a hostile input cost it."""

from __future__ import annotations

import gc
import threading
import time

import psutil


class PeakMemory:
    """The largest RSS of this process and its children while the block runs, sampled every few ms."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.peak = self.base = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        total = self.me.memory_info().rss
        for child in self.me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.003)

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        self.base = self.peak = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20
