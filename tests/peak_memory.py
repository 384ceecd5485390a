"""The server's peak memory while a block runs: what a hostile input cost it."""

from __future__ import annotations

import gc
import threading
import time

import psutil


class PeakMemory:
    """The largest RSS of this process and the children it starts while the block runs (ffmpeg,
    tesseract, ...), sampled every few ms.

    Children that were already running when the block began are not counted, nor the processes they start
    during it: in a full run they are other tests' processes (the browser the e2e tests keep for the
    session, which starts renderers as it likes), not the server's work. Counted, they moved the total by
    4.4 GB once, and by 4.25 GB once more through a renderer started mid-block, during a refused upload
    that costs 40 MB alone."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.peak = self.base = 0
        self.before: set[int] = set()
        self._stop = threading.Event()

    def rss(self) -> int:
        total = self.me.memory_info().rss
        for child in self.me.children(recursive=True):
            if child.pid in self.before:
                continue
            try:
                if any(parent.pid in self.before for parent in child.parents()):
                    continue  # started by a process that was already running, not by the server
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
        self.before = {child.pid for child in self.me.children(recursive=True)}
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
