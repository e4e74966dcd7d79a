"""Cross-process locks on files in the work directory (fcntl, released when the holder dies).

`run.lock`: one writer at a time. The nightly run (scheduler, `tvrec run`, run-now) and every
command that writes to the work directory (ingest, features build, train, recommend, publish
--rollback, evaluate into it) take it, or refuse at once naming the holder. Commands that only
read (query, features get, publish --list, runs) never take it, so they never wait.
`scheduler.lock`: one scheduler process per work directory.

With `[scheduler] database` set to PostgreSQL (several hosts sharing a work directory and one
database), both locks are also held as PostgreSQL session advisory locks keyed by the work
directory's path, with a row in `tvrec_locks` naming the holder; the server drops a dead
holder's lock with its connection, as the kernel drops a dead holder's file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tvrec.pipelines.errors import ConfigError, EngineError


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
    what = (
        f"{Path(workdir)} is being written by another tvrec command, refusing to start "
        f"`{command}` alongside it; wait for it to finish"
    )
    return _both(workdir, "run", what, command)


def scheduler_lock(workdir: Path) -> contextlib.AbstractContextManager[None]:
    return _both(workdir, "scheduler", "the tvrec scheduler is already running", None)


@contextlib.contextmanager
def _both(workdir: Path, name: str, what: str, command: str | None) -> Iterator[None]:
    """The file lock `<name>.lock`, then the shared database's lock when one is set."""
    with exclusive(Path(workdir) / f"{name}.lock", what, command):
        database = shared_database(workdir)
        if database is None:
            yield
            return
        with database_lock(database, f"{workdir_key(workdir)}:{name}", what, command):
            yield


def shared_database(workdir: Path) -> str | None:
    """`[scheduler] database` of the work directory's tvrec.toml (None: not shared). Only
    that table is read: the scheduler's status and the locks never load the model settings."""
    from tvrec.pipelines.config import SchedulerSettings

    return SchedulerSettings.of(Path(workdir)).database


def workdir_key(workdir: Path) -> str:
    """The work directory's name in a shared database: a hash of its resolved path."""
    return hashlib.sha1(str(Path(workdir).resolve()).encode()).hexdigest()[:16]


def _lock_number(name: str) -> int:
    """A signed 64-bit key for pg_try_advisory_lock."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def database_lock(url: str, name: str, what: str, command: str | None) -> Iterator[None]:
    """Hold PostgreSQL advisory lock `name` on its own connection, or raise LockHeld at once
    naming the holder (its row in tvrec_locks)."""
    from sqlalchemy import text

    with _connection(url) as conn:
        key = _lock_number(name)
        if not conn.execute(text("select pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            row = conn.execute(
                text("select holder from tvrec_locks where name = :n"), {"n": name}
            ).scalar()
            raise LockHeld(f"{what}: {row or 'a process on another host'} (database lock)")
        holder = _holder_note(command)
        conn.execute(
            text(
                "insert into tvrec_locks (name, holder) values (:n, :h) "
                "on conflict (name) do update set holder = excluded.holder"
            ),
            {"n": name, "h": holder},
        )
        conn.commit()
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a lost connection has released it already
                conn.execute(text("delete from tvrec_locks where name = :n"), {"n": name})
                conn.execute(text("select pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()


def database_lock_held(url: str, name: str) -> bool:
    """Whether another session holds advisory lock `name` (probed without keeping it)."""
    from sqlalchemy import text

    with _connection(url) as conn:
        key = _lock_number(name)
        got = conn.execute(text("select pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        if got:
            conn.execute(text("select pg_advisory_unlock(:k)"), {"k": key})
        conn.commit()
        return not got


@contextlib.contextmanager
def _connection(url: str) -> Iterator[Any]:
    """A connection of its own (no pool: the lock lives and dies with it), with the
    holders' table in place; an unreachable database is an EngineError naming it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        try:
            conn = engine.connect()
            # two processes creating it at once collide inside PostgreSQL's catalogue even
            # with IF NOT EXISTS: one at a time, under a transaction-scoped advisory lock
            create = "create table if not exists tvrec_locks (name text primary key, holder text)"
            conn.execute(text("select pg_advisory_xact_lock(:k)"), {"k": _lock_number(create)})
            conn.execute(text(create))
            conn.commit()
        except SQLAlchemyError as exc:
            shown = engine.url.render_as_string(hide_password=True)
            first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise EngineError(f"scheduler database {shown}: cannot connect ({first})") from None
        with conn:
            yield conn
    finally:
        engine.dispose()


def _holder_note(command: str | None) -> str:
    import socket

    who = f"`{command}`, " if command else ""
    since = datetime.now(UTC).isoformat(timespec="seconds")
    return f"{who}pid {os.getpid()} on {socket.gethostname()} since {since}"
