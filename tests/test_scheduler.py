"""`tvrec schedule`: a real APScheduler with a real SQLite job store, in real processes.

The job targets live in tests/sched_jobs.py and record each call in <workdir>/calls.jsonl;
subprocesses find them through PYTHONPATH.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sched_jobs import calls
from sched_procs import EVERY_SECOND, Proc, _cli, _env, _wait_until
from typer.testing import CliRunner

from tvrec.jobs.catalog import Catalog
from tvrec.jobs.locks import is_locked
from tvrec.jobs.scheduler import (
    ScheduleConfig,
    _fire,
    build_scheduler,
    cron_trigger,
    save_schedule,
    schedule_app,
)

runner = CliRunner()


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def _cron_at(times: list[datetime]) -> str:
    """A 6-field cron that fires at exactly these (UTC, same-year) seconds in the next hours."""

    def field(attr: str) -> str:
        return ",".join(str(v) for v in sorted({getattr(t, attr) for t in times}))

    return " ".join([*map(field, ("second", "minute", "hour", "day", "month")), "*"])


def _stored_job(workdir: Path) -> object:
    store = SQLAlchemyJobStore(url=f"sqlite:///{workdir / 'scheduler.sqlite'}")
    try:
        return store.lookup_job("nightly")
    finally:
        store.engine.dispose()


# ---- settings -----------------------------------------------------------------------------
def test_cron_weekdays_follow_crontab_and_bad_settings_are_refused(tmp_path: Path) -> None:
    monday = datetime(2026, 1, 5, 3, tzinfo=UTC)  # a Monday, after 02:00
    weekdays = cron_trigger("0 2 * * 1-5", "UTC")
    assert weekdays.get_next_fire_time(None, monday).strftime("%a %H:%M") == "Tue 02:00"
    saturday = monday + timedelta(days=5)
    assert weekdays.get_next_fire_time(None, saturday).strftime("%a") == "Mon"
    sunday = cron_trigger("30 1 * * 0", "Europe/Paris").get_next_fire_time(None, monday)
    assert sunday.strftime("%a %H:%M %Z") == "Sun 01:30 CET"
    assert cron_trigger("* * * * * *", "UTC").get_next_fire_time(None, monday) == monday

    for bad, message in [
        ({"cron": "0 2 * *"}, "4 fields"),
        ({"cron": "0 25 * * *"}, "hour"),
        ({"cron": "0 2 * * 8"}, "weekday"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"job": "not a reference"}, "module:function"),
        ({"misfire_grace_seconds": 0}, "greater than"),
        ({"color": "blue"}, "Extra inputs"),
    ]:
        with pytest.raises(ValueError, match=message):
            ScheduleConfig.model_validate({"source": tmp_path, **bad})

    res = runner.invoke(schedule_app, ["start", "--workdir", str(tmp_path / "w")])
    assert res.exit_code == 2 and "--data" in res.stderr
    args = ["start", "--workdir", str(tmp_path / "w"), "--data", str(tmp_path)]
    for extra, message in [
        (["--cron", "0 2 31 2 *"], "never fires"),
        (["--format", "csv"], "unknown --format"),
        (["--job", "sched_jobs:missing"], "cannot be loaded"),
        (["--cron", "61 * * * *"], "minute"),
    ]:
        res = runner.invoke(schedule_app, [*args, *extra])
        assert res.exit_code == 2 and message in res.stderr, res.output
    # the nightly job's data is checked now, as the run will check it: it was saved and the
    # missing column first said at 02:00
    (tmp_path / "shows.csv").write_text("show_id,title\n1,Alpha\n")
    (tmp_path / "events.csv").write_text("user_id,show_id,ts\nu1,1,1704067200\n")
    res = runner.invoke(schedule_app, args)
    message = " ".join(res.stderr.split())
    assert res.exit_code == 2 and "events.csv, column 'event_timestamp'" in message, res.output
    assert not (tmp_path / "w" / "schedule.json").exists()


def test_restart_keeps_the_stored_next_run_unless_the_cron_changed(
    tmp_path: Path, data: Path
) -> None:
    def started_job(cron: str) -> datetime:
        scheduler = build_scheduler(tmp_path, ScheduleConfig(source=data, cron=cron))
        scheduler.start(paused=True)  # adds the job to the store, runs nothing
        try:
            return scheduler.get_job("nightly").next_run_time
        finally:
            scheduler.shutdown()

    first = started_job("0 2 * * *")
    assert (first.hour, first.minute) == (2, 0)
    store = SQLAlchemyJobStore(url=f"sqlite:///{tmp_path / 'scheduler.sqlite'}")
    job = store.lookup_job("nightly")  # pretend the scheduler was down since yesterday's 02:00
    job.next_run_time = first - timedelta(days=1)
    store.update_job(job)
    store.engine.dispose()
    assert started_job("0 2 * * *") == first - timedelta(days=1)  # the missed run is kept
    changed = started_job("15 4 * * *")
    assert (changed.hour, changed.minute) == (4, 15) and changed > datetime.now(UTC)


# ---- the scheduler process ----------------------------------------------------------------
def test_scheduler_runs_refuses_a_second_start_and_stops_after_the_running_job(
    tmp_path: Path, data: Path, launch: Callable[..., Proc]
) -> None:
    work = tmp_path / "work"
    first = launch(
        "start",
        "--workdir",
        work,
        "--data",
        data,
        "--cron",
        EVERY_SECOND,
        "--job",
        "sched_jobs:slow",
    )
    first.wait_for("next run at")

    second = subprocess.run(
        _cli("start", "--workdir", work, "--data", data, "--cron", "0 3 * * *"),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=30,
    )
    assert second.returncode == 2
    assert "scheduler is already running" in second.stderr
    assert f"pid {first.popen.pid}" in second.stderr
    stored = json.loads((work / "schedule.json").read_text())
    assert stored["cron"] == EVERY_SECOND  # the refused start changed nothing

    # SIGTERM while a run is in flight: it finishes, then the scheduler exits 0
    _wait_until(lambda: [c["event"] for c in calls(work)][-1:] == ["start"], 10, "a run in flight")
    assert first.stop() == 0
    events = [c["event"] for c in calls(work)]
    assert events[-1] == "end" and events.count("start") == events.count("end") >= 1
    assert any("stopped" in line for line in first.lines), first.lines
    assert not is_locked(work / "scheduler.lock")


def test_job_store_persists_and_runs_missed_while_stopped_coalesce_into_one(
    tmp_path: Path, data: Path, launch: Callable[..., Proc]
) -> None:
    work = tmp_path / "work"
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    if base.second > 57:  # the three in one minute: a cron is the cross product of its fields
        base += timedelta(seconds=60 - base.second)  # 58, 59, 0 would fire at x:58 again
    fire_times = [base + timedelta(seconds=i) for i in range(3)]
    args = ("start", "-w", work, "--data", data, "--cron", _cron_at(fire_times))
    first = launch(*args, "--job", "sched_jobs:record")
    assert fire_times[0].isoformat() in first.wait_for("next run at")
    assert first.stop() == 0
    assert calls(work) == [], "the scheduler took too long to start: it fired before the stop"

    job = _stored_job(work)
    assert job is not None and job.next_run_time == fire_times[0]
    assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 3600)
    assert job.func_ref == "tvrec.jobs.scheduler:_fire" and job.args == (str(work.resolve()),)

    # all three fire times pass while no scheduler runs; a restart runs the job once
    time.sleep(max(0.0, (fire_times[-1] - datetime.now(UTC)).total_seconds() + 0.3))
    second = launch(*args)  # the job and the rest come from schedule.json
    second.wait_for("next run at")
    _wait_until(lambda: len(calls(work)) >= 1, 10, "the coalesced run")
    time.sleep(1.0)  # room for any (wrong) extra runs to land
    assert [c["event"] for c in calls(work)] == ["run"]
    assert second.stop() == 0
    job = _stored_job(work)
    assert job.next_run_time > datetime.now(UTC) + timedelta(minutes=10)


def test_detached_scheduler_shows_in_status_and_blocks_another(tmp_path: Path, data: Path) -> None:
    work = tmp_path / "work"
    res = subprocess.run(
        _cli("start", "--detach", "-w", work, "--data", data, "--job", "sched_jobs:record"),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=40,
    )
    assert res.returncode == 0, res.stderr
    pid = int(res.stdout.split("(pid ")[1].split(")")[0])
    try:
        assert is_locked(work / "scheduler.lock")
        again = runner.invoke(schedule_app, ["start", "--detach", "-w", str(work)])
        assert again.exit_code == 2 and "already running" in again.stderr
        status = runner.invoke(schedule_app, ["status", "-w", str(work), "--json"])
        assert status.exit_code == 0, status.output
        report = json.loads(status.stdout)
        assert report["scheduler_running"] and report["scheduler_pid"] == pid
        assert report["schedule"]["cron"] == "0 2 * * *"
        next_run = datetime.fromisoformat(report["next_run_time"])
        assert (next_run.hour, next_run.minute, next_run.second) == (2, 0, 0)
    finally:
        os.kill(pid, signal.SIGTERM)
        _wait_until(lambda: not is_locked(work / "scheduler.lock"), 15, "the scheduler to stop")
    assert "tvrec scheduler stopped" in (work / "scheduler.log").read_text()


# ---- run-now and status -------------------------------------------------------------------
def test_run_now_is_refused_while_another_process_runs(
    tmp_path: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    work = tmp_path / "work"
    res = runner.invoke(schedule_app, ["run-now", "-w", str(work)])
    assert res.exit_code == 2 and "schedule start" in res.stderr
    save_schedule(work, ScheduleConfig(source=data, job="sched_jobs:record"))

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from tvrec.jobs.locks import run_lock\n"
            "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(30)",
            str(work),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        res = runner.invoke(schedule_app, ["run-now", "-w", str(work)])
        assert res.exit_code == 2
        assert "already in progress" in res.stderr and f"pid {holder.pid}" in res.stderr
        with caplog.at_level(logging.WARNING, logger="tvrec.jobs.scheduler"):
            _fire(str(work))  # what the scheduler calls: skips rather than stacks
        assert "skipped the scheduled run" in caplog.text
        assert calls(work) == []
    finally:
        holder.terminate()
        holder.wait(10)

    res = runner.invoke(schedule_app, ["run-now", "-w", str(work)])
    assert res.exit_code == 0, res.output
    assert calls(work) == [
        {**calls(work)[0], "event": "run", "source": str(data), "fmt": "contract"}
    ]

    save_schedule(work, ScheduleConfig(source=data, job="sched_jobs:boom"))
    res = runner.invoke(schedule_app, ["run-now", "-w", str(work)])
    assert res.exit_code == 1 and "boom: the nightly job failed" in res.stderr


def test_status_lists_the_last_runs_with_their_outcome(tmp_path: Path, data: Path) -> None:
    work = tmp_path / "work"
    save_schedule(work, ScheduleConfig(source=data, cron="30 1 * * 1-5", timezone="Europe/Paris"))
    catalog = Catalog(work)
    ok = catalog.start_run("nightly", source=str(data))
    catalog.finish_run(ok, status="succeeded", stages={"ingest": 1.5}, counts={"users": 3})
    failed = catalog.start_run("nightly", source=str(data))
    catalog.finish_run(failed, status="failed", error="events.csv: bad [weight]")
    died = catalog.start_run("nightly")  # never finished, and no process holds run.lock

    res = runner.invoke(schedule_app, ["status", "-w", str(work), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert not report["scheduler_running"] and report["next_run_time"] is None
    assert report["schedule"]["timezone"] == "Europe/Paris"
    runs = {r["run_id"]: r for r in report["last_runs"]}
    assert [runs[r]["outcome"] for r in (ok, failed, died)] == [
        "succeeded",
        "failed",
        "interrupted",
    ]
    assert runs[ok]["stages"] == {"ingest": 1.5} and runs[ok]["seconds"] >= 0
    assert runs[failed]["error"] == "events.csv: bad [weight]"

    res = runner.invoke(schedule_app, ["status", "-w", str(work)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for text in ("stopped", "30 1 * * 1-5", ok, failed, "interrupted", "bad [weight]"):
        assert text in res.stdout, res.stdout
