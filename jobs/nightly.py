"""`tvrec run`: the whole nightly job — ingest, features, train, index, recommend, publish —
with a progress line per stage and a run record (stage timings, row counts, metrics) in the
DuckDB catalogue. One writer at a time per work directory (run.lock); what a killed writer
left behind is swept first. Everything served changes in one step at the end: the release
(jobs/release.py)."""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvrec.jobs.catalog import Catalog
from tvrec.jobs.locks import run_lock
from tvrec.pipelines.config import Settings
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.workdir import Workdir

if TYPE_CHECKING:  # numpy and pandas stay out of the scheduler's import
    from tvrec.models.base import ModelManifest
    from tvrec.pipelines.config import IngestSettings
    from tvrec.pipelines.contract import Dataset


def run_nightly(
    settings: Settings,
    source: Path | None,
    fmt: str = "contract",
    as_of: datetime | None = None,
    k: int | None = None,
    quiet: bool = False,
    ingest_options: IngestSettings | None = None,
) -> dict[str, Any]:
    """Run every stage; returns the run record. Raises (after recording the failure).

    A new dataset is read and checked (`ingest_options`, default `[ingest]`; and that the
    as-of leaves events to learn from) before the lock is taken or anything is written."""
    from tvrec.pipelines.store import check_online_store

    log, began = StageLog(quiet=quiet), time.perf_counter()
    _check_served(settings)
    with log.stage("read and check input") if source else contextlib.nullcontext():
        dataset = _checked_dataset(settings, source, fmt, as_of, ingest_options)
    wd = Workdir(settings.workdir)
    wd.root.mkdir(parents=True, exist_ok=True)
    check_online_store(wd.root)  # a Redis that is down fails the run before anything is written
    with run_lock(wd.root):
        wd.sweep()
        catalog = Catalog(wd.root)
        run = _Run(
            catalog.start_run(
                "nightly",
                as_of=as_of.isoformat() if as_of else None,
                source=str(source) if source else None,
            )
        )
        try:
            record = _stages(settings, wd, dataset, fmt, as_of, k, log, run)
        except BaseException as exc:
            run.metrics["stage_peak_rss_mb"] = dict(log.peak_rss_mb)
            error = "".join(traceback.format_exception_only(exc)).strip()
            run.finish(catalog, log, status="failed", error=error)
            raise
        record["seconds"] = round(time.perf_counter() - began, 1)  # the job's wall time
        run.finish(catalog, log, status="succeeded", as_of=record["as_of"])
        return record


@dataclass
class _Run:
    """What a run records as its stages go: filled in place, so a failure keeps the counts
    and metrics of the stages before it."""

    run_id: str
    counts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def finish(
        self,
        catalog: Catalog,
        log: StageLog,
        status: str,
        error: str | None = None,
        as_of: str | None = None,
    ) -> None:
        """Record the run's end with its stages, counts and metrics so far."""
        catalog.finish_run(
            self.run_id,
            status=status,
            stages=log.seconds,
            counts=self.counts,
            metrics=self.metrics,
            error=error,
            as_of=as_of,
        )


def _stages(
    settings: Settings,
    wd: Workdir,
    dataset: Dataset | None,
    fmt: str,
    as_of: datetime | None,
    k: int | None,
    log: StageLog,
    run: _Run,
) -> dict[str, Any]:
    """Publish the lake (a new dataset), build the features, train each model, serve one;
    returns the run record without its wall time."""
    from tvrec.jobs.recommend import recommend_stage
    from tvrec.jobs.train import train_model
    from tvrec.pipelines.build import build_features
    from tvrec.pipelines.ingest import publish_lake

    counts, metrics = run.counts, run.metrics
    if dataset is not None:
        with log.stage("publish lake"):
            publish_lake(dataset, wd, fmt)
            counts["lake"] = {name: t.height for name, t in dataset.tables().items()}
    build = build_features(wd, settings, as_of, log=log)
    counts["features"] = build.rows
    for stage in settings.models.train:
        metrics[stage] = _stage_metrics(train_model(wd, settings, stage, log))
    rec = recommend_stage(
        wd,
        k=k or settings.models.k,
        log=log,
        run_id=run.run_id,
        model_name=settings.models.serve,
        index=settings.index,
        sharding=settings.recommend,
    )
    counts["user_topk"], counts["show_similar"] = rec.user_rows, rec.show_rows
    metrics["users_per_second"] = rec.users_per_second
    metrics["recommend_shards"] = rec.shards
    metrics["index"] = {"type": rec.index_type, f"recall_at_{rec.recall_depth}": rec.recall}
    metrics["stage_peak_rss_mb"] = dict(log.peak_rss_mb)
    return {
        "run_id": run.run_id,
        "status": "succeeded",
        "as_of": build.as_of,
        "model_version": rec.model_version,
        "stages": log.seconds,
        "counts": counts,
        "metrics": metrics,
        "release": rec.release,
        "versions": {"user_topk": rec.user_version, "show_similar": rec.show_version},
    }


