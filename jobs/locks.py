"""Cross-process locks on files in the work directory (fcntl, released when the holder dies).

`run.lock`: one nightly run at a time, whoever starts it (scheduler, `tvrec run`, run-now).
`scheduler.lock`: one scheduler process per work directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from tvrec.pipelines.errors import ConfigError


class LockHeld(ConfigError):
    """Another process holds the lock; the message says who and since when."""


@contextlib.contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on `path` or raise LockHeld at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(path)
            raise LockHeld(
                f"{what} is already running ({holder}); refusing to start another"
            ) from None
        os.ftruncate(fd, 0)
        os.write(
            fd,
            json.dumps(
                {"pid": os.getpid(), "since": datetime.now(UTC).isoformat(timespec="seconds")}
            ).encode(),
        )
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_locked(path: Path) -> bool:
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {info.get('pid')} since {info.get('since')}"
    except (OSError, ValueError):
        return "another process"


def run_lock(workdir: Path) -> contextlib.AbstractContextManager[None]:
    return exclusive(Path(workdir) / "run.lock", "a tvrec nightly run")


def scheduler_lock(workdir: Path) -> contextlib.AbstractContextManager[None]:
    return exclusive(Path(workdir) / "scheduler.lock", "the tvrec scheduler")
