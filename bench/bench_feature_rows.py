"""Rows per time-dependent feature table, before (the dense snapshot grid: every entity at every
daily / weekly / monthly snapshot) and after (a row only where a value changes), with build
time and peak RSS.

"Before" rows come from the dense formula (entities x snapshot times, counted from the event
log without building anything); `--before-ref REF` also times the old builders, loaded from
`git show REF:pipelines/features/{temporal,graph,vocab}.py`, where their dense tables fit in
`--dense-limit` rows. Each measurement runs in its own child process, which reports its own
peak RSS (getrusage, so it includes the ingest that precedes the build):

  * `tables`: the graph and temporal builders alone (the code this change touches);
  * `full`: `build_features` end to end (MiniLM text on a cold cache, feast apply, materialize).

Datasets: the demo world (`WorldConfig()`), the anime and MovieLens-100k sets from
`../shared/datasets`, and a synthetic log of 100,000 events on 10,000 shows over 20 years
(`long-20y`) next to the very same events squeezed into 2 years (`long-2y`): the sparse row
counts must not grow with the span.

    python bench/bench_feature_rows.py [--datasets demo,anime,movielens-100k,long-2y,long-20y]
        [--modes tables,full] [--before-ref HEAD] [--out /tmp/bench_feature_rows.md] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
TABLES = ("show_popularity", "show_seasonality", "user_activity", "show_graph")
LONG = {"n_users": 5000, "n_shows": 10_000, "n_events": 100_000, "seed": 11}
LONG_START = date(2004, 1, 1)


@dataclass(frozen=True)
class Source:
    """A dataset directory and its ingest format."""

    path: Path
    fmt: str


# ---- dataset preparation (parent) -----------------------------------------------------------
def _long_world(directory: Path) -> tuple[Source, Source]:
    """The 20-year synthetic log, and a copy with the same events squeezed into 2 years."""
    from tvrec.pipelines.synthetic import WorldConfig, write_world

    long20 = directory / "long-20y"
    write_world(long20, WorldConfig(days=7300, start=LONG_START, **LONG))
    long2 = directory / "long-2y"
    long2.mkdir()
    for name in ("shows", "credits", "users"):
        (long2 / f"{name}.parquet").write_bytes((long20 / f"{name}.parquet").read_bytes())
    start = datetime(LONG_START.year, LONG_START.month, LONG_START.day, tzinfo=UTC)
    events = pl.read_parquet(long20 / "events.parquet")
    ts = pl.col("event_timestamp")
    squeezed = pl.lit(start) + (ts - pl.lit(start)) / 10  # same order, 1/10 of the span
    events.with_columns(squeezed.dt.cast_time_unit("us").alias("event_timestamp")).write_parquet(
        long2 / "events.parquet"
    )
    return Source(long2, "contract"), Source(long20, "contract")


def prepare(names: list[str], tmp: Path) -> dict[str, Source]:
    """Source directories of the named datasets (synthetic ones generated into tmp)."""
    sources: dict[str, Source] = {}
    if "demo" in names:
        from tvrec.pipelines.synthetic import WorldConfig, write_world

        write_world(tmp / "demo", WorldConfig())
        sources["demo"] = Source(tmp / "demo", "contract")
    if "long-2y" in names or "long-20y" in names:
        sources["long-2y"], sources["long-20y"] = _long_world(tmp)
    for name, fmt, folder in (
        ("anime", "anime", "anime-caserec-5k-users"),
        ("movielens-100k", "movielens-100k", "movielens-100k"),
    ):
        if name in names:
            sources[name] = Source(SHARED / folder, fmt)
    return {n: sources[n] for n in names}


# ---- child: measurements --------------------------------------------------------------------
def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _ingested(src: Source, work: Path) -> tuple[Any, Any, datetime]:
    """Ingest into `work`; the work directory, the lake and the default as-of time."""
    from tvrec.pipelines.build import default_as_of
    from tvrec.pipelines.ingest import ingest, read_lake
    from tvrec.pipelines.workdir import Workdir

    wd = Workdir(work)
    ingest(src.path, src.fmt, wd)
    ds = read_lake(wd)
    return wd, ds, default_as_of(ds)


def dense_rows(ds: Any, as_of: datetime) -> dict[str, int]:
    """Rows of the dense tables (entities x snapshots), counted without building them."""
    from tvrec.pipelines.features import temporal

    ev = temporal.cut_events(ds.events, as_of)
    ts = temporal.event_us(ev)
    first = int(ts.min()) if ts.size else None
    n_shows = ds.shows.height
    days = temporal.snapshot_us(first, as_of, "day")  # (T,)
    user_first = ev.group_by("user_id").agg(pl.col("event_timestamp").min())
    first_us = temporal.event_us(user_first)  # (U,) each user's first event
    # a user is listed from the first daily snapshot strictly after their first event
    activity = int((days.size - np.searchsorted(days, first_us, side="right")).sum())
    return {
        "show_popularity": n_shows * days.size,
        "show_seasonality": n_shows * temporal.snapshot_us(first, as_of, "week").size,
        "user_activity": activity,
        "show_graph": n_shows * temporal.snapshot_us(first, as_of, "month").size,
        "span_days": int(days.size),
    }


def _builders(temporal: ModuleType, graph: ModuleType) -> dict[str, Callable[..., pl.DataFrame]]:
    """The builders of one version of the feature modules, as build.py calls them."""
    from tvrec.pipelines.config import FeatureSettings

    fs = FeatureSettings()
    return {
        "show_popularity": lambda ds, a: temporal.show_popularity(
            ds.events, ds.shows["show_id"], a
        ),
        "show_seasonality": lambda ds, a: temporal.show_seasonality(
            ds.events, ds.shows["show_id"], a
        ),
        "user_activity": lambda ds, a: temporal.user_activity(ds.events, a),
        "show_graph": lambda ds, a: graph.show_graph_stats(
            ds.shows, ds.credits, ds.events, a, fs.max_user_history, fs.cowatch_min_users
        ),
    }


def _old_modules(folder: Path) -> tuple[ModuleType, ModuleType]:
    """temporal and graph from a folder holding a `before_features` package (see main)."""
    sys.path.insert(0, str(folder))
    import before_features.graph as graph
    import before_features.temporal as temporal

    return temporal, graph


def child_tables(src: Source, work: Path, old: Path | None) -> dict[str, Any]:
    """Time and rows of each builder on one dataset (old builders when `old` is given)."""
    from tvrec.pipelines.features import graph, temporal

    _, ds, as_of = _ingested(src, work)
    builders = _builders(*_old_modules(old)) if old else _builders(temporal, graph)
    rows, seconds = {}, {}
    t_all = time.perf_counter()
    for name, build in builders.items():
        t0 = time.perf_counter()
        rows[name] = build(ds, as_of).height
        seconds[name] = time.perf_counter() - t0
    return {
        "rows": rows,
        "seconds": seconds,
        "build_s": time.perf_counter() - t_all,
        "peak_rss_mib": _peak_mib(),
        "load_1min": os.getloadavg()[0],
        "dense": dense_rows(ds, as_of),
        "events": ds.events.height,
        "shows": ds.shows.height,
        "users": ds.events["user_id"].n_unique(),
    }


def child_full(src: Source, work: Path) -> dict[str, Any]:
    """`build_features` end to end (after ingest) on one dataset."""
    from tvrec.pipelines.build import build_features
    from tvrec.pipelines.config import Settings
    from tvrec.pipelines.progress import StageLog

    wd, _, _ = _ingested(src, work)
    t0 = time.perf_counter()
    summary = build_features(wd, Settings.load(wd.root), log=StageLog(quiet=True))
    return {
        "rows": summary.rows,
        "seconds": summary.seconds,
        "build_s": time.perf_counter() - t0,
        "peak_rss_mib": _peak_mib(),
        "load_1min": os.getloadavg()[0],
    }


# ---- parent: orchestration ------------------------------------------------------------------
def run_child(mode: str, src: Source, old: Path | None = None) -> dict[str, Any]:
    """One measurement in a fresh process and a fresh work directory."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--child", mode, str(src.path), src.fmt, tmp]
        proc = subprocess.run([*cmd, str(old or "")], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{mode} on {src.path} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def old_package(ref: str, into: Path) -> Path:
    """The feature modules of git `ref` as package `before_features` under `into`."""
    package = into / "before_features"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in ("temporal", "graph", "vocab"):
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{ref}:pipelines/features/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (package / f"{name}.py").write_text(text)
    return into


def measure(
    sources: dict[str, Source], modes: list[str], old: Path | None, dense_limit: int
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, src in sources.items():
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        got: dict[str, Any] = {"tables": run_child("tables", src)}
        if "full" in modes:
            got["full"] = run_child("full", src)
        if old is not None:
            dense = got["tables"]["dense"]
            biggest = max(dense[t] for t in TABLES)
            got["before"] = (
                run_child("tables", src, old)
                if biggest <= dense_limit
                else {"skipped": f"dense tables of up to {biggest:,} rows"}
            )
        results[name] = got
    return results


# ---- report ---------------------------------------------------------------------------------
def _mib(x: float) -> str:
    return f"{x:,.0f}"


def _load_text(results: dict[str, dict[str, Any]]) -> str:
    """The 1-minute load averages the children saw at their end, as a range."""
    loads = [m["load_1min"] for r in results.values() for m in r.values() if "load_1min" in m]
    return f"{min(loads):.1f}–{max(loads):.1f}" if loads else "not recorded"


def markdown(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    out = [
        "## Feature table rows: dense snapshots vs change points",
        "",
        f"`python bench/bench_feature_rows.py --datasets {args.datasets} --modes {args.modes}"
        + (f" --before-ref {args.before_ref}`" if args.before_ref else "`"),
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} cores, "
        "**under contention** (a machine shared with other jobs; 1-minute load average "
        f"{_load_text(results)} at the end of the runs): times are indicative, row counts "
        "exact. One cold run per figure. Before = the dense grid (entities x snapshots, from "
        "the formula); after = rows written by the current builders.",
        "",
        "| dataset | table | before (dense) | after | after / before |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        dense, rows = r["tables"]["dense"], r["tables"]["rows"]
        for t in TABLES:
            ratio = rows[t] / dense[t] if dense[t] else float("nan")
            out.append(f"| {name} | {t} | {dense[t]:,} | {rows[t]:,} | {ratio:.3%} |")
    out += [
        "",
        "| dataset | events | shows | users | span (days) | rows before → after (4 tables) "
        "| builders s | builders peak RSS MiB | full build s | full build peak RSS MiB "
        "| old builders s / peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    out += [_build_row(name, r) for name, r in results.items()]
    out += ["", *_span(results), *_stages(results)]
    return "\n".join(out) + "\n"


def _build_row(name: str, r: dict[str, Any]) -> str:
    """One dataset's line of the build table."""
    tb, full, old = r["tables"], r.get("full"), r.get("before")
    before = sum(tb["dense"][t] for t in TABLES)
    after = sum(tb["rows"][t] for t in TABLES)
    if old is None:
        old_text = "not run"
    else:
        old_text = old.get("skipped") or f"{old['build_s']:.1f} / {_mib(old['peak_rss_mib'])}"
    full_text = f"{full['build_s']:.1f} | {_mib(full['peak_rss_mib'])}" if full else "– | –"
    return (
        f"| {name} | {tb['events']:,} | {tb['shows']:,} | {tb['users']:,} "
        f"| {tb['dense']['span_days']:,} | {before:,} → {after:,} | {tb['build_s']:.1f} "
        f"| {_mib(tb['peak_rss_mib'])} | {full_text} | {old_text} |"
    )


def _span(results: dict[str, dict[str, Any]]) -> list[str]:
    """The same events over 2 and over 20 years, side by side (when both were measured)."""
    if not {"long-2y", "long-20y"} <= results.keys():
        return []
    short, long = results["long-2y"]["tables"], results["long-20y"]["tables"]
    lines = [
        "The same 100,000 events over 2 years (`long-2y`) and over 20 years (`long-20y`):",
        "",
        "| table | dense 2y | dense 20y | after 2y | after 20y | after 20y / 2y |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in TABLES:
        a, b = short["rows"][t], long["rows"][t]
        lines.append(
            f"| {t} | {short['dense'][t]:,} | {long['dense'][t]:,} | {a:,} | {b:,} | {b / a:.2f}x |"
        )
    return [*lines, ""]


def _stages(results: dict[str, dict[str, Any]]) -> list[str]:
    """Seconds per builder (current code) and, for full builds, the slowest stages."""
    lines = ["Seconds per builder (current code), and the slowest stages of the full build:", ""]
    for name, r in results.items():
        per = ", ".join(f"{t} {s:.1f}" for t, s in r["tables"]["seconds"].items())
        full = r.get("full")
        slow = (
            "; full: "
            + ", ".join(
                f"{k} {v:.1f}"
                for k, v in sorted(full["seconds"].items(), key=lambda kv: -kv[1])[:4]
            )
            if full
            else ""
        )
        lines.append(f"- {name}: {per}{slow}")
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, path, fmt, work, old = sys.argv[2:7]
        src = Source(Path(path), fmt)
        out = (
            child_full(src, Path(work) / "work")
            if mode == "full"
            else child_tables(src, Path(work) / "work", Path(old) if old else None)
        )
        print(json.dumps(out))
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="demo,anime,movielens-100k,long-2y,long-20y")
    ap.add_argument("--modes", default="tables,full")
    ap.add_argument("--before-ref", default=None, help="git ref of the dense builders to time")
    ap.add_argument("--dense-limit", type=int, default=20_000_000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_feature_rows.md"))
    ap.add_argument("--json", action="store_true", help="also print the raw figures")
    ap.add_argument("--from-json", type=Path, help="only render the report of a --json output")
    args = ap.parse_args()
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            sources = prepare(args.datasets.split(","), Path(tmp))
            old = old_package(args.before_ref, Path(tmp) / "old") if args.before_ref else None
            results = measure(sources, args.modes.split(","), old, args.dense_limit)
    if args.json:
        print(json.dumps(results, indent=2))
    report = markdown(results, args)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
