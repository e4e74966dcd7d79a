"""Nightly precompute throughput (users per second) on the demo world.

Builds the demo world once (generate, ingest, features, train — not timed), then times the
user top-k precompute (batched FAISS search with watched/unaired exclusions) several times,
against a baseline in the same process: exact numpy scoring of every user against every show
with the same exclusions. Prints a Markdown table; medians of --repeat runs.

    python bench/bench_precompute.py [--repeat 5] [--workdir DIR] [--k 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def prepare(workdir: Path) -> None:
    from tvrec.jobs.nightly import run_nightly
    from tvrec.pipelines.config import Settings
    from tvrec.pipelines.synthetic import WorldConfig, write_world

    if (workdir / "model").exists():
        return
    source = workdir / "sources" / "synthetic"
    write_world(source, WorldConfig())
    run_nightly(Settings.load(workdir), source, quiet=True)


def numpy_topk(
    users_vec: np.ndarray, shows_vec: np.ndarray, exclude: list[set[int]], k: int
) -> np.ndarray:
    """Baseline: exact scores (users, shows), excluded set to -inf, argpartition top-k."""
    scores = users_vec @ shows_vec.T  # (n_users, n_shows)
    for i, banned in enumerate(exclude):
        if banned:
            scores[i, list(banned)] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = args.workdir or Path(tmp.name) / "work"  # type: ignore[union-attr]
    prepare(workdir)

    from tvrec.jobs.recommend import _index, _not_premiered, _seen, _users, user_topk_table
    from tvrec.jobs.train import load_current_model
    from tvrec.pipelines.ingest import read_lake
    from tvrec.pipelines.workdir import Workdir

    wd = Workdir(workdir)
    model = load_current_model(wd)
    lake = read_lake(wd)
    as_of = datetime.fromisoformat(model.manifest.as_of)  # type: ignore[union-attr]
    ids, vectors = model.show_embeddings()
    upcoming = _not_premiered(lake.shows, ids, as_of.date())
    index = _index(vectors, ids, model.manifest, "dot")
    users = _users(lake.events, lake.users, as_of)
    exclude = [s | upcoming for s in _seen(lake.events, users, ids, as_of)]

    faiss_s, numpy_s = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        user_topk_table(model, index, users, exclude, args.k)
        faiss_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        uvec = model.user_embeddings(users)
        numpy_topk(uvec, vectors, exclude, args.k)
        numpy_s.append(time.perf_counter() - t0)
    f, n = statistics.median(faiss_s), statistics.median(numpy_s)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"date {datetime.now(UTC):%Y-%m-%d}; {len(users):,} users x {len(ids):,} shows, "
        f"k={args.k}, backend {index.index.backend_name}; median of {args.repeat}\n"
    )
    print("| precompute (users → top-k) | median s | users / s | ratio vs numpy |")
    print("|---|---:|---:|---:|")
    print(
        f"| tvrec (user tower + FAISS search + exclusions) | {f:.2f} | {len(users) / f:,.0f} "
        f"| {n / f:.2f}x |"
    )
    print(
        f"| baseline: numpy exact scores + argpartition | {n:.2f} | {len(users) / n:,.0f} | 1.00x |"
    )


if __name__ == "__main__":
    main()
