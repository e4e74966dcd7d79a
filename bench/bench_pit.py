"""Point-in-time joins for training sets: tvrec's ASOF JOIN offline store against a raw DuckDB
ASOF JOIN and Feast's stock DuckDB offline store, at growing entity-frame sizes.

The feature tables come from the demo world (`WorldConfig()`: 5,000 users, 1,500 shows,
300,000 events; built once into --world). Entity rows are training-like: a sampled event's
user and time, with the event's show (label 1) or a random show (label 0). Three ways to join
them with FeatureService --service, each in its own child process so its peak RSS is its own:

  plugin  FeatureStore.get_historical_features(...).to_df() with the repo's feature_store.yaml
          (offline_store: tvrec.pipelines.feast_offline.AsofDuckDBOfflineStore)
  raw     a hand-written DuckDB query: one ASOF LEFT JOIN per feature view over the Parquet
  stock   the same Feast call with `offline_store: type: duckdb` (Feast's ibis-based store)

Every result is written to Parquet and compared with the raw one as a multiset of rows. The
stock store needs tens of GiB at a million rows: a stock run whose memory, extrapolated from
its smaller runs, would not fit is skipped (and said so), and a child past --max-rss-gib is
stopped. Prints a Markdown table and the plugin/raw ratios.

    python bench/bench_pit.py [--rows 100k,1M,5M] [--world DIR] [--skip-stock]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from tvrec.pipelines.progress import PeakRss

ROOT = Path(__file__).resolve().parents[1]
SEED = 7
METHODS = ("raw", "plugin", "stock")  # raw first: the others are compared with it
STOCK_TYPE = "duckdb"
PLUGIN_TYPE = "tvrec.pipelines.feast_offline.AsofDuckDBOfflineStore"


# ---- the world ------------------------------------------------------------------------------
def build_world(world: Path) -> Path:
    """The demo world's features, applied and materialized, in `world/work` (built once)."""
    work = world / "work"
    if (work / "features" / "manifest.json").exists():
        return work
    from tvrec.pipelines.build import build_features
    from tvrec.pipelines.config import Settings
    from tvrec.pipelines.ingest import ingest
    from tvrec.pipelines.progress import StageLog
    from tvrec.pipelines.synthetic import WorldConfig, write_world
    from tvrec.pipelines.workdir import Workdir

    print(f"building the demo world in {world} (once) ...", flush=True)
    write_world(world / "source", WorldConfig())
    wd = Workdir(work)
    ingest(world / "source", "contract", wd)
    build_features(wd, Settings.load(wd.root), log=StageLog(quiet=True))
    return work


def entity_frame(work: Path, rows: int) -> Any:
    """Training-like entity rows (pandas, as `training_set` hands to Feast), seeded."""
    import numpy as np
    import polars as pl

    events = pl.read_parquet(
        work / "lake" / "events.parquet", columns=["user_id", "show_id", "event_timestamp"]
    )
    shows = pl.read_parquet(work / "lake" / "shows.parquet", columns=["show_id"])["show_id"]
    rng = np.random.default_rng(SEED)
    picked = events[rng.integers(0, events.height, rows)]
    negative = rng.random(rows) < 0.5
    random_show = shows.to_numpy()[rng.integers(0, shows.len(), rows)]
    return picked.with_columns(
        pl.Series("show_id", np.where(negative, random_show, picked["show_id"].to_numpy())),
        pl.Series("label", (~negative).astype(np.int8)),
    ).to_pandas()


# ---- the hand-written query -----------------------------------------------------------------
@dataclass(frozen=True)
class ViewSource:
    name: str
    path: str
    key: str
    features: list[str]


def service_views(work: Path, service: str) -> list[ViewSource]:
    """The service's views, their Parquet and feature names, read from the Feast registry."""
    from tvrec.pipelines.store import feature_store

    store = feature_store(work)
    views = {fv.name: fv for fv in store.list_feature_views()}
    out = []
    for projection in store.get_feature_service(service).feature_view_projections:
        fv = views[projection.name]
        out.append(
            ViewSource(
                fv.name,
                fv.batch_source.path,
                fv.join_keys[0],
                [f.name for f in projection.features],
            )
        )
    return out


