"""The 10x synthetic world through ingest, features and the training set of every model's
FeatureService, with wall time and peak RSS per stage (one child process, sampled per stage).

    python bench/bench_scale.py [--users 50000 --shows 15000 --events 3000000] [--json]

A benchmark, not a test: it prints a Markdown table of stages (seconds, peak RSS MiB) and the
training-set rows of each FeatureService.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime

SERVICES = (
    "collaborative_v1", "multimodal_v1", "contrastive_v1", "graph_v1", "temporal_v1",
    "meta_v1", "ensemble_v1",
)  # fmt: skip

CHILD = r"""
import json, sys
from pathlib import Path
from tvrec.pipelines.config import Settings
from tvrec.pipelines.ingest import ingest
from tvrec.pipelines.build import build_features
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.synthetic import WorldConfig, write_world
from tvrec.pipelines.training import training_set_parts
from tvrec.pipelines.workdir import Workdir
import pyarrow.parquet as pq
users, shows, events, root = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
services = sys.argv[5].split(",")
log = StageLog(quiet=True)
with log.stage("generate world"):
    write_world(root / "world", WorldConfig(n_users=users, n_shows=shows, n_events=events))
wd = Workdir(root / "work")
with log.stage("ingest"):
    ingest(root / "world", "contract", wd)
build = build_features(wd, Settings.load(wd.root), log=log)
rows = {}
for service in services:
    with log.stage(f"training set {service}"):
        parts = training_set_parts(wd, service, root / "training" / service, negatives=0)
    rows[service] = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
print(json.dumps({"seconds": log.seconds, "peak_rss_mb": log.peak_rss_mb,
                  "feature_rows": build.rows, "training_rows": rows}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--shows", type=int, default=15_000)
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--services", default=",".join(SERVICES))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        argv = [str(args.users), str(args.shows), str(args.events), tmp, args.services]
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=False
        )
    if proc.returncode != 0:
        raise SystemExit(f"failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; date {datetime.now(UTC):%Y-%m-%d};"
        f" world: {args.users:,} users, {args.shows:,} shows, {args.events:,} events\n"
    )
    print("| stage | seconds | peak RSS (MiB) |\n|---|---:|---:|")
    for name, secs in result["seconds"].items():
        print(f"| {name} | {secs:.1f} | {result['peak_rss_mb'][name]:,.0f} |")
    print("\n| feature table | rows |\n|---|---:|")
    for name, n in result["feature_rows"].items():
        print(f"| {name} | {n:,} |")
    print("\n| training set | rows |\n|---|---:|")
    for name, n in result["training_rows"].items():
        print(f"| {name} | {n:,} |")


if __name__ == "__main__":
    main()
