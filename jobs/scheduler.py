"""`tvrec schedule`: run the nightly job on a cron schedule with APScheduler 3.x.

Files in the work directory:

    schedule.json      the schedule (written by `start`; read by `run-now`, `status` and every run)
    scheduler.sqlite   APScheduler's persistent job store: job "nightly" and its next run time
                       (with `[scheduler] database` set: table tvrec_jobs_<key> there instead)
    scheduler.lock     held by the one scheduler process of the work directory
    scheduler.log      output of a scheduler started with `start --detach`

The scheduler calls `_fire(workdir)`, a module-level function stored by its textual reference so
the SQLAlchemy job store can persist it. `_fire` reads schedule.json and calls the configured
target ("module:function") as `target(settings, source, fmt)`. Runs never stack: one instance
at a time (max_instances=1), fire times missed while the scheduler was stopped collapse into
one run (coalesce=True, within the misfire grace), and a fire that finds `run.lock` held (a
`tvrec run` or `run-now` in progress) is skipped with a logged warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from apscheduler.triggers.cron import CronTrigger
from apscheduler.util import ref_to_obj
from pydantic import Field, ValidationError, field_validator, model_validator
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tvrec.jobs.cli_common import WorkdirOpt, err, user_errors
from tvrec.jobs.locks import (
    LockHeld,
    database_lock_held,
    is_locked,
    scheduler_lock,
    shared_database,
    workdir_key,
)
from tvrec.pipelines.config import Settings, Strict
from tvrec.pipelines.errors import ConfigError, DataError, EngineError

if TYPE_CHECKING:  # the job store pulls in SQLAlchemy: imported where used, so the CLI starts fast
    from apscheduler.job import Job
    from apscheduler.schedulers.background import BackgroundScheduler

JOB_ID = "nightly"
DEFAULT_JOB = "tvrec.jobs.nightly:scheduled_run"
FIRE_REF = "tvrec.jobs.scheduler:_fire"
SCHEDULE_FILE = "schedule.json"
STORE_FILE = "scheduler.sqlite"
LOG_FILE = "scheduler.log"
DETACH_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)
_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_CRON_ARG = {"weekday": "day_of_week"}
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


# ---- the schedule -------------------------------------------------------------------------
class ScheduleConfig(Strict):
    """What `tvrec schedule start` runs, and when; stored as schedule.json."""

    cron: str = Field(
        "0 2 * * *",
        description="crontab: minute hour day month weekday (0/7 = Sunday), "
        "or 6 fields with seconds first",
    )
    timezone: str = "UTC"
    source: Path = Field(description="dataset directory the nightly run reads")
    format: str = "contract"
    job: str = Field(
        DEFAULT_JOB, description="'module:function' called as f(settings, source, fmt)"
    )
    misfire_grace_seconds: int = Field(3600, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("job")
    @classmethod
    def _is_reference(cls, value: str) -> str:
        if not _REF.fullmatch(value):
            raise ValueError(f"job {value!r} is not a 'module:function' reference")
        return value

    @model_validator(mode="after")
    def _valid_cron(self) -> ScheduleConfig:
        self.trigger()  # a ValueError names the bad field
        return self

    def trigger(self) -> CronTrigger:
        return cron_trigger(self.cron, self.timezone)


def cron_trigger(expr: str, timezone: str) -> CronTrigger:
    """A CronTrigger from 5 crontab fields, or 6 with seconds first (sub-minute, for tests)."""
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"cron {expr!r} has {len(fields)} fields; want 5 (minute hour day month weekday) "
            "or 6 (second minute hour day month weekday)"
        )
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, weekday = fields
    values = {"second": second, "minute": minute, "hour": hour, "day": day, "month": month}
    try:
        values["weekday"] = crontab_weekdays(weekday)
    except ValueError as exc:
        raise ValueError(f"cron {expr!r}: {exc}") from None
    for name, value in values.items():  # one at a time, so the error names the field
        try:
            CronTrigger(**{_CRON_ARG.get(name, name): value}, timezone=timezone)
        except ValueError as exc:
            raise ValueError(f"cron {expr!r}: {name} {value!r}: {exc}") from None
    return CronTrigger(**{_CRON_ARG.get(k, k): v for k, v in values.items()}, timezone=timezone)


def crontab_weekdays(field: str) -> str:
    """Crontab weekday numbers (0 or 7 = Sunday) as names: APScheduler 3.x counts 0 = Monday."""
    if field == "*" or not re.fullmatch(r"[\d*,/-]+", field):
        return field  # names mean the same in both
    days: set[int] = set()
    for part in field.split(","):
        days.update(_weekday_part(part))
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def _weekday_part(part: str) -> set[int]:
    """One comma-separated piece of a numeric weekday field: N, A-B, */S or A-B/S."""
    span, _, step = part.partition("/")
    try:
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            low, high = (int(x) for x in span.split("-"))
        else:
            low = int(span)
            high = 7 if step else low
        stride = int(step or 1)
    except ValueError:
        raise ValueError(f"bad weekday {part!r}") from None
    if not (0 <= low <= high <= 7 and stride >= 1):
        raise ValueError(f"bad weekday {part!r}: use 0-7 (0 and 7 are Sunday)")
    return {d % 7 for d in range(low, high + 1, stride)}


def load_schedule(workdir: Path) -> ScheduleConfig:
    path = Path(workdir) / SCHEDULE_FILE
    if not path.exists():
        raise ConfigError(f"{path} not found: run `tvrec schedule start --data DIR` first")
    try:
        return ScheduleConfig.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None


def save_schedule(workdir: Path, config: ScheduleConfig) -> Path:
    """Write schedule.json atomically (a reader never sees half a file)."""
    path = Path(workdir) / SCHEDULE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(config.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _describe(exc: ValidationError) -> str:
    """`schedule.<setting>: why` of each problem (a misspelt setting: the closest one)."""
    from tvrec.pipelines.config import setting_problem

    return "; ".join(setting_problem(e, ScheduleConfig, "schedule") for e in exc.errors())


def resolve_job(ref: str) -> Callable[..., Any]:
    try:
        target = ref_to_obj(ref)
    except (LookupError, ValueError) as exc:
        raise ConfigError(f"job {ref!r} cannot be loaded: {exc}") from None
    if not callable(target):
        raise ConfigError(f"job {ref!r} is not callable")
    return target


# ---- running the job ----------------------------------------------------------------------
def run_configured(workdir: Path) -> Any:
    """Run the configured job now, in this process; LockHeld while a run is in progress."""
    workdir = Path(workdir)
    config = load_schedule(workdir)
    lock = workdir / "run.lock"
    if is_locked(lock):
        raise LockHeld(
            f"a tvrec nightly run is already in progress ({_holder(lock)}); not starting another"
        )
    target = resolve_job(config.job)
    # the target takes run_lock itself: losing a race to another run raises LockHeld
    return target(Settings.load(workdir), config.source, config.format)


def _fire(workdir: str) -> None:
    """The scheduled job (persisted by reference): run unless a run is already in progress."""
    try:
        run_configured(Path(workdir))
    except LockHeld as exc:
        log.warning("skipped the scheduled run: %s", exc)
        return
    log.info("scheduled run finished")


def _lock_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _holder(path: Path) -> str:
    info = _lock_info(path)
    return f"pid {info.get('pid')} since {info.get('since')}" if info else "another process"


# ---- the APScheduler scheduler ------------------------------------------------------------
def _store_url(workdir: Path, *, read_only: bool = False) -> str:
    path = (Path(workdir) / STORE_FILE).resolve()
    if read_only:  # an SQLite URI filename: status never creates or writes the store
        return f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true"
    return f"sqlite:///{path}"


def _job_store(workdir: Path, database: str | None, *, read_only: bool = False) -> Any:
    """The work directory's APScheduler job store: its own SQLite file, or its own table in
    the shared `database` (one table per work directory: a scheduler runs every job of its
    store, so two work directories must never share one)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    if database is None:
        return SQLAlchemyJobStore(url=_store_url(workdir, read_only=read_only))
    return SQLAlchemyJobStore(url=database, tablename=f"tvrec_jobs_{workdir_key(workdir)}")


