"""MLTA's continual learning: what a warm start saves in time and changes in quality.

Two nights on one dataset's few-shot split (`tvrec evaluate --few-shot`'s: users held out of
training, served from their first 5 events): night 1 trains MLTA on the events before
`--gap-days` days before the cut (or, on an untimed log, on a seeded 90% of them); night 2
trains on all training events twice, from scratch (cold) and from night 1's model (warm:
`warm_epochs`, replaying its episodic memory). Prints fit seconds and few-shot NDCG@10 of both
night-2 models (median of `--repeats` fits), and their ratio; `--json` the figures.

    python bench/bench_meta_warm.py --data ../shared/datasets/movielens-100k \
        --format movielens-100k --few-shot 150
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch

from tvrec.jobs.evaluation.metrics import MetricConfig, evaluate_topk
from tvrec.jobs.evaluation.pipeline import SplitPipeline, few_shot_topk
from tvrec.jobs.evaluation.splitting import few_shot, split
from tvrec.jobs.train import training_data
from tvrec.models.meta import MetaModel
from tvrec.models.runtime import Runtime
from tvrec.pipelines.adapters import load_raw
from tvrec.pipelines.config import Settings
from tvrec.pipelines.contract import canonicalize
from tvrec.pipelines.model_inputs import MemberInputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--format", default="contract")
    ap.add_argument("--few-shot", type=int, default=150)
    ap.add_argument("--gap-days", type=int, default=30, help="night 1 is this long before")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--warm-epochs", type=int, default=None, help="default: the model's")
    ap.add_argument("--warm-lr", type=float, default=None, help="default: the model's")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    ds = canonicalize(load_raw(args.data, args.format))
    sp = split(ds, seed=42)
    few = few_shot(sp, args.few_shot, seed=42)
    main_split = few.held_out(sp)
    with tempfile.TemporaryDirectory(prefix="bench-meta-") as tmp:
        pipeline = SplitPipeline(ds, Settings(workdir=Path(tmp) / "s"), Path(tmp))
        pipeline._build(main_split)
        data = dataclasses.replace(training_data(pipeline.wd, MetaModel), checkpoint_dir=None)
        night1 = _night_one(data, args.gap_days)
        first = MetaModel.create(Runtime.cpu())
        first.fit(night1)
        metric = MetricConfig(k=10, bootstrap=200)

        def run(warm: bool) -> tuple[float, float]:
            over = {"warm_epochs": args.warm_epochs} if args.warm_epochs else {}
            over |= {"warm_lr": args.warm_lr} if args.warm_lr else {}
            model = MetaModel.create(Runtime.cpu(), over | {"warm_start": warm})
            given = {"meta": MemberInputs(None, {}, first)} if warm else {}
            start = time.perf_counter()
            model.fit(dataclasses.replace(data, members=given))
            seconds = time.perf_counter() - start
            topk = few_shot_topk(model, few, 10)
            assert topk is not None
            return seconds, evaluate_topk(topk, few.scored(main_split), metric).ndcg

        cold = [run(False) for _ in range(args.repeats)]
        warm = [run(True) for _ in range(args.repeats)]
    figures = {
        "dataset": ds.name,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "date": datetime.now(UTC).date().isoformat(),
        "few_shot_users": len(few.users),
        "cold_fit_s": round(statistics.median(s for s, _ in cold), 1),
        "warm_fit_s": round(statistics.median(s for s, _ in warm), 1),
        "cold_ndcg": round(statistics.median(n for _, n in cold), 4),
        "warm_ndcg": round(statistics.median(n for _, n in warm), 4),
    }
    figures["time_ratio"] = round(figures["warm_fit_s"] / figures["cold_fit_s"], 3)
    if args.json:
        print(json.dumps(figures))
        return
    print("| dataset | cold fit s | warm fit s | warm / cold | cold NDCG@10 | warm NDCG@10 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    f = figures
    print(f"| {f['dataset']} | {f['cold_fit_s']} | {f['warm_fit_s']} | {f['time_ratio']} | "
          f"{f['cold_ndcg']} | {f['warm_ndcg']} |")  # fmt: skip


def _night_one(data, gap_days: int):  # type: ignore[no-untyped-def]
    """The training data of the night before: events before `gap_days` before the as-of
    (untimed: a seeded 90% of them), as of then."""
    frame = data.frame
    times = frame["event_timestamp"]
    if times.nunique() > 1:
        as_of = data.as_of - timedelta(days=gap_days)
        keep = (times < as_of).to_numpy()
    else:
        as_of = data.as_of
        keep = np.random.default_rng(0).random(len(frame)) < 0.9
    at = as_of if isinstance(as_of, datetime) else data.as_of
    return dataclasses.replace(data, frame=frame[keep].reset_index(drop=True), as_of=at)


if __name__ == "__main__":
    main()
