"""The `tvrec evaluate` job: tvrec's own nightly pipeline and its peers, scored on one split.

tvrec is evaluated as it runs in production: the split's training events are published as a
lake, features are built as of the split's cutoff, the model trains from its Feast training
set, and the nightly precompute publishes a top-k table. That published table is scored by the
same code as the peers (most-popular, item-kNN, EASE, ALS); the cold-start slice ranks the
catalogue's shows with no training event (`cold_candidates`), and every model's scores are
also broken down by the test user's history length (`evaluate_by_history`).

- `evaluate(ds, settings, out_dir, models)`: each of tvrec's models alone against the peers.
- `run_peer_evaluation(ds, extra, out_dir)`: the peers and any extra models, scored and written.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tvrec.jobs.catalog import Catalog
from tvrec.jobs.evaluation.confidence import confidence_check
from tvrec.jobs.evaluation.forecast import ForecastWindow, forecast_quality
from tvrec.jobs.evaluation.metrics import (
    MetricConfig,
    Metrics,
    evaluate_by_history,
    evaluate_topk,
)
from tvrec.jobs.evaluation.peers import Peer, default_peers
from tvrec.jobs.evaluation.report import (
    EvaluationReport,
    ModelResult,
    pipeline_notes,
    write_report,
)
from tvrec.jobs.evaluation.splitting import FewShot, Split, few_shot, split
from tvrec.pipelines.config import Settings
from tvrec.pipelines.contract import EVENTS_SCHEMA, Dataset, aired_by
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.workdir import Workdir

if TYPE_CHECKING:
    from tvrec.models.base import Recommender

FORECAST_HORIZONS = (7, 30)  # days after the cutoff a forecast is scored on
# An extra model's answer: its top-k table, or (top-k table, top-k over the cold shows only),
# or (top-k, cold top-k, few-shot top-k or None).
Answer = (
    pl.DataFrame
    | tuple[pl.DataFrame, pl.DataFrame]
    | tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]
)
ExtraModel = Answer | Callable[[Split], Answer]


# ---- tvrec's pipeline on a split -----------------------------------------------------------
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
        # per model that forecasts (the temporal one): its daily forecast after the cutoff and
        # its release-timing table, read from the trained model before the next one trains
        self.forecasts: dict[str, pl.DataFrame] = {}
        self.timings: dict[str, pl.DataFrame] = {}
        self.few: FewShot | None = None  # the few-shot protocol's users, held out of `split`
        # per model that fuses others (the ensemble): its test users' top-k by each variant
        # of its ablation (all members, without each, each alone)
        self.ablations: dict[str, dict[str, pl.DataFrame]] = {}
        self.fit_notes: list[str] = []  # each model's `*_notes` from its fit (the run record's)
        # per model that publishes a `confidence` (the ensemble): its published top-k with it,
        # and what the model says the confidence is the chance of (None: it says nothing)
        self.confidences: dict[str, tuple[pl.DataFrame, str | None]] = {}

    def model_topk(self, model: str, k: int = 10) -> Callable[[Split], tuple[Any, ...]]:
        """A callable for `run_peer_evaluation`: train and serve `model` on the split, return
        (its published top-k, its top-k among the split's cold shows, its few-shot top-k: None
        without few-shot users or when the model cannot fold users in)."""

        def run(sp: Split) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
            from tvrec.jobs.recommend import recommend_stage
            from tvrec.jobs.train import train_stage

            self._build(sp)
            log = StageLog(quiet=self.quiet)
            train_stage(self.wd, self._settings(), model, log=log)
            recommend_stage(self.wd, k=k, log=log, model_name=model)
            from tvrec.jobs.train import load_current_model

            topk = Catalog(self.wd.root).read_current("user_topk")
            served = load_current_model(self.wd)
            notes = served.manifest.notes() if served.manifest else {}
            self.fit_notes += [
                f"tvrec ({model}) {key.removesuffix('_notes').replace('_', ' ')}: {value}"
                for key, value in notes.items()
            ]
            cold = _cold_topk(served, sp, self.cold_candidates, k)
            self._keep_forecast(model, served)
            if hasattr(served, "ablation"):
                self.ablations[model] = ablation_topk(served, sp.test_users, k)
            few = few_shot_topk(served, self.few, k) if self.few else None
            if "confidence" in topk.columns:
                metrics = served.manifest.metrics if served.manifest else {}
                self.confidences[model] = (
                    topk.select("user_id", "rank", "show_id", "confidence"),
                    metrics.get("confidence_means"),
                )
            return topk.select("user_id", "rank", "show_id"), cold, few

        return run

    def _settings(self) -> Settings:
        return self.settings.model_copy(update={"workdir": self.wd.root})

    def _keep_forecast(self, model: str, served: Recommender) -> None:
        """Keep a forecasting model's daily forecast (30 days) and release timing."""
        if not hasattr(served, "forecast_daily"):
            return
        from tvrec.models.temporal import release_timing

        self.forecasts[model] = served.forecast_daily(max(FORECAST_HORIZONS))
        genres = dict(zip(self.ds.shows["show_id"], self.ds.shows["genres"].to_list(), strict=True))
        self.timings[model] = release_timing(served, genres)  # type: ignore[arg-type]

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
    new = shows.filter(~pl.col("show_id").is_in(seen) & aired_by(test_end))
    return new["show_id"].unique().sort().to_list()