def stored_job(workdir: Path) -> Job | None:
    """Job "nightly" as persisted in the job store (SQLite opened read-only), or None."""
    database = shared_database(workdir)
    if database is None and not (Path(workdir) / STORE_FILE).exists():
        return None
    store = _job_store(workdir, database, read_only=True)
    try:
        return store.lookup_job(JOB_ID)
    except Exception as exc:  # no table yet, or a job pickled by code that has changed
        log.warning("cannot read job %r from %s: %s", JOB_ID, STORE_FILE, exc)
        return None
    finally:
        store.engine.dispose()


def build_scheduler(workdir: Path, config: ScheduleConfig) -> BackgroundScheduler:
    """A scheduler (not started) holding job "nightly" in the persistent job store.

    An unchanged trigger keeps the stored next run time, so fire times missed while the
    scheduler was stopped still run, once, at start (coalesce + misfire grace); a changed
    cron replaces the job and starts from the next fire time.
    """
    from apscheduler.schedulers.background import BackgroundScheduler

    trigger = config.trigger()
    scheduler = BackgroundScheduler(
        jobstores={"default": _job_store(workdir, shared_database(workdir))},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": config.misfire_grace_seconds,
        },
        timezone=config.timezone,
    )
    keep: dict[str, Any] = {}
    previous = stored_job(workdir)
    if previous and previous.next_run_time and repr(previous.trigger) == repr(trigger):
        keep["next_run_time"] = previous.next_run_time
    scheduler.add_job(
        FIRE_REF,
        trigger,
        args=[str(Path(workdir).resolve())],
        id=JOB_ID,
        name="tvrec nightly",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=config.misfire_grace_seconds,
        **keep,
    )
    return scheduler


