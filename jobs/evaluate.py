"""`tvrec evaluate`: tvrec's own nightly pipeline and its peers, scored on the same split.

tvrec is evaluated as it runs in production: the split's training events are published as a
lake, features are built as of the split's cutoff, the model trains from its Feast training
set, and the nightly precompute publishes a top-k table. That published table is scored by the
same code as the peers (most-popular, item-kNN, EASE, ALS).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl

from tvrec.jobs.catalog import Catalog
from tvrec.jobs.evaluation import EvaluationReport, Split, run_peer_evaluation, split
from tvrec.pipelines.config import Settings
from tvrec.pipelines.contract import EVENTS_SCHEMA, Dataset
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.workdir import Workdir


def tvrec_pipeline_topk(
    ds: Dataset,
    settings: Settings,
    model: str = "collaborative",
    k: int = 10,
    quiet: bool = True,
) -> Callable[[Split], tuple[pl.DataFrame, pl.DataFrame]]:
    """A callable for `run_peer_evaluation`: run tvrec (serving `model`) on the split's train
    part and return the top-k table it publishes."""

    def run(sp: Split) -> tuple[pl.DataFrame, pl.DataFrame]:
        from tvrec.jobs.recommend import recommend_stage
        from tvrec.jobs.train import train_stage
        from tvrec.pipelines.build import build_features
        from tvrec.pipelines.ingest import publish_lake

        with tempfile.TemporaryDirectory(prefix="tvrec-eval-") as tmp:
            wd = Workdir(Path(tmp) / "work")
            cache = settings.workdir / "cache"
            if cache.exists():  # reuse text embeddings already computed for this catalogue
                import shutil

                shutil.copytree(cache, wd.cache)
            publish_lake(_train_dataset(ds, sp), wd, "evaluation")
            as_of = sp.cutoff or sp.train["event_timestamp"].max() + timedelta(seconds=1)
            eval_settings = settings.model_copy(update={"workdir": wd.root})
            log = StageLog(quiet=quiet)
            build_features(wd, eval_settings, as_of=as_of, log=log)
            train_stage(wd, eval_settings, model, log=log)
            recommend_stage(wd, k=k, log=log, model_name=model)
            topk = Catalog(wd.root).read_current("user_topk").select("user_id", "rank", "show_id")
            return topk, _cold_topk(wd, sp, k)

    return run


def _cold_topk(wd: Workdir, sp: Split, k: int) -> pl.DataFrame:
    """The served model's top-k among the split's cold shows only, for the cold slice's users.

    Same scores as the index (raw inner product of the served model's vectors)."""
    from tvrec.jobs.train import load_current_model

    cold_slice = sp.cold_slice()
    if not cold_slice.test.height:
        return pl.DataFrame(schema={"user_id": pl.String, "rank": pl.Int32, "show_id": pl.String})
    model = load_current_model(wd)
    ids, vectors = model.show_embeddings()
    rows = [i for i, s in enumerate(ids) if s in set(sp.cold_shows)]
    users = cold_slice.test_users
    scores = model.user_embeddings(users) @ vectors[rows].T  # (n_users, n_cold)
    order = np.argsort(-scores, axis=1)[:, :k]  # (n_users, k)
    cold_ids = np.asarray(ids, dtype=object)[rows]
    return pl.DataFrame(
        {
            "user_id": np.repeat(np.asarray(users, dtype=object), order.shape[1]),
            "rank": np.tile(np.arange(1, order.shape[1] + 1, dtype=np.int32), len(users)),
            "show_id": cold_ids[order.reshape(-1)],
        }
    )


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
    ds: Dataset, settings: Settings, out_dir: Path, quiet: bool = True
) -> EvaluationReport:
    extra = {"tvrec (collaborative)": tvrec_pipeline_topk(ds, settings, quiet=quiet)}
    return run_peer_evaluation(ds, extra_models=extra, out_dir=out_dir)


__all__ = ["evaluate", "split", "tvrec_pipeline_topk"]
