"""Training time under OpenMP's ways of waiting, alone and beside other work.

tvrec sets GOMP_SPINCOUNT=3000 where OMP_WAIT_POLICY is unset (pipelines/__init__.py): torch's,
MKL's and FAISS's OpenMP threads spin about 30 us when a parallel region ends, then sleep.
OpenMP's own default spins up to ~3 ms, which is far slower on a shared machine: a spinning
thread holds a core the other process's threads are waiting for; OMP_WAIT_POLICY=PASSIVE
sleeps at once. Each model trains (as `tvrec train --stage <model>` does, default
hyper-parameters, torch's default threads) in its own child process under each way:

- alone: nothing else running;
- two at once: two trainings of the same model on two copies of the work directory;
- beside a busy core: one training while a pure-Python loop keeps one core busy.

A small synthetic world by default so that the slow cells stay minutes, not hours. Prints a
Markdown table of the training stage's seconds; `--json` the figures.

    python bench/bench_thread_waits.py [--models contrastive,meta] [--users 1500 --shows 500
        --events 60000] [--spincounts 3000,30000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench_train import CHILD, PREPARE

# the world of the given sizes; bench_train's PREPARE ingests it and builds its features
WORLD = r"""
import sys
from pathlib import Path
from tvrec.pipelines.synthetic import WorldConfig, write_world
users, shows, events = map(int, sys.argv[2:5])
write_world(Path(sys.argv[1]), WorldConfig(n_users=users, n_shows=shows, n_events=events))
"""
# the ways, as the child's first line: torch imported before tvrec (OpenMP's unset policy: spin
# up to ~3 ms, then sleep), tvrec's data layer first (it sets GOMP_SPINCOUNT=3000: ~30 us), or
# OMP_WAIT_POLICY=PASSIVE (sleep at once)
WAYS = {
    "spin (OpenMP's default)": "import torch\n",
    "spin 3,000 then sleep (tvrec's default)": "import tvrec.pipelines\n",
    "sleep (OMP_WAIT_POLICY=PASSIVE)": 'import os\nos.environ["OMP_WAIT_POLICY"] = "PASSIVE"\n',
}


def spin_ways(counts: str) -> dict[str, str]:
    """Ways that spin `GOMP_SPINCOUNT` times (about 100,000 a millisecond), then sleep."""
    first = 'import os\nos.environ["GOMP_SPINCOUNT"] = "{}"\nimport torch\n'
    return {f"spin {int(n):,} then sleep": first.format(int(n)) for n in counts.split(",") if n}


BUSY = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass"


class _Child:
    """A training child whose `first` line decides how OpenMP waits (none set outside); its
    progress bars go to a file (a full pipe would stall one of two children run at once)."""

    def __init__(self, work: Path, model: str, first: str) -> None:
        drop = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        args = [sys.executable, "-c", first + CHILD, str(work), model, "0"]
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (the child's, closed in seconds)
        self.proc = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True
        )

    def seconds(self) -> float:
        out, _ = self.proc.communicate()
        with self.log:
            self.log.seek(0)
            if self.proc.returncode:
                raise SystemExit(f"a training child failed:\n{self.log.read()[-3000:]}")
        return float(json.loads(out.strip().splitlines()[-1])["seconds"])


def measure(works: list[Path], model: str, first: str) -> dict[str, float]:
    """The training's seconds alone, two at once (their mean), and beside a busy core."""
    alone = _Child(works[0], model, first).seconds()
    pair = [_Child(w, model, first) for w in works]
    together = sum(p.seconds() for p in pair) / len(pair)
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        beside = _Child(works[0], model, first).seconds()
    finally:
        busy.kill()
        busy.wait()
    return {"alone": alone, "two at once": together, "beside a busy core": beside}


def run(models: list[str], users: int, shows: int, events: int, ways: dict[str, str]) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="tvrec-bench-waits-") as tmp:
        root = Path(tmp)
        world = root / "world"
        sizes = [str(users), str(shows), str(events)]
        subprocess.run([sys.executable, "-c", WORLD, str(world), *sizes], check=True)
        prepare = [sys.executable, "-c", PREPARE, tmp, str(world), "contract"]
        subprocess.run(prepare, check=True, capture_output=True)
        works = [root / "work", root / "work2"]
        shutil.copytree(works[0], works[1], symlinks=True)
        rows = []
        for model in models:
            for way, first in ways.items():
                rows.append({"model": model, "way": way, **measure(works, model, first)})
                print(json.dumps(rows[-1]), file=sys.stderr)
        return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | OpenMP threads waiting | alone s | two at once s | beside a busy core s |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['way']} | {r['alone']:.1f} | {r['two at once']:.1f} "
            f"| {r['beside a busy core']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="contrastive,meta")
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--shows", type=int, default=500)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument(
        "--spincounts", default="", help="comma-separated GOMP_SPINCOUNT values to try too"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ways = WAYS | spin_ways(args.spincounts)
    rows = run(args.models.split(","), args.users, args.shows, args.events, ways)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, python {platform.python_version()}, "
          f"{args.users:,} users, {args.shows:,} shows, {args.events:,} events")  # fmt: skip
    print(markdown(rows))


if __name__ == "__main__":
    main()
