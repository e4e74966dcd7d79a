"""The DuckDB catalogue of a work directory: published table versions and run records.

    tables/<name>/v<version>.parquet   immutable published versions
    catalog.duckdb                      which version is current, and every run's record

A version becomes current only inside one catalogue transaction, after its Parquet file is
complete and has passed its checks; a run killed at any earlier point leaves the previous
version current (its half-written file is ignored and swept by the next publish).

The tables `tvrec query` reads (`user_topk`, `show_similar`) also get an indexed copy per
version, `tables/<name>/v<version>.sqlite`, written aside and renamed in before that
transaction; `tables/<name>/current.json` names the copy of the current version and is
brought in line with the catalogue before every connection closes (`jobs/query_store.py`).
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

from tvrec.jobs.query_store import (
    CopySpec,
    build_copy,
    copy_path,
    queryable,
    sweep,
    sync_pointers,
    versions_of,
)
from tvrec.pipelines.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS table_versions (
    table_name VARCHAR, version INTEGER, path VARCHAR, created_at TIMESTAMPTZ,
    n_rows BIGINT, model_version VARCHAR, as_of VARCHAR, run_id VARCHAR, checks JSON,
    PRIMARY KEY (table_name, version));
CREATE TABLE IF NOT EXISTS current_versions (
    table_name VARCHAR PRIMARY KEY, version INTEGER, switched_at TIMESTAMPTZ);
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
            self._sync_query_copies(con, read_only)
        finally:
            con.close()

    def _sync_query_copies(self, con: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        """Point `tvrec query` at the current versions' copies. An open connection excludes
        every commit, so this always reflects the last one; it also heals a pointer left
        behind by a publish killed between its commit and its own sync."""
        rows = con.execute("SELECT table_name, version FROM current_versions").fetchall()
        try:
            sync_pointers(self.root, versions_of(rows))
        except OSError:
            if not read_only:  # a reader of a read-only work directory still reads
                raise

    # ---- versions ---------------------------------------------------------------------------
    def publish(
        self,
        name: str,
        frame: pl.DataFrame,
        *,
        checks: list[Check] = (),  # type: ignore[assignment]
        model_version: str | None = None,
        as_of: str | None = None,
        run_id: str | None = None,
    ) -> TableVersion:
        """Write `frame` as the next version of `name` and make it current, atomically.

        A query table also gets its indexed copy, complete before the version is current."""
        directory = self.root / "tables" / name
        directory.mkdir(parents=True, exist_ok=True)
        self._sweep(directory)
        for check in checks:  # refuse before anything is written
            check(frame)
        with self.connect() as con:
            (latest,) = con.execute(
                "SELECT coalesce(max(version), 0) FROM table_versions WHERE table_name = ?", [name]
            ).fetchone()
        version = int(latest) + 1
        copy_path(self.root, name, version).unlink(missing_ok=True)  # a killed run's, unused
        final = directory / f"v{version}.parquet"
        tmp = directory / f".v{version}.{uuid.uuid4().hex[:6]}.parquet.tmp"
        frame.write_parquet(tmp)
        _pause_for_tests("write")
        if pl.scan_parquet(tmp).select(pl.len()).collect().item() != frame.height:
            raise ConfigError(f"{tmp}: row count changed on write")
        os.replace(tmp, final)
        build_copy(self.root, CopySpec(name, version, model_version, as_of), frame)
        _pause_for_tests("copy")
        now = datetime.now(UTC)
        with self.connect() as con:  # its close points queries at the new copy
            con.execute("BEGIN TRANSACTION")
            con.execute(
                "INSERT INTO table_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    name,
                    version,
                    str(final),
                    now,
                    frame.height,
                    model_version,
                    as_of,
                    run_id,
                    json.dumps({"passed": [getattr(c, "__name__", "check") for c in checks]}),
                ],
            )
            self._set_current(con, name, version, now)
            con.execute("COMMIT")
            _pause_for_tests("switch")
        return TableVersion(name, version, final, now, frame.height, model_version, as_of, True)

    def rollback(self, name: str, version: int) -> TableVersion:
        """Make an earlier (still present) version current again."""
        versions = {v.version: v for v in self.versions(name)}
        if version not in versions:
            have = ", ".join(str(v) for v in sorted(versions)) or "none"
            raise ConfigError(f"table {name!r} has no version {version} (versions: {have})")
        if not versions[version].path.exists():
            raise ConfigError(f"version {version} of {name!r} is gone: {versions[version].path}")
        self._ensure_copy(versions[version])
        with self.connect() as con:  # its close points queries at that version's copy
            self._set_current(con, name, version, datetime.now(UTC))
        return self.current(name)  # type: ignore[return-value]

    def _ensure_copy(self, table: TableVersion) -> None:
        """Build the indexed copy of a version published before copies existed."""
        if copy_path(self.root, table.table_name, table.version).exists():
            return
        if queryable(table.table_name, pl.read_parquet_schema(table.path)):
            spec = CopySpec(table.table_name, table.version, table.model_version, table.as_of)
            build_copy(self.root, spec, pl.read_parquet(table.path))

    def current(self, name: str) -> TableVersion | None:
        return next((v for v in self.versions(name) if v.current), None)

    def read_current(self, name: str) -> pl.DataFrame:
        cur = self.current(name)
        if cur is None:
            raise ConfigError(
                f"no published {name!r} table yet: run `tvrec run` or `tvrec recommend`"
            )
        return pl.read_parquet(cur.path)

    def versions(self, name: str | None = None) -> list[TableVersion]:
        if not self.path.exists():
            return []
        with self.connect(read_only=True) as con:
            rows = con.execute(
                """SELECT v.table_name, v.version, v.path, v.created_at, v.n_rows,
                          v.model_version, v.as_of, c.version IS NOT NULL
                   FROM table_versions v LEFT JOIN current_versions c
                     ON c.table_name = v.table_name AND c.version = v.version
                   WHERE ? IS NULL OR v.table_name = ?
                   ORDER BY v.table_name, v.version""",
                [name, name],
            ).fetchall()
        return [
            TableVersion(r[0], r[1], Path(r[2]), r[3], r[4], r[5], r[6], bool(r[7])) for r in rows
        ]

    @staticmethod
    def _set_current(
        con: duckdb.DuckDBPyConnection, name: str, version: int, now: datetime
    ) -> None:
        con.execute(
            "INSERT OR REPLACE INTO current_versions VALUES (?, ?, ?)", [name, version, now]
        )

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


def _pause_for_tests(stage: str) -> None:
    """Tests set TVREC_TEST_PUBLISH_PAUSE to kill a publish at one stage: `write` (the
    Parquet file is half-written; the default), `copy` (the indexed copy is renamed in, the
    catalogue not switched) or `switch` (committed, queries not yet pointed at the copy),
    chosen by TVREC_TEST_PUBLISH_PAUSE_AT."""
    pause = os.environ.get("TVREC_TEST_PUBLISH_PAUSE")
    if pause and stage == os.environ.get("TVREC_TEST_PUBLISH_PAUSE_AT", "write"):
        import time

        marker = Path(pause)
        marker.write_text("writing")
        time.sleep(60)
