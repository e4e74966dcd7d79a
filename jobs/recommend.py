"""`tvrec recommend`: nightly precompute of top-k tables from the current model.

1. Index the model's show embeddings (FAISS, backend chosen by `build_index`).
2. For every user, the top-k shows by batched index search, excluding shows the user already
   watched and shows not yet premiered at the as-of time.
3. For every show, its top-k similar shows (cosine of the show vectors, same filters).
4. Stage a release (`jobs/release.py`): the served model, its index, both tables (checked
   against the lake: every user and show id must exist there) and the lake's shows; load the
   user table into Feast's online store (feature view `user_recommendations`) from the staged
   release's file; then make the release current in one step. An online store that fails
   (a Redis gone away) leaves the previous release current.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import polars as pl

from tvrec.index import IndexConfig, ShowIndex, make_show_index, save_index
from tvrec.index.backends import measure_recall
from tvrec.jobs.catalog import Catalog
from tvrec.jobs.query_store import show_list
from tvrec.jobs.release import (
    RECOMMENDATIONS,
    ReleaseStage,
    TableRef,
    stage_release,
    write_manifest,
)
from tvrec.models.base import ModelFormatError, ModelManifest, Recommender
from tvrec.models.registry import load_model
from tvrec.pipelines.config import IndexSettings, RecommendSettings
from tvrec.pipelines.contract import Dataset, aired_by
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.ingest import read_lake
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.workdir import Workdir

USER_TABLE = "user_topk"
SHOW_TABLE = "show_similar"
BATCH = 2048  # users per index search


@dataclass
class RecommendSummary:
    model_version: str
    as_of: str
    users: int
    shows: int
    k: int
    user_rows: int
    show_rows: int
    user_version: int
    show_version: int
    backend: str
    users_per_second: float
    release: int
    forecast_rows: int = 0  # show_forecast rows (0: no temporal model on this lake)
    index_type: str = "flat"
    recall_depth: int = 0  # shows retrieved per user (k, or the candidates a model re-ranks)
    recall: float | None = None  # an approximate index's recall at that depth against exact
    shards: int = 1  # user shards searched by parallel workers

    def to_json(self) -> dict:
        return self.__dict__.copy()


def recommend_stage(
    wd: Workdir,
    k: int = 50,
    log: StageLog | None = None,
    run_id: str | None = None,
    model_name: str = "collaborative",
    index: IndexSettings | None = None,
    sharding: RecommendSettings | None = None,
) -> RecommendSummary:
    """Serve trained model `model_name`: stage a release with its index and top-k tables and
    make it current (the users' table over `sharding.shards` parallel workers when more than
    one: jobs/shards.py). Callers hold the work directory's writer lock."""
    log = log or StageLog()
    from tvrec.jobs.train import registered

    registered(model_name)  # a name, never a path: `..` would copy the work directory
    source = wd.require(
        f"models/{model_name}", f"train it first: `tvrec train --stage {model_name}`"
    )
    from tvrec.pipelines.store import apply_recommendations, check_online_store

    check_online_store(wd.root)  # a networked online store that is not there: before the work
    lake = read_lake(wd)
    with stage_release(wd.root, run_id) as release:
        shutil.copytree(source, release.model_dir)  # the release keeps its own copy
        try:
            model = load_model(release.model_dir)
        except ModelFormatError as exc:  # name the user's file, not the release's copy
            raise ModelFormatError(str(exc).replace(str(release.model_dir), str(source))) from None
        settings = (index or IndexSettings(), sharding or RecommendSettings())
        summary = _serve(wd, release, model, lake, k, log, *settings)
        with log.stage("feast: serving views"):  # online before current: a failure keeps both
            as_of = datetime.fromisoformat(summary.as_of)
            forecast = summary.forecast_rows > 0
            apply_recommendations(wd.root, as_of, forecast=forecast, release=release.path)
    return summary