def rank_among(users: list[str], ids: list[str], scores: np.ndarray, k: int) -> pl.DataFrame:
    """Each user's top-k of `ids` by `scores` (n_users, n_ids), as a top-k frame."""
    if not ids or not users:
        return ranked_frame([], [], np.zeros((0, 0), dtype=np.int64))
    return ranked_frame(users, ids, np.argsort(-scores, axis=1, kind="stable")[:, :k])


def ranked_frame(users: list[str], ids: list[str] | np.ndarray, rows: np.ndarray) -> pl.DataFrame:
    """A top-k frame (user_id, rank, show_id) from each user's rows of `ids`, best first,
    (n_users, k); -1 past the end of a user's list."""
    user_at, rank_at = np.nonzero(rows >= 0)
    return pl.DataFrame(
        {
            "user_id": np.asarray(users, dtype=object)[user_at],
            "rank": (rank_at + 1).astype(np.int32),
            "show_id": np.asarray(ids, dtype=object)[rows[user_at, rank_at]],
        },
        schema={"user_id": pl.String, "rank": pl.Int32, "show_id": pl.String},
    )


def _cold_topk(model: Recommender, sp: Split, candidates: list[str], k: int) -> pl.DataFrame:
    """The served model's top-k among the cold candidates, for the cold slice's users."""
    ids, vectors = model.show_embeddings()  # (n_shows, dim)
    wanted = set(candidates)
    rows = [i for i, s in enumerate(ids) if s in wanted]
    users = sp.cold_slice().test_users
    if not users or not rows:
        return rank_among([], [], np.zeros((0, 0)), k)
    if getattr(model, "rerank", None) is not None:
        return _cold_reranked(model, users, list(ids), rows, k)
    scores = model.user_embeddings(users) @ vectors[rows].T  # (n_users, n_candidates)
    return rank_among(users, [ids[i] for i in rows], scores, k)


def _cold_reranked(
    model: Any, users: list[str], ids: list[str], rows: list[int], k: int
) -> pl.DataFrame:
    """A two-stage model's top-k among the cold candidates: all of them are its candidates
    (its retrieval cannot tell shows without events apart), every other show excluded."""
    others = set(range(len(ids))) - set(rows)
    parts = []
    for start in range(0, len(users), 64):
        chunk = users[start : start + 64]
        candidates = np.tile(np.asarray(rows, np.int64), (len(chunk), 1))  # (b, n_cold)
        ranked = model.rerank(chunk, candidates, k, [others] * len(chunk)).rows
        parts.append(ranked_frame(chunk, ids, ranked))
    return pl.concat(parts)


def ablation_topk(model: Any, users: list[str], k: int) -> dict[str, pl.DataFrame]:
    """A fusing model's top-k frames of `users` per variant of its ablation."""
    return {
        label: ranked_frame(users, model.show_ids, rows)
        for label, rows in model.ablation(users, k).items()
    }


def ablation_table(
    ablations: Mapping[str, Mapping[str, pl.DataFrame]], sp: Split, cfg: MetricConfig
) -> pl.DataFrame | None:
    """One row per (model, variant): NDCG@k with its interval and HR@k on the split's test
    users, and the change against the model's fusion of all members."""
    rows = []
    for model, variants in ablations.items():
        scored = {label: evaluate_topk(topk, sp, cfg) for label, topk in variants.items()}
        full = scored["all members"].ndcg
        for label, m in scored.items():
            lo, hi = m.ndcg_ci
            rows.append((f"tvrec ({model})", label, m.ndcg, lo, hi, m.hr, m.ndcg - full))
    if not rows:
        return None
    names = ["model", "variant", "ndcg", "ndcg_lo", "ndcg_hi", "hr", "delta"]
    return pl.DataFrame(rows, schema=names, orient="row")


