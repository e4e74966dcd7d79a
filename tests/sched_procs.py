"""Scheduler subprocesses for the scheduler tests: `tvrec schedule` launched as a real
process, with the job targets of tests/sched_jobs.py importable through PYTHONPATH."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
LAUNCH = "from tvrec.jobs.scheduler import main; main()"
EVERY_SECOND = "* * * * * *"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TVREC_WORKDIR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-c", LAUNCH, *(str(a) for a in args)]


def _wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Proc:
    """A `tvrec schedule` subprocess whose stdout lines are collected as they arrive."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.popen = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=err, text=True, env=_env()
            )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 15) -> str:
        _wait_until(
            lambda: any(text in line for line in self.lines) or self.popen.poll() is not None,
            timeout,
            f"{text!r} (stderr: {self.log})",
        )
        found = [line for line in self.lines if text in line]
        assert found, f"exited {self.popen.poll()}: {self.lines} {self.log.read_text()}"
        return found[0]

    def stop(self, timeout: float = 15) -> int:
        self.popen.send_signal(signal.SIGTERM)
        rc = self.popen.wait(timeout)
        self._reader.join(5)
        return rc


def launcher(tmp_path: Path) -> tuple[Callable[..., Proc], Callable[[], None]]:
    """`launch(*args)` starts a scheduler process; `cleanup()` kills any left running."""
    started: list[Proc] = []

    def launch(*args: object) -> Proc:
        proc = Proc(_cli(*args), tmp_path / f"stderr-{len(started)}.log")
        started.append(proc)
        return proc

    def cleanup() -> None:
        for proc in started:  # never leave a scheduler behind, even on failure
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait()

    return launch, cleanup