def _serve(
    wd: Workdir,
    release: ReleaseStage,
    model: Recommender,
    lake: Dataset,
    k: int,
    log: StageLog,
    settings: IndexSettings,
    sharding: RecommendSettings,
) -> RecommendSummary:
    import time

    manifest = model.manifest
    assert manifest is not None
    as_of = datetime.fromisoformat(manifest.as_of)
    ids, vectors = model.show_embeddings()  # (n_shows, dim)
    upcoming = _not_premiered(lake.shows, ids, as_of.date())
    users = _users(lake.events, lake.users, as_of)
    with log.stage("index"):
        user_index = _index(vectors, ids, manifest, "dot", settings)
        save_index(user_index, release.index_dir)
        depth = _depth(model, k)  # what retrieval asks the index for
        recall = _recall(model, user_index, vectors, users, depth, settings.recall_queries)
    shards = f" in {sharding.shards} shards" if sharding.shards > 1 else ""
    with log.stage(f"recommend for {len(users):,} users{shards}"):
        t0 = time.perf_counter()
        exclude = [s | upcoming for s in _seen(lake.events, users, ids, as_of)]
        if sharding.shards > 1:
            from tvrec.jobs.shards import sharded_user_topk

            user_topk = sharded_user_topk(users, exclude, k, release, sharding)
        else:
            user_topk = user_topk_table(model, user_index, users, exclude, k)
        rate = len(users) / max(time.perf_counter() - t0, 1e-9)
    with log.stage("similar shows"):
        similarity = model.similarity_vectors()  # (n_shows, d): prior column left out
        show_index = _index(similarity, ids, manifest, "ip", settings)  # cosine
        show_similar = _show_similar(show_index, similarity, upcoming, k)
        save_index(show_index, release.similar_index_dir)
    stamp = {"model_version": manifest.model_version, "as_of": manifest.as_of}
    user_topk = user_topk.with_columns(**{c: pl.lit(v) for c, v in stamp.items()})
    show_similar = show_similar.with_columns(**{c: pl.lit(v) for c, v in stamp.items()})
    forecast = _forecast(wd, lake, log)
    with log.stage("publish"):
        # a user who has seen every aired show has nothing left to be recommended
        open_users = sum(len(e) < len(ids) for e in exclude)
        refs = _stage_tables(wd, release, lake, user_topk, show_similar, stamp, open_users)
        if forecast is not None:
            _stage_forecast(wd, release, lake, forecast)
        _write_recommendations(release, user_topk, as_of)
        write_manifest(release, manifest.to_json(), _lake_version(wd))
    return RecommendSummary(
        manifest.model_version,
        manifest.as_of,
        len(users),
        len(ids),
        k,
        refs[USER_TABLE].n_rows,
        refs[SHOW_TABLE].n_rows,
        refs[USER_TABLE].version,
        refs[SHOW_TABLE].version,
        user_index.index.backend_name,
        rate,
        release.number,
        forecast.height if forecast is not None else 0,
        user_index.index.index_type,
        depth,
        recall,
        sharding.shards,
    )


def _stage_tables(
    wd: Workdir,
    release: ReleaseStage,
    lake: Dataset,
    user_topk: pl.DataFrame,
    show_similar: pl.DataFrame,
    stamp: dict[str, str],
    n_users: int,
) -> dict[str, TableRef]:
    """Both tables as new versions, checked against the release's own lake, named by it."""
    lake.shows.select("show_id", "title", "premiered", "genres").write_parquet(release.shows_file)
    shows = show_list(lake.shows.select("show_id", "title", "premiered"))
    lake_users = set(lake.users["user_id"].to_list()) | set(lake.events["user_id"].to_list())
    lake_shows = set(lake.shows["show_id"].to_list())
    n_shows = show_similar["show_id"].n_unique()
    catalog = Catalog(wd.root)
    specs = {
        USER_TABLE: (user_topk, topk_checks("user_id", "show_id", lake_users, lake_shows, n_users)),
        SHOW_TABLE: (
            show_similar,
            topk_checks("show_id", "similar_show_id", lake_shows, lake_shows, n_shows),
        ),
    }
    for name, (frame, checks) in specs.items():
        ref = catalog.add_version(
            name, frame, checks=checks, run_id=release.run_id, shows=shows, **stamp
        )
        release.add_table(name, ref)
    return dict(release.tables)


def _forecast(wd: Workdir, lake: Dataset, log: StageLog) -> pl.DataFrame | None:
    """The show forecast of the temporal model trained on this lake, if there is one."""
    from tvrec.jobs.forecast import forecast_table, trained_forecaster

    model = trained_forecaster(wd)
    if model is None or model.manifest is None:
        return None
    with log.stage("show forecast"):
        stamp = {"model_version": model.manifest.model_version, "as_of": model.manifest.as_of}
        return forecast_table(model, stamp)  # type: ignore[arg-type]