def raw_sql(views: list[ViewSource]) -> str:
    """What one would write by hand: an ASOF LEFT JOIN per view, no ordering, no checks."""
    cols = [f'v{i}."{f}" AS "{v.name}__{f}"' for i, v in enumerate(views) for f in v.features]
    joins = [
        f"ASOF LEFT JOIN read_parquet('{v.path}') v{i} "
        f'ON e."{v.key}" = v{i}."{v.key}" AND e.event_timestamp >= v{i}.event_timestamp'
        for i, v in enumerate(views)
    ]
    return f"SELECT e.*, {', '.join(cols)}\nFROM entities e\n" + "\n".join(joins)


# ---- one measurement (child process) --------------------------------------------------------
def peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM belongs to the process image since its exec; getrusage's
    ru_maxrss would also count the (large) parent this child was forked from."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _feast_yaml(offline_type: str, into: Path) -> Path:
    """The repo's feature_store.yaml with another offline store type."""
    text = (ROOT / "feature_repo" / "feature_store.yaml").read_text()
    text = re.sub(r"(?m)^(offline_store:\n  type: ).*$", rf"\g<1>{offline_type}", text)
    path = into / f"feature_store_{offline_type.rsplit('.', 1)[-1]}.yaml"
    path.write_text(text)
    return path


def run_child(method: str, work: Path, rows: int, service: str, out: Path, sql: str) -> dict:
    """Join `rows` entity rows with `method`; returns timings and memory; writes the result."""
    entities = entity_frame(work, rows)
    if method == "raw":
        import duckdb

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.register("entities", entities)
        with PeakRss(every=0.005) as mem:  # peak and starting RSS
            t0 = time.perf_counter()
            result = con.sql(sql).df()
            seconds = time.perf_counter() - t0
    else:
        from feast import FeatureStore

        from tvrec.pipelines.store import repo_path

        os.environ["TVREC_WORKDIR"] = str(work)  # the yaml's paths
        offline = PLUGIN_TYPE if method == "plugin" else STOCK_TYPE
        yaml = _feast_yaml(offline, out.parent)
        store = FeatureStore(repo_path=str(repo_path()), fs_yaml_file=yaml)
        features = store.get_feature_service(service)
        with PeakRss(every=0.005) as mem:  # peak and starting RSS
            t0 = time.perf_counter()
            job = store.get_historical_features(entities, features, full_feature_names=True)
            result = job.to_df()
            seconds = time.perf_counter() - t0
    result.to_parquet(out, index=False)
    return {
        "method": method,
        "rows": rows,
        "result_rows": len(result),
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "call_rss_mib": (mem.peak - mem.start) / 2**20,
    }


