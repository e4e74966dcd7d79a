"""Stage accounting (pipelines/progress.py): a stage's peak memory counts the processes it
starts (training ranks, shard workers), not the parent's alone."""

from __future__ import annotations

import subprocess
import sys

from tvrec.pipelines.progress import PeakRss

HOLD = "import time; b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(2)"


def test_peak_rss_counts_child_processes() -> None:
    """A child holds 400 MiB for 2 s while the parent allocates nothing: the peak sees it."""
    with PeakRss(every=0.05, children_every=0.2) as memory:
        subprocess.run([sys.executable, "-c", HOLD], check=True)
    assert memory.peak - memory.start > 350 * 2**20, (memory.start, memory.peak)
