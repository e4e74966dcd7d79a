"""Fault injection: nightly runs on MovieLens-100k killed (SIGKILL) at random moments.

Each round starts `tvrec run`, kills it after a random delay drawn uniformly over a clean
run's wall time, asks `tvrec query --user` (serving is down if it fails or answers
nothing), then does a clean run, which must succeed and leave no temp
file behind. Prints one line per round and a summary; `--json` writes the summary as JSON.

    python bench/bench_faults.py [--rounds 50] [--epochs 5] [--seed 0] [--json OUT] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "movielens-100k"
ENTRY = "import sys; from tvrec.jobs.cli import main; sys.argv[0] = 'tvrec'; main()"


def tvrec(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(work: Path) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    proc = tvrec("run", "--data", str(DATA), "-f", "movielens-100k", "-w", str(work), "-k", "10")
    _, err = proc.communicate()
    return proc.returncode, time.perf_counter() - t0, err[-2000:]


def query(work: Path, user: str) -> tuple[int, dict | None]:
    proc = tvrec("query", "--user", user, "-w", str(work), "--json")
    out, _ = proc.communicate()
    return proc.returncode, json.loads(out) if proc.returncode == 0 else None


def current_release(work: Path) -> str | None:
    link = work / "release"
    return link.resolve().name if link.is_symlink() else None


def temp_files(work: Path) -> list[str]:
    return [str(p) for p in work.rglob(".*") if ".tmp" in p.name or ".link-" in p.name]


def round_(work: Path, user: str, clean_s: float, rng: random.Random) -> dict:
    before = current_release(work)
    delay = rng.uniform(0, clean_s)
    proc = tvrec("run", "--data", str(DATA), "-f", "movielens-100k", "-w", str(work), "-k", "10")
    time.sleep(delay)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    code, answer = query(work, user)
    after = current_release(work)
    down = code != 0 or answer is None or not answer["results"]
    run_code, _, err = run(work)
    q_code, _ = query(work, user)
    return {
        "delay_s": round(delay, 2),
        "killed_mid_run": killed,
        "release_moved": after != before,  # killed after its switch: the new one serves
        "serving_down": down,
        "clean_run_ok": run_code == 0 and q_code == 0,
        "temp_files_after_clean_run": len(temp_files(work)),
        "error": "" if run_code == 0 else err,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--epochs", type=int, default=5, help="collaborative epochs per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--data", type=Path, default=None, help="the MovieLens-100k directory")
    args = p.parse_args()
    global DATA
    DATA = args.data or DATA
    if not DATA.is_dir():
        print(f"MovieLens-100k not found at {DATA}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tvrec-faults-")) / "work"
    work.mkdir()
    (work / "tvrec.toml").write_text(f"[models.collaborative]\nepochs = {args.epochs}\n")
    code, first_s, err = run(work)  # release 1 (and the text cache)
    if code != 0:
        print(err, file=sys.stderr)
        return 1
    code, clean_s, err = run(work)  # a warm run's wall time: the range of kill delays
    user = "1"
    print(f"clean run {clean_s:.1f} s (first {first_s:.1f} s); {args.rounds} rounds")
    rng = random.Random(args.seed)
    rounds = []
    for i in range(1, args.rounds + 1):
        r = round_(work, user, clean_s, rng)
        rounds.append(r)
        print(f"{i:3d} kill at {r['delay_s']:5.1f}s mid-run={r['killed_mid_run']!s:5} "
              f"down={r['serving_down']!s:5} clean-run-ok={r['clean_run_ok']!s:5} "
              f"temp={r['temp_files_after_clean_run']}", flush=True)  # fmt: skip
    summary = {
        "rounds": len(rounds),
        "killed_mid_run": sum(r["killed_mid_run"] for r in rounds),
        "serving_down": sum(r["serving_down"] for r in rounds),
        "clean_runs_failed": sum(not r["clean_run_ok"] for r in rounds),
        "temp_files_after_clean_runs": sum(r["temp_files_after_clean_run"] for r in rounds),
        "clean_run_s": round(clean_s, 1),
        "releases_kept": len(list((work / ".releases").glob("r*"))),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2))
    shutil.rmtree(work.parent, ignore_errors=True)
    return 0 if summary["serving_down"] == 0 and summary["clean_runs_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