def _stage_forecast(wd: Workdir, release: ReleaseStage, lake: Dataset, frame: pl.DataFrame) -> None:
    """The forecast as a table version named by the release, and as Feast's source."""
    from tvrec.jobs.forecast import FORECAST_TABLE

    lake_shows = set(lake.shows["show_id"].to_list())

    def shows_in_lake(df: pl.DataFrame) -> None:
        unknown = set(df["show_id"].to_list()) - lake_shows
        if unknown:
            raise ConfigError(f"the forecast names shows not in the lake: {sorted(unknown)[:5]}")

    ref = Catalog(wd.root).add_version(
        FORECAST_TABLE,
        frame.drop("event_timestamp"),
        checks=[shows_in_lake],
        model_version=str(frame["model_version"][0]) if frame.height else None,
        as_of=str(frame["as_of"][0]) if frame.height else None,
        run_id=release.run_id,
    )
    release.add_table(FORECAST_TABLE, ref)
    frame.write_parquet(release.path / f"{FORECAST_TABLE}.parquet")


def _lake_version(wd: Workdir) -> str | None:
    """The lake version the release was built from (its versioned directory's name)."""
    return wd.lake.resolve().name if wd.lake.exists() else None


def _index(
    vectors: np.ndarray,
    ids: list[str],
    manifest: ModelManifest,
    metric: str,
    settings: IndexSettings,
) -> ShowIndex:
    return make_show_index(
        np.ascontiguousarray(vectors, dtype=np.float32),
        ids,
        model_name=manifest.model_name,
        model_version=manifest.model_version,
        feature_service=manifest.feature_service,
        data_snapshot=manifest.data_snapshot,
        as_of=manifest.as_of,
        cfg=IndexConfig(metric=metric, **settings.model_dump()),
    )


def _recall(
    model: Recommender, index: ShowIndex, vectors: np.ndarray, users: list[str], k: int, n: int
) -> float | None:
    """Recall@k of an approximate user index against exact search, on up to `n` users
    sampled with a fixed seed (None: the index is exact, or nothing to sample)."""
    if index.index.index_type == "flat" or not users or n == 0:
        return None
    rng = np.random.default_rng(0)
    sample = [users[i] for i in sorted(rng.choice(len(users), min(n, len(users)), replace=False))]
    return measure_recall(index.index, vectors, model.user_embeddings(sample), k)


def _not_premiered(shows: pl.DataFrame, ids: list[str], as_of: date) -> set[int]:
    """Rows of shows whose premiere is after the as-of date (unknown dates stay eligible)."""
    later = set(shows.filter(~aired_by(as_of))["show_id"].to_list())
    return {i for i, s in enumerate(ids) if s in later}


def _users(events: pl.DataFrame, users: pl.DataFrame, as_of: datetime) -> list[str]:
    """Everyone with history before the as-of time, plus registered users without any."""
    seen = events.filter(pl.col("event_timestamp") < as_of)["user_id"].unique()
    return sorted(set(seen.to_list()) | set(users["user_id"].to_list()))


def _seen(
    events: pl.DataFrame, users: list[str], ids: list[str], as_of: datetime
) -> list[set[int]]:
    """Show rows each user watched before the as-of time (never recommended again)."""
    rows = pl.DataFrame({"show_id": ids, "row": np.arange(len(ids))})
    watched = (
        events.filter(pl.col("event_timestamp") < as_of)
        .select("user_id", "show_id")
        .unique()
        .join(rows, on="show_id")
        .group_by("user_id")
        .agg("row")
    )
    by_user = dict(zip(watched["user_id"].to_list(), watched["row"].to_list(), strict=True))
    return [set(by_user.get(u, [])) for u in users]


def _depth(model: Recommender, k: int) -> int:
    """Shows retrieved per user: k, or a two-stage model's candidates to re-rank."""
    return max(k, model.config.candidates) if hasattr(model, "rerank") else k