def serve(workdir: Path, config: ScheduleConfig) -> None:
    """Run the scheduler until SIGTERM/SIGINT; a running job finishes before we return."""
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    scheduler = build_scheduler(workdir, config)
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, on_signal) for s in handled}
    try:
        scheduler.start()
        _announce(workdir, config, scheduler.get_job(JOB_ID))
        while not stop.wait(0.5):
            pass
        _out.print(f"received {received[0]}: stopping after any running job finishes")
        scheduler.shutdown(wait=True)
        _out.print("tvrec scheduler stopped")
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=False)
        for s, handler in previous.items():
            signal.signal(s, handler)


def _announce(workdir: Path, config: ScheduleConfig, job: Job | None) -> None:
    nrt = job.next_run_time if job else None
    when = nrt.isoformat() if nrt else "never"
    if nrt and nrt <= datetime.now(UTC):
        when += " (missed while stopped: runs now if within the misfire grace)"
    _out.print(
        f"tvrec scheduler started (pid {os.getpid()}) for {workdir}: cron '{config.cron}' "
        f"({config.timezone}), job {config.job}; next run at {when}",
        soft_wrap=True,
        highlight=False,
    )


def _configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # faiss tells at INFO which of its builds it tried first ("Could not load library with
    # AVX2 support due to: ModuleNotFoundError(...)"): read as an error in the job's log
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


# ---- the command line ---------------------------------------------------------------------
schedule_app = typer.Typer(
    help="Run the nightly job on a schedule (APScheduler, one scheduler per work directory).",
    no_args_is_help=True,
)
_out = Console()


