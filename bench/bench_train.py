"""Training time of each model on the demo world (5,000 users, 1,500 shows, 300,000 events)
or a real dataset (`--data DIR --format F`), CPU profile, default hyper-parameters, as
`tvrec train --stage <model>` runs it.

The world is generated (or the dataset ingested) and its features built once; then each model
trains in its own child process (its own peak RSS), with torch's default intra-op threads and
with one thread, so the thread setting can be judged on this machine. Prints a Markdown table;
`--json` the figures.

    python bench/bench_train.py [--models collaborative,contrastive,multimodal] [--threads 0,1]
    python bench/bench_train.py --models temporal,graph --threads 0 \
        --data ../shared/datasets/anime-caserec-5k-users --format anime
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

PREPARE = r"""
import sys
from pathlib import Path
from tvrec.pipelines.build import build_features
from tvrec.pipelines.config import Settings
from tvrec.pipelines.ingest import ingest
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.synthetic import WorldConfig, write_world
from tvrec.pipelines.workdir import Workdir
root, data, fmt = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if not data:
    data = str(root / "world")
    write_world(root / "world", WorldConfig())
wd = Workdir(root / "work")
ingest(Path(data), fmt, wd)
build_features(wd, Settings.load(wd.root), log=StageLog(quiet=True))
"""

CHILD = r"""
import json, resource, shutil, sys, time
import torch
from pathlib import Path
from tvrec.jobs.train import train_stage
from tvrec.pipelines.config import Settings
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.workdir import Workdir
work, model, threads = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
settings = Settings.load(work)
if threads:  # as hardware.threads in tvrec.toml would
    hardware = settings.hardware.model_copy(update={"threads": threads})
    settings = settings.model_copy(update={"hardware": hardware})
shutil.rmtree(work / "checkpoints", ignore_errors=True)  # no resume: a full run each time
log = StageLog(quiet=True)
t0 = time.perf_counter()
manifest = train_stage(Workdir(work), settings, model, log=log)
seconds = time.perf_counter() - t0
threads = manifest.metrics.get("torch_threads", threads)
final = {k: v[-1] for k, v in manifest.metrics.items() if isinstance(v, list) and v}
print(json.dumps({"seconds": seconds, "stages": log.seconds, "threads": threads,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "final": final}))
"""


def run(models: list[str], threads: list[int], data: str = "", fmt: str = "contract") -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="tvrec-bench-train-") as tmp:
        prepare = [sys.executable, "-c", PREPARE, tmp, data, fmt]
        subprocess.run(prepare, check=True, capture_output=True)
        rows = []
        for model in models:
            for n in threads:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(Path(tmp) / "work"), model, str(n)],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                rows.append({"model": model, **json.loads(out.stdout.strip().splitlines()[-1])})
                print(f"{model} threads={rows[-1]['threads']}: {rows[-1]['seconds']:.1f} s",
                      file=sys.stderr)  # fmt: skip
        return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | torch threads | train stage s | fit s | peak RSS (MiB) | final train loss |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        fit = next((v for k, v in r["stages"].items() if k.startswith("train ")), float("nan"))
        loss = r["final"].get("train_loss", float("nan"))
        lines.append(
            f"| {r['model']} | {r['threads']} | {r['seconds']:.1f} | {fit:.1f} "
            f"| {r['peak_rss_mib']:.0f} | {loss:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="collaborative,contrastive,multimodal")
    parser.add_argument(
        "--threads",
        default="0,1",
        help="0 = torch's default",
    )
    parser.add_argument("--data", default="", help="a dataset directory (default: demo world)")
    parser.add_argument("--format", default="contract", help="the dataset's format")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = str(Path(args.data).resolve()) if args.data else ""
    rows = run(args.models.split(","), [int(t) for t in args.threads.split(",")], data, args.format)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}, {args.data or 'demo world'}")  # fmt: skip
    print(markdown(rows))


if __name__ == "__main__":
    main()