def user_topk_table(
    model: Recommender, index: ShowIndex, users: list[str], exclude: list[set[int]], k: int
) -> pl.DataFrame:
    """Top-k per user by batched index search; `exclude[i]`: rows user i must not get.

    Users are batched by how many shows they exclude, so each search asks for only
    k + (the batch's largest exclusion) candidates instead of the global largest."""
    order = np.argsort([len(e) for e in exclude], kind="stable")
    rerank = getattr(model, "rerank", None)  # a two-stage model re-ranks its candidates
    wanted = _depth(model, k)
    parts = []
    for start in range(0, len(users), BATCH):
        rows_ = order[start : start + BATCH]
        chunk = [users[i] for i in rows_]
        queries = model.user_embeddings(chunk)  # (chunk, dim)
        scores, rows = index.index.search(queries, wanted, [exclude[i] for i in rows_])
        if rerank is None:
            parts.append(_frame("user_id", chunk, "show_id", index.ids, scores, rows))
            continue
        ranked = rerank(chunk, rows, k, [exclude[i] for i in rows_])  # (chunk, k) each
        frame = _frame("user_id", chunk, "show_id", index.ids, ranked.scores, ranked.rows)
        valid = ranked.rows.reshape(-1) >= 0
        parts.append(
            frame.with_columns(
                confidence=pl.Series(ranked.confidence.reshape(-1)[valid], dtype=pl.Float32),
                because=pl.Series(ranked.because.reshape(-1)[valid], dtype=pl.String),
            )
        )
    # sorted by user: `tvrec query` reads one user's rows by predicate pushdown
    return pl.concat(parts).sort("user_id", "rank")


def _show_similar(
    index: ShowIndex, vectors: np.ndarray, upcoming: set[int], k: int
) -> pl.DataFrame:
    ids = index.ids
    exclude = [{i} | upcoming for i in range(len(ids))]  # never itself, never unaired
    scores, rows = index.index.search(vectors, k, exclude)
    return _frame("show_id", ids, "similar_show_id", ids, scores, rows)


def _frame(
    key: str, keys: list[str], item: str, ids: list[str], scores: np.ndarray, rows: np.ndarray
) -> pl.DataFrame:
    """Long (key, rank, item, score) rows from (q, k) search results, -1 padding dropped."""
    q, k = rows.shape
    valid = rows.reshape(-1) >= 0
    id_arr = np.asarray(ids, dtype=object)
    return pl.DataFrame(
        {
            key: np.repeat(np.asarray(keys, dtype=object), k)[valid],
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), q)[valid],
            item: id_arr[rows.reshape(-1)[valid]],
            "score": scores.reshape(-1)[valid].astype(np.float32),
        },
        schema={key: pl.String, "rank": pl.Int32, item: pl.String, "score": pl.Float32},
    )


def topk_checks(key: str, item: str, keys: set[str], items: set[str], n_keys: int) -> list:
    """Checks a top-k table must pass before it may become current."""

    def every_key_present(df: pl.DataFrame) -> None:
        missing = n_keys - df[key].n_unique()
        if missing:
            raise ValueError(f"{missing} {key}s have no rows")

    def ranks_unique_and_dense(df: pl.DataFrame) -> None:
        g = df.group_by(key).agg(
            pl.col("rank").n_unique().alias("u"),
            pl.len().alias("n"),
            pl.col("rank").max().alias("m"),
        )
        if g.filter((pl.col("u") != pl.col("n")) | (pl.col("m") != pl.col("n"))).height:
            raise ValueError("duplicate or missing ranks")
        if df.select(pl.struct(key, item).is_duplicated().any()).item():
            raise ValueError(f"an {item} appears twice for one {key}")

    def ids_in_lake(df: pl.DataFrame) -> None:
        bad_k = set(df[key].unique().to_list()) - keys
        bad_i = set(df[item].unique().to_list()) - items
        if bad_k or bad_i:
            raise ConfigError(
                f"the {key} table names ids that are not in the lake it is published with "
                f"({key}: {sorted(bad_k)[:5]}, {item}: {sorted(bad_i)[:5]}); the model was "
                "trained on other data: retrain it (`tvrec run`)"
            )

    return [ids_in_lake, every_key_present, ranks_unique_and_dense]


def _write_recommendations(release: ReleaseStage, user_topk: pl.DataFrame, as_of: datetime) -> None:
    """The user top-k as Feast's `user_recommendations` source: one row per user."""
    table = (
        user_topk.sort("user_id", "rank")
        .group_by("user_id", maintain_order=True)
        .agg(
            pl.col("show_id").alias("show_ids"),
            pl.col("score").alias("scores"),
            pl.col("model_version").first(),
        )
        .with_columns(pl.lit(as_of).dt.cast_time_unit("us").alias("event_timestamp"))
    )
    table.write_parquet(release.path / RECOMMENDATIONS)
