"""Does the ensemble's margin over the best peer transfer to data it was not tuned on?

The issue's quality bar (NDCG@10 ≥ 1.05 × the best peer) is checked on MovieLens-100k and the
anime data, and a private set is run against main. This script derives public sets of another
shape from `../shared/datasets` into a scratch directory (never into the project), runs
`tvrec evaluate --models meta,ensemble` on each (its own split, peers tuned on a validation
window inside the training part) with a few fusion seeds, and prints the ensemble's NDCG@10
against the best peer's:

- `ml-pos`: MovieLens-100k with only the ratings of 4 and 5 as events (55,375 of 100,000; a
  timed log of likes, temporal split, RecentPop the peer to beat);
- `anime-1k`: 1,000 of the anime data's 5,000 users (seeded draw; 109,200 events over a
  7,390-show catalogue: few events per show, random split);
- `ml-500`: MovieLens-100k's first 500 users (by id), every rating (a smaller timed log).

    python bench/bench_transfer.py [--sets ml-pos,anime-1k,ml-500] [--seeds 0,1,2]
        [--settings TOML] [--scratch DIR] [--json]

`--settings` names a tvrec.toml whose settings every run gets too (the fusion's seed is
added to its `[models.ensemble]` table), to measure settings other than the defaults.

Each evaluation runs in its own `tvrec` process, one at a time (about 3 minutes for a
MovieLens set and 8 for anime-1k on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
ENTRY = "import sys; from tvrec.jobs.cli import main; sys.argv[0] = 'tvrec'; main()"
PEERS = ("MostPop", "RecentPop", "ItemKNN", "EASE", "ALS")
TABLE_HEAD = (
    "| set | test users | best peer | peer NDCG@10 | ensemble NDCG@10 by seed | median ratio |\n"
    "| --- | ---: | --- | ---: | --- | ---: |"
)


def _tsv_rows(path: Path) -> tuple[str, list[list[str]]]:
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    return header, [r.split("\t") for r in rows if r]


def ml_pos(out: Path) -> str:
    """MovieLens-100k, ratings of 4 and 5 only."""
    src = DATASETS / "movielens-100k"
    for name in ("u.item", "u.user", "u.genre"):
        shutil.copy(src / name, out / name)
    rows = [r for r in (src / "u.data").read_text().splitlines() if int(r.split("\t")[2]) >= 4]
    (out / "u.data").write_text("\n".join(rows) + "\n")
    return "movielens-100k"


def ml_500(out: Path) -> str:
    """MovieLens-100k, users 1-500, every rating."""
    src = DATASETS / "movielens-100k"
    for name in ("u.item", "u.user", "u.genre"):
        shutil.copy(src / name, out / name)
    rows = [r for r in (src / "u.data").read_text().splitlines() if int(r.split("\t")[0]) <= 500]
    (out / "u.data").write_text("\n".join(rows) + "\n")
    return "movielens-100k"


def anime_1k(out: Path) -> str:
    """The anime data, 1,000 users drawn with seed 7."""
    src = DATASETS / "anime-caserec-5k-users"
    header, history = _tsv_rows(src / "anime_history.dat")
    users = sorted({int(r[0]) for r in history})
    random.seed(7)
    keep = {str(u) for u in random.sample(users, 1000)}
    for name in ("anime_history.dat", "anime_ratings.dat"):
        header, rows = _tsv_rows(src / name)
        kept = ["\t".join(r) for r in rows if r[0] in keep]
        (out / name).write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
    shutil.copy(src / "anime_info.dat", out / "anime_info.dat")
    return "anime"


SETS: dict[str, Callable[[Path], str]] = {"ml-pos": ml_pos, "anime-1k": anime_1k, "ml-500": ml_500}


def settings_with_seed(settings: str, seed: int) -> str:
    """`settings` (tvrec.toml text) with the fusion's seed in its `[models.ensemble]` table."""
    lines, head = settings.splitlines(), "[models.ensemble]"
    if head not in (line.strip() for line in lines):
        return f"{head}\nseed = {seed}\n\n{settings}"
    at = next(i for i, line in enumerate(lines) if line.strip() == head)
    return "\n".join([*lines[: at + 1], f"seed = {seed}", *lines[at + 1 :]]) + "\n"


def evaluate(data: Path, fmt: str, work: Path, seed: int, settings: str = "") -> dict:
    """One `tvrec evaluate --models meta,ensemble` with the fusion's seed (and `settings`,
    tvrec.toml text); its report.json."""
    work.mkdir(parents=True)
    (work / "tvrec.toml").write_text(settings_with_seed(settings, seed))
    out = work / "report"
    cmd = [sys.executable, "-c", ENTRY, "evaluate", "--data", str(data), "-f", fmt]
    cmd += ["--models", "meta,ensemble", "-w", str(work), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd[3:])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads((out / "report.json").read_text())


def figures(report: dict) -> dict:
    """The ensemble's NDCG@10 and HR@10 against the best peer's."""
    rows = {m["model"]: m for m in report["models"]}
    best = max((p for p in PEERS if p in rows), key=lambda p: rows[p]["ndcg@10"])
    ens = rows["tvrec (ensemble)"]
    return {
        "users": ens["users"],
        "ensemble": round(ens["ndcg@10"], 4),
        "ensemble_ci95": [round(x, 4) for x in ens["ndcg@10_ci95"]],
        "ensemble_hr": round(ens["hr@10"], 4),
        "best_peer": best,
        "peer": round(rows[best]["ndcg@10"], 4),
        "peer_hr": round(rows[best]["hr@10"], 4),
        "ratio": round(ens["ndcg@10"] / rows[best]["ndcg@10"], 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--settings", type=Path, default=None, help="a tvrec.toml every run gets")
    p.add_argument("--scratch", type=Path, default=None, help="kept; default: a temp dir")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.settings and not args.settings.is_file():
        sys.exit(f"--settings: {args.settings} not found")
    settings = args.settings.read_text(encoding="utf-8") if args.settings else ""
    try:
        given = tomllib.loads(settings)
    except tomllib.TOMLDecodeError as exc:
        sys.exit(f"--settings: {args.settings}: {exc}")
    if "seed" in given.get("models", {}).get("ensemble", {}):
        sys.exit(f"--settings: {args.settings} sets [models.ensemble] seed; --seeds sets it")
    names = args.sets.split(",")
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        sys.exit(f"unknown sets {unknown}; choose from {', '.join(SETS)}")
    if not DATASETS.is_dir():
        sys.exit(f"{DATASETS} not found")
    seeds = [int(s) for s in args.seeds.split(",")]
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="tvrec-transfer-"))
    results: dict[str, list[dict]] = {}
    for name in names:
        data = scratch / name / "data"
        data.mkdir(parents=True, exist_ok=True)
        fmt = SETS[name](data)
        for seed in seeds:
            t0 = time.perf_counter()
            report = evaluate(data, fmt, scratch / name / f"seed{seed}", seed, settings)
            fig = figures(report)
            fig |= {"seed": seed, "minutes": round((time.perf_counter() - t0) / 60, 1)}
            results.setdefault(name, []).append(fig)
            print(f"{name} seed {seed}: {fig}", file=sys.stderr, flush=True)
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(TABLE_HEAD)
    for name, runs in results.items():
        by_seed = ", ".join(f"{r['ensemble']:.3f}" for r in runs)
        ratio = statistics.median(r["ratio"] for r in runs)
        print(
            f"| {name} | {runs[0]['users']} | {runs[0]['best_peer']} | {runs[0]['peer']:.3f} "
            f"| {by_seed} | {ratio:.3f}× |"
        )


if __name__ == "__main__":
    main()
