"""Latency of `tvrec query` on a demo-size published layout (5,000 users x 50 recs, 1,500
shows, dim 65): cold-process start-to-answer, and in-process p50/p99 over many queries.

The layout is synthetic and written here exactly as the nightly job leaves it (lake, catalogue
tables `user_topk` / `show_similar`, FAISS index, model manifest); 5% of the shows have no
`show_similar` rows so that some show queries take the index fallback.

Cold runs use the `tvrec query` console command once it is wired into the CLI, otherwise
`python -c 'from tvrec.jobs.query import main_for_bench; ...'`. Prints a Markdown table.

    python bench/bench_query.py [--cold-runs 10] [--queries 1000] [--json]
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from tvrec.index import IndexConfig, make_show_index, save_index
from tvrec.jobs.catalog import Catalog
from tvrec.jobs.query import main_for_bench

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
    catalog.publish(
        "user_topk",
        user_frame.rename({"key": "user_id", "id": "show_id"}),
        model_version=MODEL_VERSION,
        as_of=AS_OF,
    )
    catalog.publish(
        "show_similar",
        similar.rename({"key": "show_id", "id": "similar_show_id"}),
        model_version=MODEL_VERSION,
        as_of=AS_OF,
    )
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


# ----------------------------------------------------------------------------- queries


def query_args(ids: dict[str, list[str]], titles_by_id: dict[str, str], n: int) -> list[tuple]:
    """n (kind, argv) pairs: half users, half shows (id / title / misspelt title / fallback)."""
    rng = random.Random(SEED)
    out: list[tuple[str, list[str]]] = []
    for i in range(n):
        if i % 2 == 0:
            out.append(("user", ["--user", rng.choice(ids["users"])]))
            continue
        kind = rng.choices(("show id", "show title", "show fuzzy", "show fallback"), (6, 2, 1, 1))
        show = rng.choice(ids["fallback"] if kind[0] == "show fallback" else ids["shows"])
        title = titles_by_id[show]
        arg = {"show title": title.lower(), "show fuzzy": title[:-1]}.get(kind[0], show)
        out.append((kind[0], ["--show", arg]))
    return out


def in_process(workdir: Path, queries: list[tuple[str, list[str]]]) -> dict[str, list[float]]:
    """Milliseconds per query, by kind, answering through the Typer command in this process."""
    times: dict[str, list[float]] = {}
    for kind, args in queries:
        sink = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            code = main_for_bench(["-w", str(workdir), "-k", "10", "--json", *args])
        elapsed = (time.perf_counter() - t0) * 1e3
        if code != 0 and not (code == 2 and kind == "show fuzzy"):  # ambiguous is an answer
            raise SystemExit(f"{args} failed with {code}: {sink.getvalue()[-2000:]}")
        times.setdefault(kind, []).append(elapsed)
    return times


def cold_command(use_cli: bool) -> Callable[[list[str]], list[str]]:
    if use_cli:
        exe = shutil.which("tvrec") or "tvrec"
        return lambda args: [exe, "query", *args]
    code = "import sys; from tvrec.jobs.query import main_for_bench; sys.exit(main_for_bench())"
    return lambda args: [sys.executable, "-c", code, *args]


def cli_has_query() -> bool:
    exe = shutil.which("tvrec")
    if exe is None:
        return False
    proc = subprocess.run([exe, "query", "--help"], capture_output=True, check=False)
    return proc.returncode == 0


def cold(
    workdir: Path, argv: Callable[[list[str]], list[str]], args: list[str], runs: int
) -> list[float]:
    """Wall milliseconds of `runs` fresh processes answering one query."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(
            argv(["-w", str(workdir), "-k", "10", "--json", *args]),
            capture_output=True,
            text=True,
            check=False,
        )
        out.append((time.perf_counter() - t0) * 1e3)
        if proc.returncode != 0:
            raise SystemExit(f"cold {args} failed: {proc.stderr[-2000:]}")
    return out


def python_startup(runs: int) -> list[float]:
    """The floor: a bare interpreter start, for comparison."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        out.append((time.perf_counter() - t0) * 1e3)
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
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def markdown(result: dict) -> str:
    lines = [
        f"`tvrec query` latency — {result['machine']}, {result['date']}",
        f"(layout: {N_USERS:,} users x {K} recs, {N_SHOWS:,} shows, dim {DIM}; "
        f"cold entry: {result['cold_entry']})",
        "",
        "| measure | queries | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in result["cold"].items():
        lines.append(
            f"| cold process, {name} | {len(values)} | {pct(values, 0.5):.0f} | "
            f"{pct(values, 0.99):.0f} | {max(values):.0f} |"
        )
    for name, values in result["in_process"].items():
        lines.append(
            f"| in process, {name} | {len(values)} | {pct(values, 0.5):.1f} | "
            f"{pct(values, 0.99):.1f} | {max(values):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cold-runs", type=int, default=10)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--json", action="store_true", help="print the raw figures")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "work"
        ids = build_layout(workdir)
        shows = pl.read_parquet(workdir / "lake" / "shows.parquet")
        titles_by_id = dict(zip(shows["show_id"], shows["title"], strict=True))
        use_cli = cli_has_query()
        argv = cold_command(use_cli)
        user, show, fallback = ids["users"][0], ids["shows"][0], ids["fallback"][0]
        result = {
            "machine": machine(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "cold_entry": "tvrec query" if use_cli else "python -c main_for_bench",
            "cold": {
                "bare `python -c pass`": python_startup(opts.cold_runs),
                "--user": cold(workdir, argv, ["--user", user], opts.cold_runs),
                "--show (title)": cold(
                    workdir, argv, ["--show", titles_by_id[show]], opts.cold_runs
                ),
                "--show (index fallback)": cold(
                    workdir, argv, ["--show", fallback], opts.cold_runs
                ),
            },
        }
        queries = query_args(ids, titles_by_id, opts.queries)
        in_process(workdir, queries[:20])  # warm-up: first imports, page cache
        per_kind = in_process(workdir, queries)
        per_kind["all"] = [t for values in per_kind.values() for t in values]
        result["in_process"] = per_kind
    print(json.dumps(result, indent=2) if opts.json else markdown(result))


if __name__ == "__main__":
    main()