@schedule_app.command()
@user_errors
def start(
    cron: Annotated[
        str | None,
        typer.Option(
            help="Crontab 'minute hour day month weekday' (0/7 = Sunday), or 6 fields with "
            "seconds first. Default: the stored schedule, else '0 2 * * *'."
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Dataset directory (default: the stored one).")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help="Dataset format (default: contract).")
    ] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of the cron.")] = None,
    job: Annotated[
        str | None, typer.Option(help="'module:function' to run (default: the nightly job).")
    ] = None,
    misfire_grace: Annotated[
        int | None, typer.Option(help="Seconds a missed run may still start late.")
    ] = None,
    detach: Annotated[
        bool,
        typer.Option("--detach/--foreground", help="Run in the background (log: scheduler.log)."),
    ] = False,
    workdir: WorkdirOpt = None,
) -> None:
    """Run the scheduler until SIGTERM/SIGINT; refused if one already runs here."""
    settings = Settings.load(workdir)
    wd = settings.workdir
    overrides = {
        "cron": cron,
        "source": data.resolve() if data else None,
        "format": fmt,
        "timezone": timezone,
        "job": job,
        "misfire_grace_seconds": misfire_grace,
    }
    config = _merged_config(wd, overrides)
    _check_startable(config)
    _check_data(config, settings)
    if detach:
        _detach(wd, config)
        return
    with scheduler_lock(wd):  # before writing: a refused start leaves schedule.json alone
        save_schedule(wd, config)
        _configure_logging()
        serve(wd, config)


def _merged_config(workdir: Path, overrides: dict[str, Any]) -> ScheduleConfig:
    """The stored schedule (if any) with the given options on top, validated."""
    fields = load_schedule(workdir).model_dump() if (workdir / SCHEDULE_FILE).exists() else {}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if "source" not in fields:
        raise ConfigError("give --data DIR: the dataset directory the nightly run reads")
    try:
        return ScheduleConfig.model_validate(fields)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _check_startable(config: ScheduleConfig) -> None:
    """Fail now, not at 02:00: the data, the format and the job must all be usable."""
    from tvrec.pipelines.adapters import FORMATS

    if not config.source.is_dir():
        raise ConfigError(f"--data {config.source}: not a directory")
    if config.format not in FORMATS:
        raise ConfigError(f"unknown --format {config.format!r}; choose one of {', '.join(FORMATS)}")
    resolve_job(config.job)
    if config.trigger().get_next_fire_time(None, datetime.now(UTC)) is None:
        raise ConfigError(f"cron {config.cron!r} never fires")


def _check_data(config: ScheduleConfig, settings: Settings) -> None:
    """The dataset as it is now must pass the nightly run's own checks (the file, column and
    rows named), or the first anyone hears of a missing column is the 02:00 run's failure.
    The data may still change before then; the run checks it again. Checked for the
    nightly job only."""
    from tvrec.jobs.nightly import check_input

    if config.job == DEFAULT_JOB:  # another job reads `source` its own way
        check_input(settings, config.source, config.format)


def _detach(workdir: Path, config: ScheduleConfig) -> None:
    """Start a foreground scheduler in its own session; return once its scheduler runs."""
    lock = workdir / "scheduler.lock"
    if is_locked(lock):
        raise LockHeld(f"the tvrec scheduler is already running ({_holder(lock)})")
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / LOG_FILE
    argv = [
        *("start", "--foreground", "--workdir", str(workdir), "--cron", config.cron),
        *("--data", str(config.source), "--format", config.format, "--timezone", config.timezone),
        *("--job", config.job, "--misfire-grace", str(config.misfire_grace_seconds)),
    ]
    with log_path.open("ab") as log_file:
        offset = log_file.tell()  # the log grows across starts: read only this start's part
        proc = subprocess.Popen(
            [sys.executable, "-c", "from tvrec.jobs.scheduler import main; main()", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _out.print(_wait_detached(proc, log_path, offset), soft_wrap=True, highlight=False)
    _out.print(f"running in the background; log: {log_path}", soft_wrap=True, highlight=False)


def _wait_detached(proc: subprocess.Popen[bytes], log_path: Path, offset: int) -> str:
    """The child's start line, once its scheduler runs (its job is in the store by then)."""
    ready = f"tvrec scheduler started (pid {proc.pid})"
    deadline = time.monotonic() + DETACH_TIMEOUT_S
    while time.monotonic() < deadline:
        with log_path.open("rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
        started = [line for line in lines if line.startswith(ready)]
        if started:
            return started[-1]
        rc = proc.poll()
        if rc is not None:
            err.print("\n".join(lines[-5:]), highlight=False, markup=False, soft_wrap=True)
            err.print(f"[bold red]error:[/] the scheduler exited with status {rc}")
            raise typer.Exit(rc or 1)
        time.sleep(0.1)
    raise ConfigError(f"the scheduler did not start within {DETACH_TIMEOUT_S:.0f}s; see {log_path}")


@schedule_app.command("run-now")
@user_errors
def run_now(workdir: WorkdirOpt = None) -> None:
    """Run the configured job now, in this process (refused while a run is in progress)."""
    wd = Settings.load(workdir).workdir
    _configure_logging()
    started = time.monotonic()
    try:
        run_configured(wd)
    except (ConfigError, DataError, EngineError):
        raise
    except Exception as exc:
        err.print(f"[bold red]run failed:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    _out.print(f"run finished in {time.monotonic() - started:.1f}s")


@schedule_app.command()
@user_errors
def status(
    workdir: WorkdirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Whether the scheduler runs, its cron, the next run time and the last runs."""
    report = schedule_status(Settings.load(workdir).workdir)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
        return
    _render_status(report)


def schedule_status(workdir: Path) -> dict[str, Any]:
    """The scheduler's state, read without disturbing a running scheduler or run."""
    sched_lock = workdir / "scheduler.lock"
    running = is_locked(sched_lock)
    config = load_schedule(workdir) if (workdir / SCHEDULE_FILE).exists() else None
    job = stored_job(workdir)
    run_in_progress = is_locked(workdir / "run.lock") or _run_elsewhere(workdir)
    runs, catalog_error = _last_runs(workdir, run_in_progress)
    return {
        "workdir": str(workdir),
        "scheduler_running": running,
        "scheduler_pid": _lock_info(sched_lock).get("pid") if running else None,
        "schedule": config.model_dump(mode="json") if config else None,
        "next_run_time": job.next_run_time.isoformat() if job and job.next_run_time else None,
        "run_in_progress": run_in_progress,
        "last_runs": runs,
        "catalog_error": catalog_error,
    }


def _run_elsewhere(workdir: Path) -> bool:
    """A run holding the shared database's lock (on another host, say)."""
    database = shared_database(workdir)
    return database is not None and database_lock_held(database, f"{workdir_key(workdir)}:run")


def _last_runs(workdir: Path, run_in_progress: bool) -> tuple[list[dict[str, Any]], str | None]:
    """The last 10 run records; a 'running' record with no run.lock holder was interrupted."""
    import duckdb

    from tvrec.jobs.catalog import Catalog

    try:
        records = Catalog(workdir).runs(10)
    except duckdb.Error as exc:  # e.g. a run holds the catalogue's write lock right now
        return [], str(exc)
    runs = []
    for r in records:
        outcome = r["status"]
        if outcome == "running" and not run_in_progress:
            outcome = "interrupted"
        started, finished = r["started_at"], r["finished_at"]
        seconds = (finished - started).total_seconds() if started and finished else None
        runs.append({**_decoded(r), "outcome": outcome, "seconds": seconds})
    return runs, None


def _decoded(record: dict[str, Any]) -> dict[str, Any]:
    """JSON columns (stages, counts, metrics) as objects, times as ISO strings."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif key in ("stages", "counts", "metrics") and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out


_OUTCOME_STYLE = {"running": "yellow", "failed": "red", "interrupted": "red", "error": "red"}


def _render_status(report: dict[str, Any]) -> None:
    config = report["schedule"] or {}
    summary = Table(title="tvrec schedule", show_header=False, title_justify="left")
    state = f"running (pid {report['scheduler_pid']})" if report["scheduler_running"] else "stopped"
    for key, value in {
        "work directory": report["workdir"],
        "scheduler": state,
        "cron": f"{config['cron']} ({config['timezone']})" if config else "not configured",
        "job": config.get("job", "-"),
        "data": f"{config['source']} ({config['format']})" if config else "-",
        "next run": report["next_run_time"] or "-",
        "run in progress": "yes" if report["run_in_progress"] else "no",
    }.items():
        summary.add_row(key, str(value))
    _out.print(summary)
    if report["catalog_error"]:
        _out.print(f"[yellow]cannot read the run records now:[/] {report['catalog_error']}")
    _out.print(_runs_table(report["last_runs"]))
    _print_errors(report["last_runs"])


def _runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(title="last runs", title_justify="left")
    for column in ("run", "kind", "started (UTC)", "seconds", "outcome"):
        table.add_column(column, no_wrap=True, justify="right" if column == "seconds" else "left")
    for r in runs:
        style = _OUTCOME_STYLE.get(r["outcome"], "green")
        seconds = f"{r['seconds']:.1f}" if r["seconds"] is not None else "-"
        outcome = f"[{style}]{r['outcome']}[/]"
        table.add_row(r["run_id"], r["kind"] or "-", _utc(r["started_at"]), seconds, outcome)
    if not runs:
        table.add_row("-", "-", "-", "-", "no runs recorded")
    return table


def _print_errors(runs: list[dict[str, Any]]) -> None:
    """Errors in full under the table: they are too long for a column."""
    for r in runs:
        if r["error"]:
            _out.print(Text.assemble((r["run_id"], "bold"), ": ", r["error"]), soft_wrap=True)


def _utc(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def main(argv: list[str] | None = None) -> None:
    """`python -c 'from tvrec.jobs.scheduler import main; main()' start ...` (used by --detach)."""
    schedule_app(args=argv, prog_name="tvrec schedule")
