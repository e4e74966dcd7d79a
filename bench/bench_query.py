"""Latency of `tvrec query` on a demo-size published layout (5,000 users x 50 recs, 1,500
shows, dim 65): in-process p50/p99 per kind of query and cold-process start-to-answer, for the
indexed copies (`tables/<name>/v<N>.sqlite`, what publishing writes now) and, as the baseline
in the same run, the Parquet path (the same layout without copies: a catalogue lookup and a
Parquet scan per query, what every query did before).

The layout is synthetic and written exactly as the nightly job leaves it (lake, catalogue
tables `user_topk` / `show_similar` with their copies, FAISS index, model manifest); 5% of the
shows have no `show_similar` rows so that some show queries take the index fallback.
In-process queries go through `run_query` (what `tvrec query` runs), the two paths
interleaved so that both see the same load; cold runs start the `tvrec` console script
(`tvrec.jobs.cli:main`) once per query. Ratios (copy / Parquet path, cold / bare interpreter)
hold up on a loaded machine better than the absolute figures.

    python bench/bench_query.py [--cold-runs 10] [--queries 1000] [--json] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tvrec.index import IndexConfig, make_show_index, save_index
from tvrec.jobs.catalog import Catalog
from tvrec.jobs.query import run_query
from tvrec.jobs.query_store import CopySpec, build_copy

N_USERS, N_SHOWS, K, DIM = 5_000, 1_500, 50, 65
N_EVENTS = 100_000
NO_SIMILAR_SHARE = 0.05  # shows whose neighbours come from the index
MODEL_VERSION = "two_tower-bench"
AS_OF = "2024-05-01T00:00:00+00:00"
SEED = 7
WORDS = (
    "Midnight",
    "Harbour",
    "Quiet",
    "Lantern",
    "Starship",
    "Colony",
    "Broken",
    "Crown",
    "River",
    "Kitchen",
    "Office",
    "Wild",
    "Ocean",
    "Secret",
    "Estate",
    "Galaxy",
    "Dragon",
    "Realm",
    "Summer",
    "Winter",
    "Signal",
    "Empire",
    "Silent",
    "Detective",
    "Glass",
    "City",
    "Northern",
    "Lights",
    "Iron",
    "Garden",
    "Paper",
    "Moon",
    "Hollow",
    "Creek",
    "Golden",
    "Hour",
)

# ----------------------------------------------------------------------------- layout


def titles(rng: random.Random) -> list[str]:
    """Unique two- or three-word titles."""
    seen: set[str] = set()
    while len(seen) < N_SHOWS:
        seen.add(" ".join(rng.sample(WORDS, rng.choice((2, 3)))))
    return sorted(seen)


def write_lake(root: Path, show_ids: list[str], user_ids: list[str]) -> None:
    rng = np.random.default_rng(SEED)
    lake = root / "lake"
    lake.mkdir(parents=True)
    pl.DataFrame(
        {
            "show_id": show_ids,
            "title": titles(random.Random(SEED)),
            "premiered": [date(1990 + i % 35, 1 + i % 12, 1) for i in range(N_SHOWS)],
            "genres": [["Drama"]] * N_SHOWS,
        }
    ).write_parquet(lake / "shows.parquet")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    pl.DataFrame(
        {
            "user_id": np.array(user_ids)[rng.integers(0, N_USERS, N_EVENTS)],
            "show_id": np.array(show_ids)[rng.integers(0, N_SHOWS, N_EVENTS)],
            "event_timestamp": [start + timedelta(minutes=int(m)) for m in range(N_EVENTS)],
        }
    ).write_parquet(lake / "events.parquet")


def topk(queries: np.ndarray, items: np.ndarray, k: int, self_rows: bool) -> np.ndarray:
    """Row ids (q, k) of the k best items by inner product, a row never its own neighbour."""
    scores = queries @ items.T  # (q, n)
    if self_rows:
        np.fill_diagonal(scores, -np.inf)
    best = np.argpartition(-scores, k, axis=1)[:, :k]  # (q, k) unordered
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1)
    return np.take_along_axis(best, order, axis=1)


def table(keys: list[str], ids: list[str], rows: np.ndarray, scores: np.ndarray) -> pl.DataFrame:
    """Long (key, rank, id, score) frame for a (q, k) neighbour matrix."""
    q, k = rows.shape
    return pl.DataFrame(
        {
            "key": np.repeat(keys, k),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), q),
            "id": np.array(ids)[rows.ravel()],
            "score": np.take_along_axis(scores, rows, axis=1).ravel().astype(np.float32),
            "model_version": MODEL_VERSION,
            "as_of": AS_OF,
        }
    )


def build_layout(root: Path) -> dict[str, list[str]]:
    """Write the whole layout; returns the ids queries are drawn from."""
    rng = np.random.default_rng(SEED)
    show_ids = [f"s{i:05d}" for i in range(N_SHOWS)]
    user_ids = [f"u{i:06d}" for i in range(N_USERS)]
    write_lake(root, show_ids, user_ids)
    shows = rng.standard_normal((N_SHOWS, DIM)).astype(np.float32)  # (n, d)
    shows /= np.linalg.norm(shows, axis=1, keepdims=True)
    users = rng.standard_normal((N_USERS, DIM)).astype(np.float32)  # (u, d)
    user_rows = topk(users, shows, K, self_rows=False)  # (u, K)
    user_frame = table(user_ids, show_ids, user_rows, users @ shows.T)
    show_rows = topk(shows, shows, K, self_rows=True)  # (n, K)
    n_with = int(N_SHOWS * (1 - NO_SIMILAR_SHARE))
    similar = table(show_ids[:n_with], show_ids, show_rows[:n_with], (shows @ shows.T)[:n_with])
    catalog = Catalog(root)
    for name, frame in (
        ("user_topk", user_frame.rename({"key": "user_id", "id": "show_id"})),
        ("show_similar", similar.rename({"key": "show_id", "id": "similar_show_id"})),
    ):
        catalog.publish(name, frame, model_version=MODEL_VERSION, as_of=AS_OF)
    write_index_and_model(root, shows, show_ids)
    return {"users": user_ids, "shows": show_ids[:n_with], "fallback": show_ids[n_with:]}


def write_index_and_model(root: Path, shows: np.ndarray, show_ids: list[str]) -> None:
    manifest = {
        "model_name": "two_tower",
        "model_version": MODEL_VERSION,
        "feature_service": "collaborative_v1",
        "data_snapshot": "bench",
        "as_of": AS_OF,
    }
    index = make_show_index(shows, show_ids, **manifest, cfg=IndexConfig(device="cpu"))
    save_index(index, root / "index")
    (root / "model").mkdir()
    (root / "model" / "manifest.json").write_text(json.dumps({**manifest, "dim": DIM}))


def parquet_path_layout(root: Path, dest: Path) -> Path:
    """The same layout without indexed copies: queries read the catalogue and Parquet."""
    shutil.copytree(root, dest, symlinks=True)
    for pattern in ("*/current.json", "*/v*.sqlite"):
        for path in (dest / "tables").glob(pattern):
            path.unlink()
    return dest


def copy_cost(root: Path) -> dict[str, float]:
    """Seconds to build the user table's indexed copy (extra publish work) and its size."""
    frame = pl.read_parquet(root / "tables" / "user_topk" / "v1.parquet")
    scratch = Path(tempfile.mkdtemp(dir=root.parent))
    (scratch / "tables" / "user_topk").mkdir(parents=True)
    (scratch / "lake").symlink_to(root / "lake")
    t0 = time.perf_counter()
    path = build_copy(scratch, CopySpec("user_topk", 1, MODEL_VERSION, AS_OF), frame)
    seconds = time.perf_counter() - t0
    assert path is not None
    parquet = (root / "tables" / "user_topk" / "v1.parquet").stat().st_size
    result = {"seconds": seconds, "copy_mb": path.stat().st_size / 2**20}
    shutil.rmtree(scratch)
    return {**result, "parquet_mb": parquet / 2**20, "rows": float(frame.height)}


