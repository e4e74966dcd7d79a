"""Wall time and peak memory of ingest + features build, on the demo world and the anime set.

Each dataset runs in its own child process, which reports its own peak RSS (getrusage), so
the figure belongs to that run alone. Prints a Markdown table; `--json` prints the raw figures.

    python bench/bench_features.py [--datasets demo,anime] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from tvrec.pipelines.config import Settings
from tvrec.pipelines.ingest import ingest
from tvrec.pipelines.build import build_features
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.workdir import Workdir
src, fmt, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
if fmt == "synthetic":
    from tvrec.pipelines.synthetic import WorldConfig, write_world
    t0 = time.perf_counter(); write_world(Path(src), WorldConfig()); gen = time.perf_counter() - t0
    fmt = "contract"
else:
    gen = 0.0
wd = Workdir(work)
log = StageLog(quiet=True)
t0 = time.perf_counter()
with log.stage("ingest"):
    summary = ingest(Path(src), fmt, wd)
build = build_features(wd, Settings.load(wd.root), log=log)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
print(json.dumps({"generate_s": gen, "ingest_features_s": time.perf_counter() - t0,
                  "peak_rss_mib": peak,
                  "stages": log.seconds, "rows": summary.rows, "feature_rows": build.rows}))
"""

DATASETS = {
    "demo": ("synthetic", None),
    "anime": ("anime", SHARED / "anime-caserec-5k-users"),
    "movielens-100k": ("movielens-100k", SHARED / "movielens-100k"),
}


def run_one(name: str) -> dict:
    """One cold run (fresh work directory, so text embeddings are encoded too)."""
    fmt, src = DATASETS[name]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        source = str(src) if src else str(Path(tmp) / "world")
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, source, fmt, str(work)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="demo,anime")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = {}
    for name in args.datasets.split(","):
        runs = [run_one(name) for _ in range(args.repeat)]
        rows[name] = {
            "median_s": statistics.median(r["ingest_features_s"] for r in runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "runs": runs,
        }
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"date {datetime.now(UTC):%Y-%m-%d}; runs per dataset: {args.repeat}\n"
    )
    print(
        "| dataset | events | shows | ingest + features (median s) | peak RSS (MiB) "
        "| slowest stages |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name, r in rows.items():
        last = r["runs"][-1]
        stages = sorted(last["stages"].items(), key=lambda kv: -kv[1])[:3]
        st = ", ".join(f"{k} {v:.1f}s" for k, v in stages)
        print(
            f"| {name} | {last['rows']['events']:,} | {last['rows']['shows']:,} | "
            f"{r['median_s']:.1f} | {r['peak_rss_mib']:.0f} | {st} |"
        )


if __name__ == "__main__":
    main()
