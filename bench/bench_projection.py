"""The nightly job (`tvrec run`, default models) at 1x, 3x and 10x the demo world: each stage's
wall time and peak RSS, from the run record, for docs/scale-out.md's projection.

    python bench/bench_projection.py [--scales 1,3,10] [--epochs N] [--json] [--keep DIR]

Scale s: s * 5,000 users, s * 1,500 shows, s * 300,000 events (the demo world's seed). Each
scale runs in its own fresh work directory and its own `tvrec run` process, one after the
other. A benchmark, not a test: it prints a Markdown table per scale and the stages ranked by
how their time grew from the smallest scale to the largest.

`--epochs N` caps every trainer at N epochs (the work directory's tvrec.toml), so that a big
scale fits in an afternoon; each train stage is then also projected to the default epochs from
its own measured epochs: stage seconds + the median epoch's seconds × the epochs not run, for
every trainer the stage ran (the run record's `*epoch_seconds` curves). Every epoch runs the
same plan, so that extrapolation is over epochs only, never over data size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

DEMO = {"users": 5_000, "shows": 1_500, "events": 300_000}


def default_epochs() -> dict[str, dict[str, int]]:
    """Each train stage's curves of epoch seconds -> the default epochs of their trainer."""
    from tvrec.models.ensemble import EnsembleConfig
    from tvrec.models.multimodal import MultimodalConfig
    from tvrec.models.temporal import TemporalConfig

    temporal = TemporalConfig()
    fits = {"epoch_seconds": temporal.epochs, "seasonal_epoch_seconds": temporal.seasonal_epochs}
    return {
        "multimodal": {"epoch_seconds": MultimodalConfig().epochs},
        "temporal": fits,
        # its own fusion, and the temporal member trained again before the window
        "ensemble": {"epoch_seconds": EnsembleConfig().epochs}
        | {f"temporal_{k}": v for k, v in fits.items()},
    }


def capped_config(epochs: int) -> str:
    """A tvrec.toml capping every trainer of the default models at `epochs`."""
    from tvrec.models.temporal import TemporalConfig

    seasonal = min(epochs, TemporalConfig().seasonal_epochs)
    return (
        f"[models.multimodal]\nepochs = {epochs}\n"
        f"[models.temporal]\nepochs = {epochs}\nseasonal_epochs = {seasonal}\n"
        f"[models.ensemble]\nepochs = {epochs}\n"
    )


def projected(record: dict) -> dict[str, float]:
    """Each train stage's seconds at the default epochs, from its measured epochs."""
    out = {}
    for model, trainers in default_epochs().items():
        curves = record["metrics"].get(model, {}).get("curves", {})
        stage = f"train {model}"
        if stage not in record["stages"]:
            continue
        extra = 0.0
        for key, epochs in trainers.items():
            times = sorted(curves.get(key, []))
            if times:
                extra += times[len(times) // 2] * max(epochs - len(times), 0)
        out[stage] = record["stages"][stage] + extra
    return out


def run_scale(scale: int, root: Path, epochs: int | None) -> dict:
    """Generate the world at `scale`, run the nightly job on it; the run record plus wall time."""
    from tvrec.pipelines.synthetic import WorldConfig, write_world

    world = root / f"world-{scale}x"
    size = {k: v * scale for k, v in DEMO.items()}
    write_world(world, WorldConfig(n_users=size["users"], n_shows=size["shows"],
                                   n_events=size["events"], seed=7))  # fmt: skip
    tvrec = str(Path(sys.executable).parent / "tvrec")
    work = root / f"work-{scale}x"
    if epochs is not None:
        work.mkdir(parents=True, exist_ok=True)
        (work / "tvrec.toml").write_text(capped_config(epochs))
    t0 = time.perf_counter()
    out = subprocess.run(
        [tvrec, "run", "--data", str(world), "--workdir", str(work), "--json"],
        capture_output=True, text=True, env=os.environ | {"TQDM_DISABLE": "1"},
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{scale}x failed ({out.returncode}): {out.stderr[-3000:]}")
    record = json.loads(out.stdout)
    result = {"scale": scale, "size": size, "wall_seconds": wall, "record": record}
    if epochs is not None:
        result |= {"epochs": epochs, "projected_stages": projected(record)}
    return result


def table(result: dict) -> str:
    record = result["record"]
    peaks = record["metrics"].get("stage_peak_rss_mb", {})
    full = result.get("projected_stages")
    capped = f" (every trainer capped at {result['epochs']} epochs)" if full else ""
    lines = [
        f"#### {result['scale']}x: {result['size']['users']:,} users, "
        f"{result['size']['shows']:,} shows, {result['size']['events']:,} events{capped}",
        "",
        "| stage | seconds | peak RSS (MiB) |" + (" default epochs (s) |" if full else ""),
        "|---|---:|---:|" + ("---:|" if full else ""),
    ]
    for stage, seconds in record["stages"].items():
        row = f"| {stage} | {seconds:.1f} | {peaks.get(stage, 0):,.0f} |"
        if full:
            row += f" {full.get(stage, seconds):.1f} |"
        lines.append(row)
    total_peak = max(peaks.values(), default=0)
    wall = result["wall_seconds"]
    row = f"| **whole run (wall)** | **{wall:.1f}** | **{total_peak:,.0f}** |"
    if full:
        row += f" **{wall + sum(full.values()) - sum(record['stages'][s] for s in full):.1f}** |"
    lines.append(row)
    return "\n".join(lines)


def growth(results: list[dict]) -> list[tuple[str, float, float, float]]:
    """(stage, seconds at the smallest scale, at the largest, ratio), fastest-growing first."""

    def stages(result: dict) -> dict[str, float]:  # at the default epochs where projected
        return result["record"]["stages"] | result.get("projected_stages", {})

    first, last = stages(results[0]), stages(results[-1])
    rows = [(s, first[s], last[s], last[s] / max(first[s], 1e-3)) for s in last if s in first]
    return sorted(rows, key=lambda r: -(r[2] - r[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", default="1,3,10")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", type=Path, default=None, help="keep the work directories here")
    ap.add_argument("--epochs", type=int, default=None, help="cap every trainer's epochs")
    args = ap.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    with tempfile.TemporaryDirectory(prefix="tvrec-projection-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        results = []
        for scale in scales:
            results.append(run_scale(scale, root, args.epochs))
            print(f"{scale}x done in {results[-1]['wall_seconds']:.0f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores\n")  # fmt: skip
    for result in results:
        print(table(result) + "\n")
    print(f"| stage | {scales[0]}x s | {scales[-1]}x s | ratio |\n|---|---:|---:|---:|")
    for stage, a, b, ratio in growth(results):
        print(f"| {stage} | {a:.1f} | {b:.1f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