# ----------------------------------------------------------------------------- queries

Query = tuple[str, list[str]]
PATHS = ("indexed copy", "Parquet path")


def query_args(ids: dict[str, list[str]], titles_by_id: dict[str, str], n: int) -> list[Query]:
    """n (kind, argv) pairs: half users, half shows (id / title / misspelt title / fallback).
    A misspelt title loses its middle letter, so only the fuzzy matcher can find it."""
    rng = random.Random(SEED)
    out: list[Query] = []
    for i in range(n):
        if i % 2 == 0:
            out.append(("user", ["--user", rng.choice(ids["users"])]))
            continue
        kind = rng.choices(("show id", "show title", "show fuzzy", "show fallback"), (6, 2, 1, 1))[
            0
        ]
        show = rng.choice(ids["fallback"] if kind == "show fallback" else ids["shows"])
        title = titles_by_id[show]
        typo = title[: len(title) // 2] + title[len(title) // 2 + 1 :]
        out.append(
            (kind, ["--show", {"show title": title.lower(), "show fuzzy": typo}.get(kind, show)])
        )
    return out


def one_query(workdir: Path, kind: str, args: list[str]) -> float:
    """Milliseconds to answer one query in this process, through `run_query`."""
    sink = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = run_query(["-w", str(workdir), "-k", "10", "--json", *args])
    elapsed = (time.perf_counter() - t0) * 1e3
    if code != 0 and not (code == 2 and kind == "show fuzzy"):  # ambiguous is an answer
        raise SystemExit(f"{args} failed with {code}: {sink.getvalue()[-2000:]}")
    return elapsed


def in_process(
    workdirs: dict[str, Path], queries: list[Query]
) -> dict[str, dict[str, list[float]]]:
    """Milliseconds per query, by path and kind; each query runs on both paths in turn
    (alternating which goes first), so that both see the same load."""
    times: dict[str, dict[str, list[float]]] = {name: {} for name in workdirs}
    for i, (kind, args) in enumerate(queries):
        order = list(workdirs) if i % 2 == 0 else list(reversed(workdirs))
        for name in order:
            elapsed = one_query(workdirs[name], kind, args)
            times[name].setdefault(kind, []).append(elapsed)
    for per_kind in times.values():
        per_kind["all"] = [t for kind, v in per_kind.items() for t in v]
    return times


def tvrec_argv() -> list[str]:
    """The `tvrec` console script beside this interpreter, else on PATH, else its entry."""
    beside = Path(sys.executable).with_name("tvrec")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("tvrec")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from tvrec.jobs.cli import main; sys.exit(main())"]


# Runs one command and prints its wall time and peak RSS. Started once per measurement, so
# that the measured process is forked from this small interpreter: a child forked from the
# benchmark itself would report the benchmark's own resident pages as its peak.
SPAWNER = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"ms": (time.perf_counter() - t0) * 1e3, "rss": usage.ru_maxrss / 1024,
                  "code": proc.returncode, "stderr": err.decode()[-2000:]}))
