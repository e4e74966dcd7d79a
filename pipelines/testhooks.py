"""Named points where a test (or the fault-injection benchmark) can stop a run.

`TVREC_TEST_PAUSE_AT=<point>` makes the process write `TVREC_TEST_PAUSE_MARKER` (a file path;
it holds the point and the pid of the process that reached it: a worker, say) and sleep when
it reaches that point, so the caller can kill it there;
`TVREC_TEST_POINTS_LOG=<file>` appends every point reached, one per line, so a test can list
the points of a whole run first. Unset (always, outside tests): a dictionary lookup.
Standard library only: `tvrec query` imports it through `jobs/release.py`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT = "TVREC_TEST_PAUSE_AT"
MARKER = "TVREC_TEST_PAUSE_MARKER"
POINTS_LOG = "TVREC_TEST_POINTS_LOG"
PAUSE_SECONDS = 600


def pause_point(name: str) -> None:
    """Log `name`, and pause here if a test asked to."""
    log = os.environ.get(POINTS_LOG)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(name + "\n")
    if os.environ.get(PAUSE_AT) == name:
        marker = Path(os.environ.get(MARKER) or "tvrec-paused")
        marker.write_text(f"{name} {os.getpid()}", encoding="utf-8")
        time.sleep(PAUSE_SECONDS)
