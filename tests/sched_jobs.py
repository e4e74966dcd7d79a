"""Tiny job targets for tests/test_scheduler.py, called like the nightly job:
`f(settings, source, fmt)`. Each call is recorded as a JSON line in <workdir>/calls.jsonl."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tvrec.jobs.locks import run_lock
from tvrec.pipelines.config import Settings

CALLS = "calls.jsonl"
SLOW_SECONDS = 1.5


def _note(workdir: Path, event: str, **extra: Any) -> None:
    line = json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **extra})
    with (workdir / CALLS).open("a") as f:
        f.write(line + "\n")


def calls(workdir: Path) -> list[dict[str, Any]]:
    path = Path(workdir) / CALLS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def record(settings: Settings, source: Path, fmt: str) -> dict[str, Any]:
    """A quick run that, like the nightly job, holds run_lock while it works."""
    with run_lock(settings.workdir):
        _note(settings.workdir, "run", source=str(source), fmt=fmt)
    return {"status": "succeeded"}


def slow(settings: Settings, source: Path, fmt: str) -> dict[str, Any]:
    """A run long enough to be caught in flight: 'start', a pause, then 'end'."""
    with run_lock(settings.workdir):
        _note(settings.workdir, "start")
        time.sleep(SLOW_SECONDS)
        _note(settings.workdir, "end")
    return {"status": "succeeded"}


def boom(settings: Settings, source: Path, fmt: str) -> dict[str, Any]:
    raise RuntimeError("boom: the nightly job failed")