"""


def run_fresh(argv: list[str]) -> tuple[float, float]:
    """(wall ms, peak RSS MiB) of one fresh process; raises if it fails."""
    spawned = subprocess.run(
        [sys.executable, "-c", SPAWNER, *argv], capture_output=True, text=True, check=True
    )
    report = json.loads(spawned.stdout)
    if report["code"] != 0:
        raise SystemExit(f"{argv} failed: {report['stderr']}")
    return report["ms"], report["rss"]


BARE = "bare"  # the floor: `python -c pass`, measured in every round beside the queries


def cold(
    workdirs: dict[str, Path], queries: dict[str, list[str]], runs: int
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """(ms, peak MiB) of fresh processes, by query and path: each round starts a bare
    interpreter, then every query on every path, so that all see the same load."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {BARE: {BARE: []}}
    out.update({q: {name: [] for name in workdirs} for q in queries})
    for _ in range(runs):
        out[BARE][BARE].append(run_fresh([sys.executable, "-c", "pass"]))
        for query, args in queries.items():
            for name, workdir in workdirs.items():
                argv = [*tvrec_argv(), "query", "-w", str(workdir), "-k", "10", "--json", *args]
                out[query][name].append(run_fresh(argv))
    return out


# ----------------------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores (load average {load}), Python {platform.python_version()}"
    )


