"""Cross-process locks on files in the work directory (fcntl, released when the holder dies).

`run.lock`: one writer at a time. The nightly run (scheduler, `tvrec run`, run-now) and every
command that writes to the work directory (ingest, features build, train, recommend, publish
--rollback, evaluate into it) take it, or refuse at once naming the holder. Commands that only
read (query, features get, publish --list, runs) never take it, so they never wait.
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
def exclusive(path: Path, what: str, command: str | None = None) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on `path` or raise LockHeld at once; the lock
    file says who holds it (pid, since, `command`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(path)
            raise LockHeld(f"{what}: {holder}") from None
        held = True
        os.ftruncate(fd, 0)
        os.write(
            fd,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "since": datetime.now(UTC).isoformat(timespec="seconds"),
                    "command": command,
                }
            ).encode(),
        )
        yield
    finally:
        with contextlib.suppress(OSError):
            if held:  # released: the holder's note goes, the file's bytes are as before
                os.ftruncate(fd, 0)
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
        who = f"`{info['command']}`, " if info.get("command") else ""
        return f"{who}pid {info.get('pid')} since {info.get('since')}"
    except (OSError, ValueError):
        return "another process"


def run_lock(workdir: Path, command: str = "tvrec run") -> contextlib.AbstractContextManager[None]:
    """The work directory's writer lock, held by `command` (what the refusal names)."""
    return exclusive(
        Path(workdir) / "run.lock",
        f"{Path(workdir)} is being written by another tvrec command, refusing to start "
        f"`{command}` alongside it; wait for it to finish",
        command,
    )


def scheduler_lock(workdir: Path) -> contextlib.AbstractContextManager[None]:
    return exclusive(Path(workdir) / "scheduler.lock", "the tvrec scheduler is already running")
