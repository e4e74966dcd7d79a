"""`tvrec evaluate`: tvrec's own nightly pipeline and its peers, scored on the same split.

tvrec is evaluated as it runs in production: the split's training events are published as a
lake, features are built as of the split's cutoff, the model trains from its Feast training
set, and the nightly precompute publishes a top-k table. That published table is scored by the
same code as the peers (most-popular, item-kNN, EASE, ALS).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from tvrec.jobs.catalog import Catalog
from tvrec.jobs.evaluation import (
    EvaluationReport,
    Metrics,
    Split,
    evaluate_topk,
    run_peer_evaluation,
    split,
    write_report,
)
from tvrec.pipelines.config import Settings
from tvrec.pipelines.contract import EVENTS_SCHEMA, Dataset
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.workdir import Workdir


class SplitPipeline:
    """tvrec's nightly pipeline on one split's training part, in a private work directory.

    The lake and features are built once, as of the split's cutoff, the first time a model asks;
    each model then trains from its Feast training set and the precompute publishes its top-k.
    """

    def __init__(self, ds: Dataset, settings: Settings, root: Path, quiet: bool = True) -> None:
        self.ds, self.settings, self.quiet = ds, settings, quiet
        self.wd = Workdir(root / "work")
        self.build_seconds: float | None = None
        self.split: Split | None = None  # the split built for
        self.cold_candidates: list[str] = []

    def model_topk(self, model: str, k: int = 10) -> Callable[[Split], tuple[pl.DataFrame, ...]]:
        """A callable for `run_peer_evaluation`: train and serve `model` on the split, return
        (its published top-k, its top-k among the split's cold shows)."""

        def run(sp: Split) -> tuple[pl.DataFrame, pl.DataFrame]:
            from tvrec.jobs.recommend import recommend_stage
            from tvrec.jobs.train import train_stage

            self._build(sp)
            log = StageLog(quiet=self.quiet)
            train_stage(self.wd, self._settings(), model, log=log)
            recommend_stage(self.wd, k=k, log=log, model_name=model)
            topk = Catalog(self.wd.root).read_current("user_topk")
            cold = _cold_topk(self.wd, sp, self.cold_candidates, k)
            return topk.select("user_id", "rank", "show_id"), cold

        return run

    def _settings(self) -> Settings:
        return self.settings.model_copy(update={"workdir": self.wd.root})

    def _build(self, sp: Split) -> None:
        """Publish the split's training events as the lake and build features, once."""
        from tvrec.pipelines.build import build_features
        from tvrec.pipelines.ingest import publish_lake

        if self.split is not None:
            if self.split is not sp:
                raise RuntimeError("a SplitPipeline serves one split; make one per split")
            return
        start = time.perf_counter()
        cache = self.settings.workdir / "cache"
        if cache.exists():  # reuse text embeddings already computed for this catalogue
            shutil.copytree(cache, self.wd.cache)
        publish_lake(_train_dataset(self.ds, sp), self.wd, "evaluation")
        build_features(
            self.wd, self._settings(), as_of=split_as_of(sp), log=StageLog(quiet=self.quiet)
        )
        self.build_seconds = time.perf_counter() - start
        self.split = sp
        self.cold_candidates = cold_candidates(self.ds.shows, sp)


def split_as_of(sp: Split) -> datetime:
    """The as-of time tvrec is run at on a split: its cutoff, or just after its last event."""
    return sp.cutoff or sp.train["event_timestamp"].max() + timedelta(seconds=1)


def cold_candidates(shows: pl.DataFrame, sp: Split) -> list[str]:
    """The shows a cold-start ranking chooses from: every catalogue show with no training event
    that is on air by the end of the test period (premiere dates are catalogue metadata, known
    ahead; unknown dates count as on air).

    Chosen from the catalogue, not from which shows the test period happened to watch."""
    seen = sp.train["show_id"].unique().implode()
    test_end = (sp.test["event_timestamp"].max() or split_as_of(sp)).date()
    on_air = pl.col("premiered").is_null() | (pl.col("premiered") <= test_end)
    new = shows.filter(~pl.col("show_id").is_in(seen) & on_air)
    return new["show_id"].unique().sort().to_list()


def rank_among(users: list[str], ids: list[str], scores: np.ndarray, k: int) -> pl.DataFrame:
    """Each user's top-k of `ids` by `scores` (n_users, n_ids), as a top-k frame."""
    if not ids or not users:
        return pl.DataFrame(schema={"user_id": pl.String, "rank": pl.Int32, "show_id": pl.String})
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (n_users, <=k)
    return pl.DataFrame(
        {
            "user_id": np.repeat(np.asarray(users, dtype=object), order.shape[1]),
            "rank": np.tile(np.arange(1, order.shape[1] + 1, dtype=np.int32), len(users)),
            "show_id": np.asarray(ids, dtype=object)[order.reshape(-1)],
        },
        schema={"user_id": pl.String, "rank": pl.Int32, "show_id": pl.String},
    )


def _cold_topk(wd: Workdir, sp: Split, candidates: list[str], k: int) -> pl.DataFrame:
    """The served model's top-k among the cold candidates, for the cold slice's users."""
    from tvrec.jobs.train import load_current_model

    model = load_current_model(wd)
    ids, vectors = model.show_embeddings()  # (n_shows, dim)
    wanted = set(candidates)
    rows = [i for i, s in enumerate(ids) if s in wanted]
    users = sp.cold_slice().test_users
    if not users or not rows:
        return rank_among([], [], np.zeros((0, 0)), k)
    scores = model.user_embeddings(users) @ vectors[rows].T  # (n_users, n_candidates)
    return rank_among(users, [ids[i] for i in rows], scores, k)


def chance_cold_metrics(
    sp: Split, candidates: list[str], k: int = 10, draws: int = 20, seed: int = 0
) -> Metrics:
    """Cold-slice metrics of a random order of the candidates (mean of `draws` orders)."""
    cold = sp.cold_slice()
    users, rng = cold.test_users, np.random.default_rng(seed)
    runs = []
    for _ in range(draws):
        noise = rng.random((len(users), len(candidates)), dtype=np.float32)
        runs.append(evaluate_topk(rank_among(users, candidates, noise, k), cold))
    mean = lambda name: float(np.mean([getattr(m, name) for m in runs]))  # noqa: E731
    first = runs[0]
    return Metrics(
        k=first.k, users=first.users, hr=mean("hr"), recall=mean("recall"), ndcg=mean("ndcg"),
        ndcg_ci=(mean("ndcg"), mean("ndcg")), coverage=mean("coverage"),
        recommended_shows=first.recommended_shows, catalogue=first.catalogue,
    )  # fmt: skip


def _train_dataset(ds: Dataset, sp: Split) -> Dataset:
    """The original dataset with its events replaced by the split's training pairs."""
    events = (
        sp.train.select(
            "user_id",
            "show_id",
            pl.col("event_timestamp").dt.cast_time_unit("us"),
            pl.col("weight").cast(pl.Float64),
            pl.lit(None, dtype=pl.String).alias("event_type"),
            pl.lit(None, dtype=pl.Float64).alias("watch_seconds"),
        )
        .cast(EVENTS_SCHEMA)
        .sort("event_timestamp")
    )
    return Dataset(f"{ds.name}-train", ds.shows, events, ds.credits, ds.users, ds.timed)


def evaluate(
    ds: Dataset,
    settings: Settings,
    out_dir: Path,
    models: tuple[str, ...] = ("collaborative",),
    quiet: bool = True,
) -> EvaluationReport:
    """Score each of tvrec's `models` alone (one feature build shared) against the peers."""
    with tempfile.TemporaryDirectory(prefix="tvrec-eval-") as tmp:
        pipeline = SplitPipeline(ds, settings, Path(tmp), quiet=quiet)
        extra = {f"tvrec ({m})": pipeline.model_topk(m) for m in models}
        report = run_peer_evaluation(ds, extra_models=extra, out_dir=out_dir)
    if pipeline.split is not None:
        report.notes += _pipeline_notes(pipeline, pipeline.split)
        write_report(report, out_dir)
    return report


def _pipeline_notes(pipeline: SplitPipeline, sp: Split) -> list[str]:
    notes = [
        f"tvrec fit s = training + nightly precompute; the lake and feature build they share "
        f"took {pipeline.build_seconds or 0:.0f} s more"
    ]
    n = len(pipeline.cold_candidates)
    if n and sp.cold_slice().test.height:
        chance = chance_cold_metrics(sp, pipeline.cold_candidates)
        notes.append(
            f"cold-start slice: tvrec ranks the {n:,} catalogue shows with no training event "
            f"that are on air by the end of the test period; a random order of them scores "
            f"HR@{chance.k} {chance.hr:.3f}, Recall@{chance.k} {chance.recall:.3f}, "
            f"NDCG@{chance.k} {chance.ndcg:.3f} (mean of 20 orders)"
        )
    return notes


__all__ = ["SplitPipeline", "chance_cold_metrics", "cold_candidates", "evaluate", "split"]