def in_process_rows(times: dict[str, dict[str, list[float]]]) -> list[str]:
    new, old = (times[name] for name in PATHS)
    rows = []
    for kind in sorted(new, key=lambda k: (k == "all", k)):
        a, b = new[kind], old[kind]
        p50, p99 = (pct(a, q) for q in (0.5, 0.99))
        o50, o99 = (pct(b, q) for q in (0.5, 0.99))
        rows.append(
            f"| {kind} | {len(a)} | {p50:.2f} | {p99:.2f} | {o50:.1f} | {o99:.1f} | "
            f"{o50 / p50:.0f}x | {o99 / p99:.0f}x |"
        )
    return rows


def cold_rows(result: dict[str, Any]) -> list[str]:
    runs = result["cold"]
    bare = statistics.median(t for t, _ in runs[BARE][BARE])
    rows = [f"| bare `python -c pass` | {len(runs[BARE][BARE])} | {bare:.0f} | | 1.0 | | |"]
    for query, by_path in runs.items():
        if query == BARE:
            continue
        new, old = ([t for t, _ in by_path[name]] for name in PATHS)
        rss_new, rss_old = (statistics.median(m for _, m in by_path[name]) for name in PATHS)
        med_new, med_old = statistics.median(new), statistics.median(old)
        rows.append(
            f"| `tvrec query {query}` | {len(new)} | {med_new:.0f} | {med_old:.0f} | "
            f"{med_new / bare:.1f} | {med_old / bare:.1f} | {rss_new:.0f} / {rss_old:.0f} |"
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    cost = result["copy"]
    lines = [
        "## `tvrec query` latency: indexed copies (bench/bench_query.py)",
        "",
        f"Measured {result['date']} under contention (a shared machine: {result['machine']}; "
        "other engineers' jobs ran at the same time), so absolute times are indicative only; "
        "the ratios, measured in the same run with the two paths interleaved, are the robust "
        f"figures. Layout: {N_USERS:,} users x {K} recs, {N_SHOWS:,} shows, dim {DIM}; "
        "baseline = the same layout without copies (catalogue lookup + Parquet scan per query, "
        "what every query did before).",
        "",
        "In process (`run_query`, what `tvrec query` runs), milliseconds:",
        "",
        "| query | n | copy p50 | copy p99 | Parquet p50 | Parquet p99 "
        "| speed-up p50 | speed-up p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *in_process_rows(result["in_process"]),
        "",
        "Cold process (a fresh `tvrec query` per call, end to end), median milliseconds:",
        "",
        "| command | runs | copy | Parquet path | copy / bare python | Parquet / bare python "
        "| peak RSS MiB (copy / Parquet) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *cold_rows(result),
        "",
        f"Publishing pays for the copy: {cost['seconds']:.2f} s to build the `user_topk` copy "
        f"({cost['rows']:,.0f} rows; {cost['copy_mb']:.1f} MiB beside a "
        f"{cost['parquet_mb']:.1f} MiB Parquet file).",
    ]
    return "\n".join(lines)


def measure(workdir: Path, opts: argparse.Namespace) -> dict[str, Any]:
    ids = build_layout(workdir)
    workdirs = dict(
        zip(PATHS, (workdir, parquet_path_layout(workdir, workdir.parent / "pq")), strict=True)
    )
    shows = pl.read_parquet(workdir / "lake" / "shows.parquet")
    titles_by_id = dict(zip(shows["show_id"], shows["title"], strict=True))
    user, show = ids["users"][0], titles_by_id[ids["shows"][0]]
    queries = query_args(ids, titles_by_id, opts.queries)
    in_process(workdirs, queries[:40])  # warm-up: first imports, page cache
    return {
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "copy": copy_cost(workdir),
        "cold": cold(
            workdirs,
            {f"--user {user}": ["--user", user], f"--show '{show}'": ["--show", show]},
            opts.cold_runs,
        ),
        "in_process": in_process(workdirs, queries),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cold-runs", type=int, default=10)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--json", action="store_true", help="print the raw figures")
    ap.add_argument("--markdown", type=Path, help="also write the Markdown section here")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp) / "work", opts)
    text = markdown(result)
    if opts.markdown:
        opts.markdown.write_text(text + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2) if opts.json else text)


if __name__ == "__main__":
    main()