def check_input(settings: Settings, source: Path, fmt: str) -> None:
    """What a run over `source` would refuse before writing anything, checked without
    running it (`tvrec schedule start`, so a bad dataset is said now, not at 02:00)."""
    _check_served(settings)
    _checked_dataset(settings, source, fmt, None, None)


def _check_served(settings: Settings) -> None:
    """Refuse, before anything is read or written, a run that trains everything and then
    has nothing to serve: `models.serve` neither trained tonight (by its own stage, or
    published by the ensemble as a member it advances) nor trained by an earlier run."""
    from tvrec.models.ensemble import EnsembleModel
    from tvrec.pipelines.errors import ConfigError

    models, serve = settings.models, settings.models.serve
    if serve in models.train or (Path(settings.workdir) / "models" / serve).exists():
        return
    if "ensemble" in models.train:
        ensemble = EnsembleModel.parse_config(models.params("ensemble"))
        if serve in ensemble.advance:  # published by the ensemble (`companions`)
            return
    raise ConfigError(
        f"models.serve {serve!r} is not in models.train {list(models.train)} and has no "
        f"trained copy in {settings.workdir}/models: add it to models.train (or "
        f"TVREC_TRAIN), or train it first (`tvrec train --stage {serve}`)"
    )


def _checked_dataset(
    settings: Settings,
    source: Path | None,
    fmt: str,
    as_of: datetime | None,
    options: IngestSettings | None,
) -> Dataset | None:
    """The dataset at `source`, validated; refused (as is the current lake, without a source)
    when `as_of` leaves no event before it."""
    import polars as pl

    from tvrec.pipelines.build import check_as_of
    from tvrec.pipelines.ingest import load_dataset, read_lake

    dataset = load_dataset(source, fmt, options or settings.ingest) if source else None
    if dataset is not None and settings.models.train:
        dataset.require_events(
            "the nightly job trains on events; publish the catalogue with `tvrec ingest`, or "
            "add an events file",
            where=f"{source}: ",
        )
    wanted = as_of is not None or settings.models.train  # the lake is read for these alone
    events = dataset if dataset is not None or not wanted else _current_lake(settings, read_lake)
    if as_of is not None and events is not None:
        before = events.events.filter(pl.col("event_timestamp") < as_of)
        check_as_of(events, before, as_of)
    if events is not None:
        _preflight(settings, events, as_of)
    return dataset


def _preflight(settings: Settings, dataset: Dataset, as_of: datetime | None) -> None:
    """Each model the job trains refuses, here, a log it certainly cannot learn from
    (`Recommender.preflight`), rather than after the models before it trained."""
    import polars as pl

    from tvrec.jobs.train import preflight
    from tvrec.pipelines.build import default_as_of

    if not settings.models.train or dataset.events.is_empty():
        return
    cut = as_of or default_as_of(dataset)
    events = dataset.events.filter(pl.col("event_timestamp") < cut)
    preflight(settings, settings.models.train, events, dataset.shows)


def _current_lake(settings: Settings, read: Any) -> Dataset | None:
    wd = Workdir(settings.workdir)
    return read(wd) if wd.has("lake") else None


def _final_metrics(history: dict[str, Any]) -> dict[str, Any]:
    """Last value of each per-epoch curve, scalars as they are."""
    return {k: (v[-1] if isinstance(v, list) and v else v) for k, v in history.items()}


def _stage_metrics(manifest: ModelManifest) -> dict[str, Any]:
    """What the run record keeps of a trained model: its version, the last value of each
    metric, and under "curves" every per-epoch curve whole (loss and validation per epoch)."""
    from tvrec.jobs.tracking import curves

    return {
        "model_version": manifest.model_version,
        **_final_metrics(manifest.metrics),
        "curves": curves(manifest.metrics),
    }


def scheduled_run(
    settings: Settings, source: Path | str | None, fmt: str = "contract"
) -> dict[str, Any]:
    """What the scheduler fires: a nightly run over the newest data (as-of: its last event)."""
    return run_nightly(settings, Path(source) if source else None, fmt, quiet=True)
