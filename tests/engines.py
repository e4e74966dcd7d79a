"""Local instances of the real engines the scale-out tests run against (no mocks): a
`redis-server` on 127.0.0.1. Where an engine's binary is missing the test is skipped, except
under CI=true, where `.ci/run` installs it (`make engines`) and a missing one fails the run."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest


def require_binary(name: str, hint: str) -> str:
    """The path of executable `name`; skip without it (fail under CI=true)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({hint})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return path


def require_module(name: str, hint: str) -> ModuleType:
    """Import `name`; skip without it (fail under CI=true)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"python package {name} is not installed ({hint})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis answers PING on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    """A throwaway redis-server on 127.0.0.1 (no persistence), stopped on exit."""
    binary = require_binary("redis-server", "Debian: apt-get install redis-server; `make engines`")
    server = RedisServer(binary, directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class RedisServer:
    def __init__(self, binary: str, directory: Path) -> None:
        self.binary, self.directory = binary, directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.directory)]  # fmt: skip
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not redis_ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: see {self.directory}/redis.log")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


# ----------------------------------------------------------------------------- PostgreSQL


def postgres_bin(name: str) -> str:
    """A PostgreSQL server binary (initdb, pg_ctl): on PATH, or Debian's versioned folder."""
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if found is None:
        return require_binary(name, "Debian: apt-get install postgresql; `make engines`")
    return found


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with trust authentication, in a temporary
    folder of its own; yields its SQLAlchemy URL. Run as root, the server runs as Debian's
    `postgres` user (it refuses root), so the folder is made theirs."""
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    directory = Path(tempfile.mkdtemp(prefix="tvrec-pg-"))
    data, port = directory / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(directory, "postgres")
    run = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "tvrec", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], **run)  # fmt: skip
        options = f"-p {port} -h 127.0.0.1 -k {directory} -c fsync=off"
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-w", "-t", "60",
                        "-l", str(directory / "server.log"), "start"], **run)  # fmt: skip
        yield f"postgresql+psycopg://tvrec@127.0.0.1:{port}/postgres"
    finally:
        stop = [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(stop, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        shutil.rmtree(directory, ignore_errors=True)
