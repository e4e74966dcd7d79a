"""`tvrec schedule` on a shared PostgreSQL database (a real local server per module): each
work directory keeps its own job there, and the run lock holds across hosts — one run at a
time per work directory, work directories independent, a dead holder's lock released."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from engines import free_port, postgres_server
from sched_jobs import calls
from sched_procs import EVERY_SECOND, Proc, _env, _wait_until
from typer.testing import CliRunner

from tvrec.jobs.locks import database_lock, workdir_key
from tvrec.jobs.scheduler import ScheduleConfig, save_schedule, schedule_app

pytestmark = pytest.mark.postgres
runner = CliRunner()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _workdir(root: Path, url: str, job: str = "sched_jobs:record") -> Path:
    """A work directory whose tvrec.toml points the scheduler at `url`."""
    root.mkdir(parents=True)
    (root / "tvrec.toml").write_text(f'[scheduler]\ndatabase = "{url}"\n')
    data = root.parent / f"{root.name}-data"
    data.mkdir()
    save_schedule(root, ScheduleConfig(source=data, job=job))
    return root


def _intervals(workdir: Path) -> list[tuple[float, float]]:
    events = calls(workdir)
    starts = [c["t"] for c in events if c["event"] == "start"]
    ends = [c["t"] for c in events if c["event"] == "end"]
    return list(zip(starts, ends, strict=False))


def test_two_schedulers_share_one_database_with_a_job_each(
    tmp_path: Path, pg_url: str, launch: Callable[..., Proc]
) -> None:
    work = {name: _workdir(tmp_path / name, pg_url, "sched_jobs:slow") for name in ("a", "b")}
    args = ("--cron", EVERY_SECOND, "--job", "sched_jobs:slow")
    procs = {
        name: launch("start", "--workdir", w, "--data", tmp_path / f"{name}-data", *args)
        for name, w in work.items()
    }
    for proc in procs.values():
        proc.wait_for("next run at")
    _wait_until(lambda: all(len(_intervals(w)) >= 2 for w in work.values()), 30, "two runs each")
    for proc in procs.values():
        assert proc.stop() == 0
    for w in work.values():  # one run at a time per work directory: each ends before the next
        spans = _intervals(w)
        assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans))
        assert not (w / "scheduler.sqlite").exists()  # the job lives in the shared database
    a, b = (_intervals(w) for w in work.values())
    assert any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)  # but A and B overlap
    with sa.create_engine(pg_url).connect() as conn:
        for w in work.values():
            table = f"tvrec_jobs_{workdir_key(w)}"
            ids = conn.execute(sa.text(f"select id from {table}")).scalars().all()
            assert ids == ["nightly"]
    status = runner.invoke(schedule_app, ["status", "--json", "--workdir", str(work["a"])])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["next_run_time"] is not None


def test_the_database_lock_keeps_one_run_per_work_directory_across_hosts(
    tmp_path: Path, pg_url: str
) -> None:
    a, b = (_workdir(tmp_path / name, pg_url) for name in ("a", "b"))
    name = f"{workdir_key(a)}:run"
    with database_lock(pg_url, name, "held", "tvrec run (another host)"):  # a run elsewhere
        res = runner.invoke(schedule_app, ["run-now", "--workdir", str(a)])
        assert res.exit_code == 2 and "database lock" in res.stderr, res.output
        assert "tvrec run (another host)" in res.stderr and f"pid {os.getpid()}" in res.stderr
        status = runner.invoke(schedule_app, ["status", "--json", "--workdir", str(a)])
        assert json.loads(status.stdout)["run_in_progress"] is True
        res = runner.invoke(schedule_app, ["run-now", "--workdir", str(b)])
        assert res.exit_code == 0, res.output  # another work directory is not held up
    assert [c["event"] for c in calls(a)] == [] and [c["event"] for c in calls(b)] == ["run"]
    # a holder that dies (kill -9 on its host) loses the lock with its connection
    marker = tmp_path / "holding"
    code = (
        "import sys, time, pathlib; from tvrec.jobs.locks import database_lock\n"
        "with database_lock(sys.argv[1], sys.argv[2], 'held', 'doomed'):\n"
        "    pathlib.Path(sys.argv[3]).touch(); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, pg_url, name, str(marker)], env=_env())
    try:
        _wait_until(marker.exists, 30, "the holder to take the lock")
        res = runner.invoke(schedule_app, ["run-now", "--workdir", str(a)])
        assert res.exit_code == 2 and "doomed" in res.stderr
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
    deadline = time.monotonic() + 10  # the server notices the closed connection at once
    while (res := runner.invoke(schedule_app, ["run-now", "--workdir", str(a)])).exit_code:
        assert time.monotonic() < deadline, res.output
        time.sleep(0.2)
    assert [c["event"] for c in calls(a)] == ["run"]


def test_bad_or_unreachable_databases_are_clear_errors(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "tvrec.toml").write_text('[scheduler]\ndatabase = "mysql://x@db/tvrec"\n')
    res = runner.invoke(schedule_app, ["run-now", "--workdir", str(work)])
    assert res.exit_code == 2 and "PostgreSQL SQLAlchemy URL" in res.stderr
    closed = f"postgresql+psycopg://tvrec@127.0.0.1:{free_port()}/postgres"
    work = _workdir(tmp_path / "down", closed)
    res = runner.invoke(schedule_app, ["run-now", "--workdir", str(work)])
    assert res.exit_code == 3 and "cannot connect" in res.stderr and "127.0.0.1" in res.stderr
    assert calls(work) == []