def few_shot_topk(model: Recommender, few: FewShot, k: int) -> pl.DataFrame | None:
    """The model's top-k for the few-shot users, each folded in from their support pairs
    alone, as it serves (a two-stage model re-ranks its candidates); None when the model
    cannot fold users in."""
    support = few.support.select("user_id", "show_id", "event_timestamp").to_pandas()
    if not model.fold_in(support):
        return None
    ids, vectors = model.show_embeddings()  # (n_shows, dim)
    scores = model.user_embeddings(few.users) @ vectors.T  # (n_users, n_shows)
    row = {s: i for i, s in enumerate(ids)}
    user = {u: i for i, u in enumerate(few.users)}
    for u, s in few.support.select("user_id", "show_id").iter_rows():
        if s in row:
            scores[user[u], row[s]] = -np.inf  # their own shows are never offered
    if getattr(model, "rerank", None) is None:
        return rank_among(few.users, list(ids), scores, k)
    return _reranked(model, few.users, list(ids), scores, k)


def _reranked(
    model: Any, users: list[str], ids: list[str], scores: np.ndarray, k: int
) -> pl.DataFrame:
    """A two-stage model's top-k: its retrieval `scores` (n_users, n_shows) give each user's
    `candidates` best unseen rows, which `rerank` orders."""
    wanted = min(model.config.candidates, scores.shape[1])
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :wanted]  # (n_users, N)
    rows[~np.isfinite(np.take_along_axis(scores, rows, 1))] = -1  # only unseen candidates
    ranked = model.rerank(users, rows, k).rows  # (n_users, k), -1 past the candidates
    return ranked_frame(users, ids, ranked)


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


# ---- scoring peers and extra models --------------------------------------------------------
def _fit_peer(peer: Peer, split: Split, k: int) -> tuple[pl.DataFrame, float, float]:
    """Fit a peer on train and rank the test users; (top-k frame, fit s, score s)."""
    start = time.perf_counter()
    peer.fit(split.train)
    fitted = time.perf_counter()
    topk = peer.recommend(split.test_users, k, exclude_seen=True)
    return topk, fitted - start, time.perf_counter() - fitted


def _score_extra(
    model: ExtraModel, split: Split
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None, float | None]:
    """(top-k, cold-only top-k or None, few-shot top-k or None, seconds) of a precomputed or
    callable model."""
    start = time.perf_counter()
    answer = model if isinstance(model, pl.DataFrame | tuple) else model(split)
    seconds = None if isinstance(model, pl.DataFrame | tuple) else time.perf_counter() - start
    if isinstance(answer, tuple):
        few = answer[2] if len(answer) > 2 else None
        return answer[0], answer[1], few, seconds
    return answer, None, None, seconds


def _peer_results(
    peers: Mapping[str, Peer], sp: Split, cold: Split, cfg: MetricConfig, few: FewShot | None
) -> list[ModelResult]:
    results: list[ModelResult] = []
    for name, peer in peers.items():
        topk, fit_s, score_s = _fit_peer(peer, sp, cfg.k)
        metrics_ = evaluate_topk(topk, sp, cfg)
        # a collaborative peer ranks only shows it saw in train: its list is its cold answer
        cold_m = evaluate_topk(topk, cold, cfg) if cold.test.height else None
        few_m = None
        if few is not None:  # fold-in: scored from the support shows alone
            few_m = evaluate_topk(peer.recommend_from(few.support, cfg.k), few.scored(sp), cfg)
        result = ModelResult(name, metrics_, fit_s, score_s, peer.params(), cold_m, few_m)
        result.by_history = evaluate_by_history(topk, sp, cfg)
        results.append(result)
    return results


def _extra_results(
    models: Mapping[str, ExtraModel], sp: Split, cold: Split, cfg: MetricConfig,
    few: FewShot | None,
) -> list[ModelResult]:  # fmt: skip
    results: list[ModelResult] = []
    for name, model in models.items():
        topk, cold_topk, few_topk, fit_s = _score_extra(model, sp)
        cold_m = few_m = None
        if cold.test.height:
            cold_m = evaluate_topk(cold_topk if cold_topk is not None else topk, cold, cfg)
        if few is not None and few_topk is not None:
            few_m = evaluate_topk(few_topk, few.scored(sp), cfg)
        result = ModelResult(name, evaluate_topk(topk, sp, cfg), fit_s, cold=cold_m, few_shot=few_m)
        result.by_history = evaluate_by_history(topk, sp, cfg)
        results.append(result)
    return results


def score_peers(
    ds: Dataset,
    extra_models: Mapping[str, ExtraModel] | None = None,
    *,
    peers: Mapping[str, Peer] | None = None,
    seed: int = 42,
    metrics: MetricConfig | None = None,
    sp: Split | None = None,
    few: FewShot | None = None,
) -> EvaluationReport:
    """Split `ds` (or take `sp`), fit and score the peers and `extra_models`; the report, not
    yet written. With `few` (users held out of `sp`), each peer and model is also scored on
    them from their first events (the few-shot slice).

    An extra model is either a precomputed top-k frame (user_id, rank, show_id) or a callable
    that trains on `split.train` and returns one (its wall time is reported as fit seconds).
    """
    cfg = metrics or MetricConfig()
    sp = sp or split(ds, seed=seed)
    cold = sp.cold_slice()
    results = _peer_results(peers or default_peers(sp.kind), sp, cold, cfg, few)
    results += _extra_results(extra_models or {}, sp, cold, cfg, few)
    described = sp.describe() | ({"few_shot": few.describe()} if few else {})
    return EvaluationReport(ds.name, described, results, notes=list(ds.notes))


