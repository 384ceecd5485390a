"""tests.peak_memory: what the hostile-input tests count as the server's memory."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.peak_memory import PeakMemory

HOLD = "import time; b = b'x' * (300 << 20); time.sleep(3)"  # a process that holds 300 MB for 3 s


def test_a_child_started_in_the_block_counts_one_started_by_a_process_already_running_does_not():
    starter = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; time.sleep(0.5); "
                                f"subprocess.run([sys.executable, '-c', {HOLD!r}])"])
    try:
        with PeakMemory() as other:  # the starter was running before: its child is another test's process
            time.sleep(2.5)
        with PeakMemory() as server:  # started from here, as the server starts ffmpeg
            child = subprocess.Popen([sys.executable, "-c", HOLD])
            time.sleep(2.0)
        child.wait()
    finally:
        starter.kill()
        starter.wait()
    assert other.growth_mb < 100
    assert server.growth_mb > 250