# ---- the parent: run children, guard memory, compare ----------------------------------------
def measure(
    method: str, work: Path, rows: int, args: argparse.Namespace, out: Path, sql: Path
) -> dict:
    """One child, stopped if its RSS passes the cap or it runs past the timeout."""
    cmd = [sys.executable, __file__, "--child", method, "--world", str(args.world)]
    cmd += ["--rows", str(rows), "--service", args.service, "--out", str(out), "--sql", str(sql)]
    cap = args.max_rss_gib * 2**30
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        watch = psutil.Process(child.pid)
        start, reason = time.monotonic(), None
        while child.poll() is None:
            time.sleep(0.2)
            try:
                rss = watch.memory_info().rss
            except psutil.NoSuchProcess:
                break
            if rss > cap or time.monotonic() - start > args.timeout:
                reason = "memory cap" if rss > cap else "timeout"
                child.kill()
        stdout = child.communicate()[0]
        if reason:
            return {"method": method, "rows": rows, "stopped": reason}
        if child.returncode != 0:
            log.seek(0)
            raise SystemExit(f"{method} at {rows:,} rows failed:\n{log.read()[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def same_rows(left: Path, right: Path) -> bool:
    """The two results hold the same multiset of rows (column order from `left`)."""
    import duckdb

    con = duckdb.connect()
    cols = [c[0] for c in con.sql(f"DESCRIBE SELECT * FROM '{left}'").fetchall()]
    sel = ", ".join(f'"{c}"' for c in cols)
    diff = (
        f"SELECT count(*) FROM ((SELECT {sel} FROM '{left}' EXCEPT ALL SELECT {sel} FROM "
        f"'{right}') UNION ALL (SELECT {sel} FROM '{right}' EXCEPT ALL SELECT {sel} FROM '{left}'))"
    )
    return con.execute(diff).fetchone()[0] == 0


def stock_fits(rows: int, done: list[dict], args: argparse.Namespace) -> str | None:
    """Why the stock store is skipped at `rows`, or None to run it."""
    if args.skip_stock:
        return "--skip-stock"
    ran = [r for r in done if r["method"] == "stock" and "seconds" in r]
    stopped = [r for r in done if r["method"] == "stock" and "stopped" in r]
    if stopped:
        return f"stopped at {stopped[-1]['rows']:,} rows ({stopped[-1]['stopped']})"
    if not ran:
        return None
    last = max(ran, key=lambda r: r["rows"])
    need = last["peak_rss_mib"] / 1024 * rows / last["rows"]
    room = min(args.max_rss_gib, psutil.virtual_memory().available / 2**30)
    if need > room:
        return f"needs about {need:.0f} GiB (linear from {last['rows']:,} rows), {room:.0f} free"
    return None


def run_size(rows: int, work: Path, args: argparse.Namespace, tmp: Path, sql: Path) -> list:
    results = []
    for method in METHODS:
        if method == "stock":
            why = stock_fits(rows, args.done, args)
            if why:
                print(f"  stock at {rows:,} rows skipped: {why}", flush=True)
                results.append({"method": method, "rows": rows, "stopped": f"skipped: {why}"})
                continue
        out = tmp / f"{method}-{rows}.parquet"
        result = measure(method, work, rows, args, out, sql)
        if "seconds" in result and method != "raw":
            result["same_as_raw"] = same_rows(out, tmp / f"raw-{rows}.parquet")
        print(f"  {json.dumps(result)}", flush=True)
        results.append(result)
        args.done.append(result)
    return results


def parse_rows(text: str) -> list[int]:
    scale = {"k": 1_000, "m": 1_000_000}
    return [
        int(float(p[:-1]) * scale[p[-1].lower()]) if p[-1] in "kKmM" else int(p)
        for p in text.split(",")
    ]


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; load average "
        f"{os.getloadavg()[0]:.1f}; date {datetime.now(UTC):%Y-%m-%d}; service {args.service}\n"
    )
    print(
        "| entity rows | method | seconds | peak RSS (MiB) | RSS added by the call (MiB) "
        "| same rows as raw |"
    )
    print("|---:|---|---:|---:|---:|---|")
    for r in results:
        if "seconds" not in r:
            print(f"| {r['rows']:,} | {r['method']} | — | — | — | {r['stopped']} |")
            continue
        same = "yes" if r.get("same_as_raw", True) else "**NO**"
        print(
            f"| {r['rows']:,} | {r['method']} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f} "
            f"| {r['call_rss_mib']:.0f} | {same if r['method'] != 'raw' else '—'} |"
        )
    print("\n| entity rows | plugin/raw time | plugin/raw peak RSS | plugin/raw RSS added |")
    print("|---:|---:|---:|---:|")
    by = {(r["method"], r["rows"]): r for r in results if "seconds" in r}
    for rows in sorted({r["rows"] for r in results}):
        p, w = by.get(("plugin", rows)), by.get(("raw", rows))
        if p and w:
            print(
                f"| {rows:,} | {p['seconds'] / w['seconds']:.2f} | "
                f"{p['peak_rss_mib'] / w['peak_rss_mib']:.2f} | "
                f"{p['call_rss_mib'] / max(w['call_rss_mib'], 1):.2f} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", default="100k,1M,5M", help="entity-frame sizes, e.g. 100k,1M,5M")
    ap.add_argument("--world", type=Path, default=ROOT / "bench" / "out" / "pit-world")
    ap.add_argument("--service", default="collaborative_v1")
    ap.add_argument("--skip-stock", action="store_true", help="never run Feast's stock store")
    ap.add_argument(
        "--max-rss-gib", type=float, default=psutil.virtual_memory().total / 2**30 * 0.7
    )
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per measurement")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--sql", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        work = args.world / "work"
        result = run_child(
            args.child, work, int(args.rows), args.service, args.out, args.sql.read_text()
        )
        print(json.dumps(result))
        return
    work = build_world(args.world)
    args.done = []
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-pit-") as tmp:
        sql = Path(tmp) / "raw.sql"
        sql.write_text(raw_sql(service_views(work, args.service)))
        for rows in parse_rows(args.rows):
            print(f"{rows:,} entity rows:", flush=True)
            results += run_size(rows, work, args, Path(tmp), sql)
    if args.json:
        print(json.dumps(results, indent=2))
    print_table(results, args)


if __name__ == "__main__":
    main()
