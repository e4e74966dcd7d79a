"""The DuckDB catalogue of a work directory: table versions and run records.

    tables/<name>/v<version>.parquet   immutable table versions
    tables/<name>/v<version>.sqlite    the indexed copy `tvrec query` reads (query tables)
    catalog.duckdb                      every version's record, and every run's record

Which versions are served is not the catalogue's to say: a release names them and becomes
current in one step (`jobs/release.py`). A version is written aside, checked, renamed in and
recorded here before the release that names it can be made current; a run killed earlier
leaves at most an unnamed version, which nothing serves.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from tvrec.jobs.query_store import CopySpec, ShowList, build_copy, sweep
from tvrec.jobs.release import TableRef, current_release
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.testhooks import pause_point

SCHEMA = """
CREATE TABLE IF NOT EXISTS table_versions (
    table_name VARCHAR, version INTEGER, path VARCHAR, created_at TIMESTAMPTZ,
    n_rows BIGINT, model_version VARCHAR, as_of VARCHAR, run_id VARCHAR, checks JSON,
    PRIMARY KEY (table_name, version));
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, kind VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
    status VARCHAR, as_of VARCHAR, source VARCHAR, stages JSON, counts JSON, metrics JSON,
    error VARCHAR);
"""

Check = Callable[[pl.DataFrame], None]


@dataclass(frozen=True)
class TableVersion:
    table_name: str
    version: int
    path: Path
    created_at: datetime
    n_rows: int
    model_version: str | None
    as_of: str | None
    current: bool = False


class Catalog:
    def __init__(self, root: Path, lock_timeout: float = 30.0) -> None:
        self.root = Path(root)
        self.path = self.root / "catalog.duckdb"
        self.lock_timeout = lock_timeout  # seconds to wait for another process's connection

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection. DuckDB lets one process at a time open the file, so a
        writer and a reader (`tvrec query`) that collide wait and retry instead of failing."""
        if not read_only:
            self.root.mkdir(parents=True, exist_ok=True)
        con = _connect_with_retry(self.path, read_only, self.lock_timeout)
        try:
            if not read_only:
                con.execute(SCHEMA)
            yield con
        finally:
            con.close()

    # ---- versions ---------------------------------------------------------------------------
    def add_version(
        self,
        name: str,
        frame: pl.DataFrame,
        *,
        checks: list[Check] = (),  # type: ignore[assignment]
        model_version: str | None = None,
        as_of: str | None = None,
        run_id: str | None = None,
        shows: ShowList | None = None,
    ) -> TableRef:
        """Check `frame`, write it as the next version of `name` (plus its indexed copy, with
        `shows` for titles) and record it; a release then names it to serve it."""
        directory = self.root / "tables" / name
        directory.mkdir(parents=True, exist_ok=True)
        self._sweep(directory)
        for check in checks:  # refuse before anything is written
            check(frame)
        with self.connect() as con:
            (latest,) = con.execute(
                "SELECT coalesce(max(version), 0) FROM table_versions WHERE table_name = ?", [name]
            ).fetchone()
        version = max(int(latest), _newest_file(directory)) + 1
        final = directory / f"v{version}.parquet"
        tmp = directory / f".v{version}.{uuid.uuid4().hex[:6]}.parquet.tmp"
        frame.write_parquet(tmp)
        if pl.scan_parquet(tmp).select(pl.len()).collect().item() != frame.height:
            raise ConfigError(f"{tmp}: row count changed on write")
        os.replace(tmp, final)
        pause_point(f"table:{name}:copy")
        copy = build_copy(self.root, CopySpec(name, version, model_version, as_of), frame, shows)
        with self.connect() as con:
            con.execute(
                "INSERT INTO table_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    name,
                    version,
                    str(final),
                    datetime.now(UTC),
                    frame.height,
                    model_version,
                    as_of,
                    run_id,
                    json.dumps({"passed": [getattr(c, "__name__", "check") for c in checks]}),
                ],
            )
        rel = str(final.relative_to(self.root))
        copy_rel = str(copy.relative_to(self.root)) if copy else None
        return TableRef(version, rel, copy_rel, frame.height, model_version)

    def current(self, name: str) -> TableVersion | None:
        """The version of `name` the current release serves."""
        release = current_release(self.root)
        ref = release.table(name) if release else None
        if ref is None:
            return None
        return TableVersion(
            name,
            ref.version,
            self.root / ref.parquet,
            datetime.fromisoformat(release.created_at),  # type: ignore[union-attr]
            ref.n_rows,
            ref.model_version,
            release.as_of,  # type: ignore[union-attr]
            True,
        )

    def read_current(self, name: str) -> pl.DataFrame:
        cur = self.current(name)
        if cur is None:
            raise ConfigError(
                f"no published {name!r} table yet: run `tvrec run` or `tvrec recommend`"
            )
        try:
            return pl.read_parquet(cur.path)
        except (OSError, pl.exceptions.PolarsError) as exc:  # cut off, overwritten, removed
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"{cur.path}: the published {name!r} table cannot be read ({why}); publish "
                "it again (`tvrec recommend`) or roll back (`tvrec publish --list`)"
            ) from None

    def versions(self, name: str | None = None) -> list[TableVersion]:
        """Every recorded version (of `name`), marked current where the release serves it."""
        if not self.path.exists():
            return []
        release = current_release(self.root)
        served = {n: t.version for n, t in release.tables.items()} if release else {}
        with self.connect(read_only=True) as con:
            rows = con.execute(
                """SELECT table_name, version, path, created_at, n_rows, model_version, as_of
                   FROM table_versions WHERE ? IS NULL OR table_name = ?
                   ORDER BY table_name, version""",
                [name, name],
            ).fetchall()
        return [
            TableVersion(r[0], r[1], Path(r[2]), r[3], r[4], r[5], r[6], served.get(r[0]) == r[1])
            for r in rows
        ]

    @staticmethod
    def _sweep(directory: Path) -> None:
        """Remove half-written files left by killed runs."""
        for stray in directory.glob(".v*.parquet.tmp"):
            stray.unlink(missing_ok=True)
        sweep(directory)

    # ---- run records ------------------------------------------------------------------------
    def start_run(self, kind: str, *, as_of: str | None = None, source: str | None = None) -> str:
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self.connect() as con:
            con.execute(
                "INSERT INTO runs (run_id, kind, started_at, status, as_of, source) "
                "VALUES (?, ?, ?, 'running', ?, ?)",
                [run_id, kind, datetime.now(UTC), as_of, source],
            )
        return run_id

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        stages: dict[str, float] | None = None,
        counts: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        error: str | None = None,
        as_of: str | None = None,
    ) -> None:
        with self.connect() as con:
            con.execute(
                """UPDATE runs SET finished_at = ?, status = ?, stages = ?, counts = ?,
                   metrics = ?, error = ?, as_of = coalesce(?, as_of) WHERE run_id = ?""",
                [
                    datetime.now(UTC),
                    status,
                    json.dumps(stages or {}),
                    json.dumps(counts or {}),
                    json.dumps(metrics or {}, default=str),
                    error,
                    as_of,
                    run_id,
                ],
            )

    def runs(self, limit: int = 10) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.connect(read_only=True) as con:
            cur = con.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", [limit])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def _connect_with_retry(
    path: Path, read_only: bool, timeout: float = 30.0
) -> duckdb.DuckDBPyConnection:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise ConfigError(
                    f"{path}: catalogue is locked by another process ({exc})"
                ) from exc
            time.sleep(0.05)


def _newest_file(directory: Path) -> int:
    """The highest version with a file in `directory` (a version whose record a killed run
    never wrote must not be overwritten)."""
    found = [p.name[1:].split(".", 1)[0] for p in directory.glob("v*.*")]
    return max((int(v) for v in found if v.isdigit()), default=0)