def run_peer_evaluation(
    ds: Dataset,
    extra_models: Mapping[str, ExtraModel] | None = None,
    out_dir: Path = Path("evaluation"),
    *,
    peers: Mapping[str, Peer] | None = None,
    seed: int = 42,
    metrics: MetricConfig | None = None,
) -> EvaluationReport:
    """`score_peers`, then the report written into out_dir (see `write_report`)."""
    report = score_peers(ds, extra_models, peers=peers, seed=seed, metrics=metrics)
    report.files = write_report(report, Path(out_dir))
    return report


# ---- the evaluate job ----------------------------------------------------------------------
def evaluate(
    ds: Dataset,
    settings: Settings,
    out_dir: Path,
    models: tuple[str, ...] = ("collaborative",),
    quiet: bool = True,
    few_shot_users: int = 0,
    seed: int = 42,
    sp: Split | None = None,
) -> EvaluationReport:
    """Score each of tvrec's `models` alone (one feature build shared) against the peers;
    with `few_shot_users`, that many users (seeded) are held out of training and scored
    from their first 5 events (`splitting.few_shot`). `sp`: the split of `ds` by `seed`
    where the caller has it already."""
    ds.require_events("an evaluation scores recommendations against held-out events")
    sp = sp or split(ds, seed=seed)
    few = few_shot(sp, few_shot_users, seed=seed) if few_shot_users else None
    sp = few.held_out(sp) if few else sp
    from tvrec.jobs.train import preflight

    preflight(settings, models, sp.train, ds.shows)  # refused now, not after models trained
    with tempfile.TemporaryDirectory(prefix="tvrec-eval-") as tmp:
        pipeline = SplitPipeline(ds, settings, Path(tmp), quiet=quiet)
        pipeline.few = few
        trained = sorted(models, key=lambda m: m == "ensemble")  # its members before it
        extra = {f"tvrec ({m})": pipeline.model_topk(m) for m in trained}
        report = score_peers(ds, extra_models=extra, seed=seed, sp=sp, few=few)
    report.ablation = ablation_table(pipeline.ablations, sp, MetricConfig())
    report.confidence = {
        f"tvrec ({m})": confidence_check(topk, sp, means=means)
        for m, (topk, means) in pipeline.confidences.items()
    }
    report.notes += pipeline.fit_notes
    if few is not None and len(few.users) < few_shot_users:  # asked for more than there are
        report.notes.append(
            f"few-shot: {len(few.users):,} of the {few_shot_users:,} users asked held out: only "
            f"{len(few.users):,} have more than {few.k} watched pairs"
        )
    if pipeline.split is not None:
        report.notes += _pipeline_notes(pipeline, pipeline.split)
        report.forecast, report.timing = _forecast_sections(ds, pipeline, pipeline.split)
    report.files = write_report(report, Path(out_dir))
    return report


def _forecast_sections(
    ds: Dataset, pipeline: SplitPipeline, sp: Split
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """MASE per horizon of each forecasting model beside seasonal-naive and last-30-days
    mean on the test window, and the release-timing table (None without a forecasting model
    or, for MASE, without a temporal split)."""
    if not pipeline.forecasts:
        return None, None
    first = next(iter(pipeline.timings.values()))
    if sp.cutoff is None:
        return None, first
    window = ForecastWindow.of_split(sp, ds.events)
    named = {f"tvrec ({m})": f for m, f in pipeline.forecasts.items()}
    return forecast_quality(window, named, FORECAST_HORIZONS), first


def _pipeline_notes(pipeline: SplitPipeline, sp: Split) -> list[str]:
    """The report's notes on the pipeline run; the chance reference when there is a cold slice."""
    n = len(pipeline.cold_candidates)
    chance = None
    if n and sp.cold_slice().test.height:
        chance = chance_cold_metrics(sp, pipeline.cold_candidates)
    return pipeline_notes(pipeline.build_seconds, n, chance)


__all__ = [
    "ExtraModel",
    "SplitPipeline",
    "ablation_table",
    "ablation_topk",
    "chance_cold_metrics",
    "cold_candidates",
    "evaluate",
    "few_shot_topk",
    "rank_among",
    "run_peer_evaluation",
    "score_peers",
    "split_as_of",
]
