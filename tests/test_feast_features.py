"""Features in Feast on the synthetic world: registry contents, online answers with known
values, and point-in-time training sets that cannot see their own future."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tvrec.jobs.cli import app
from tvrec.pipelines.build import build_features, read_manifest
from tvrec.pipelines.config import Settings
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.features.temporal import to_us
from tvrec.pipelines.ingest import ingest, read_lake
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.store import feature_store, online_features
from tvrec.pipelines.synthetic import PlantedTruth
from tvrec.pipelines.training import training_set
from tvrec.pipelines.workdir import Workdir

runner = CliRunner()
FAMILIES = {
    "show_metadata",
    "show_text",
    "show_graph",
    "show_popularity",
    "show_seasonality",
    "user_activity",
    "user_genre_affinity",
}
SERVICES = {
    "collaborative_v1",
    "multimodal_v1",
    "contrastive_v1",
    "graph_v1",
    "temporal_v1",
    "meta_v1",
    "ensemble_v1",
}


def _floor_day(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def test_registry_holds_every_family_and_service(built_workdir: Workdir) -> None:
    store = feature_store(built_workdir.root)
    serving = {"user_recommendations", "show_forecast"}  # once a test has served a model
    assert {fv.name for fv in store.list_feature_views()} - serving == FAMILIES
    assert {fs.name for fs in store.list_feature_services()} == SERVICES
    assert {e.name for e in store.list_entities()} >= {"show", "user"}


def test_online_features_match_the_event_log(built_workdir: Workdir, truth: PlantedTruth) -> None:
    events = read_lake(built_workdir).events
    store = feature_store(built_workdir.root)
    user = events["user_id"][0]
    got = online_features(store, user=user)
    assert got["user_activity__events_total"] == [events.filter(pl.col("user_id") == user).height]
    show = truth.december_shows[0]
    got = online_features(store, show=show)
    assert got["show_popularity__views_total"] == [events.filter(pl.col("show_id") == show).height]
    # a planted Christmas show: most of its audience comes in December
    assert got["show_seasonality__december_share"][0] > 0.5
    assert len(got["show_text__text_embedding"][0]) == 384


def test_features_get_cli(built_workdir: Workdir) -> None:
    user = read_lake(built_workdir).events["user_id"][0]
    res = runner.invoke(
        app, ["features", "get", "--user", user, "--workdir", str(built_workdir.root), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["user_activity__events_total"] > 0
    res = runner.invoke(
        app, ["features", "get", "--user", "nobody", "--workdir", str(built_workdir.root)]
    )
    assert res.exit_code == 2 and "nobody" in res.stderr


def test_training_set_is_point_in_time(built_workdir: Workdir) -> None:
    events = read_lake(built_workdir).events
    df = pl.from_pandas(training_set(built_workdir, "temporal_v1", negatives=1, limit=3000))
    assert df.filter(pl.col("label") == 1).height == 3000
    assert df.filter(pl.col("label") == 0).height > 2500
    sample = df.filter(pl.col("label") == 1).sample(200, seed=1)
    for row in sample.iter_rows(named=True):
        snap = _floor_day(row["event_timestamp"])
        user_ev = events.filter(pl.col("user_id") == row["user_id"])
        show_ev = events.filter(pl.col("show_id") == row["show_id"])
        expected_user = user_ev.filter(pl.col("event_timestamp") < snap).height
        expected_show = show_ev.filter(pl.col("event_timestamp") < snap).height
        # rows before the first snapshot have no features yet (null), never future ones
        assert (row["user_activity__events_total"] or 0) == expected_user
        assert (row["show_popularity__views_total"] or 0) == expected_show
        # the row's own event is never counted
        assert (
            expected_user
            < user_ev.filter(pl.col("event_timestamp") <= row["event_timestamp"]).height
        )


def test_negatives_are_unseen_before_their_time(built_workdir: Workdir) -> None:
    events = read_lake(built_workdir).events
    df = pl.from_pandas(training_set(built_workdir, "collaborative_v1", negatives=2, limit=2000))
    neg = df.filter(pl.col("label") == 0).select("user_id", "show_id", "event_timestamp")
    seen = neg.join(
        events.select("user_id", "show_id", pl.col("event_timestamp").alias("seen")),
        on=["user_id", "show_id"],
    ).filter(pl.col("seen") < pl.col("event_timestamp"))
    assert seen.height == 0


def test_adversarial_future_events_change_nothing(
    built_workdir: Workdir, world_dir: Path, tmp_path: Path
) -> None:
    """Add events at and after each probe row's own time, rebuild: the probe rows' features
    must be identical. A leak (counting events at t, or snapshots after t) changes them."""
    as_of = datetime.fromisoformat(read_manifest(built_workdir)["as_of"])
    base = pl.from_pandas(training_set(built_workdir, "ensemble_v1", negatives=0, limit=400))
    probes = base.sample(20, seed=3)
    # extra events for every probe's (user, show), all at or after the LATEST probe time, so
    # they lie at or after each probe's own time and in no probe's past
    t_max = probes["event_timestamp"].max()
    extra = [
        {"user_id": r["user_id"], "show_id": r["show_id"], "event_timestamp": t_max + dt}
        for r in probes.iter_rows(named=True)
        for dt in (timedelta(0), timedelta(microseconds=1), timedelta(hours=5), timedelta(days=3))
        if t_max + dt < as_of
    ]
    events = pl.read_parquet(world_dir / "events.parquet")
    extra_df = pl.DataFrame(extra).with_columns(pl.col("event_timestamp").dt.cast_time_unit("us"))
    events = pl.concat([events, extra_df], how="diagonal_relaxed")
    events.write_parquet(world_dir / "events.parquet")
    wd = Workdir(tmp_path / "work")
    ingest(world_dir, "contract", wd)
    shutil.copytree(built_workdir.cache, wd.cache)  # reuse text embeddings
    build_features(wd, Settings.load(wd.root), as_of=as_of, log=StageLog(quiet=True))
    after = pl.from_pandas(training_set(wd, "ensemble_v1", negatives=0))
    keys = ["user_id", "show_id", "event_timestamp"]
    joined = probes.join(after.unique(subset=keys), on=keys, suffix="_after")
    assert joined.height == probes.height
    for col in [c for c in probes.columns if c not in (*keys, "label")]:
        assert joined[col].to_list() == joined[f"{col}_after"].to_list(), col


def test_as_of_run_ignores_later_events(built_workdir: Workdir, tmp_path: Path) -> None:
    src = built_workdir
    wd = Workdir(tmp_path / "work")
    shutil.copytree(src.lake.resolve(), tmp_path / "lake_copy")
    events = pl.read_parquet(tmp_path / "lake_copy" / "events.parquet")
    cut = _floor_day(events["event_timestamp"].quantile(0.5, "nearest")) + timedelta(hours=7)
    ingest(tmp_path / "lake_copy", "contract", wd)
    shutil.copytree(src.cache, wd.cache)
    summary = build_features(wd, Settings.load(wd.root), as_of=cut, log=StageLog(quiet=True))
    before_cut = events.filter(pl.col("event_timestamp") < cut)
    assert summary.events_used == before_cut.height
    assert summary.events_after_as_of == events.height - before_cut.height > 0
    for name in FAMILIES:
        latest = pl.read_parquet(wd.features / f"{name}.parquet")["event_timestamp"].max()
        assert latest <= cut, name
    user = before_cut["user_id"][-1]
    got = online_features(feature_store(wd.root), user=user)
    assert got["user_activity__events_total"] == [
        before_cut.filter(pl.col("user_id") == user).height
    ]
    with pytest.raises(ConfigError):
        training_set(wd, "collaborative_v1", as_of=cut + timedelta(days=1))


def test_as_of_cli_rejects_garbage(built_workdir: Workdir) -> None:
    res = runner.invoke(
        app, ["features", "build", "--as-of", "next tuesday", "--workdir", str(built_workdir.root)]
    )
    assert res.exit_code == 2 and "ISO-8601" in res.stderr


def _dense_value(ts: list[datetime], t: datetime, days: int | None) -> int:
    """Events in [t - days, t) (all events < t when days is None)."""
    lo = None if days is None else t - timedelta(days=days)
    return sum(1 for x in ts if x < t and (lo is None or x >= lo))


def test_sparse_tables_through_feast_give_the_dense_snapshot_values(
    built_workdir: Workdir,
) -> None:
    """Popularity and activity hold a row only where a value changes; joined by Feast at a
    training row's time T (no TTL), every value is the dense daily snapshot's at the last
    midnight <= T, even when the show's latest row is weeks older than T."""
    events = read_lake(built_workdir).events
    first_snapshot = _floor_day(events["event_timestamp"].min()) + timedelta(days=1)
    df = pl.from_pandas(training_set(built_workdir, "temporal_v1", negatives=1, limit=1500))
    popularity = pl.read_parquet(built_workdir.features / "show_popularity.parquet")
    gaps = []
    for row in df.sample(150, seed=5).iter_rows(named=True):
        t = row["event_timestamp"]
        snap = _floor_day(t)
        shows_ts = events.filter(pl.col("show_id") == row["show_id"])["event_timestamp"]
        user_ts = events.filter(pl.col("user_id") == row["user_id"])["event_timestamp"]
        shows_ts, user_ts = shows_ts.to_list(), user_ts.to_list()
        if snap < first_snapshot:
            assert row["show_popularity__views_total"] is None
            continue
        for w in (7, 30, 365):
            assert row[f"show_popularity__views_{w}d"] == _dense_value(shows_ts, snap, w)
        views_7d, views_30d = _dense_value(shows_ts, snap, 7), _dense_value(shows_ts, snap, 30)
        assert row["show_popularity__views_total"] == _dense_value(shows_ts, snap, None)
        trend = views_7d / max(1.0, views_30d * 7 / 30)
        assert row["show_popularity__trend"] == pytest.approx(trend, rel=1e-6)
        before = [x for x in user_ts if x < snap]
        if not before:  # the user's first snapshot is the midnight after their first event
            assert row["user_activity__events_total"] is None
            continue
        assert row["user_activity__events_total"] == len(before)
        assert row["user_activity__events_7d"] == _dense_value(user_ts, snap, 7)
        assert row["user_activity__events_30d"] == _dense_value(user_ts, snap, 30)
        assert row["user_activity__last_event_us"] == to_us(max(before))
        stamped = popularity.filter(
            (pl.col("show_id") == row["show_id"]) & (pl.col("event_timestamp") <= t)
        )["event_timestamp"].max()
        gaps.append(t - stamped)
    assert max(gaps) > timedelta(days=14)  # old rows still join: the views have no TTL


def test_feature_tables_grow_with_events_not_days(built_workdir: Workdir) -> None:
    as_of = datetime.fromisoformat(read_manifest(built_workdir)["as_of"])
    events = read_lake(built_workdir).events
    days = (as_of - _floor_day(events["event_timestamp"].min())).days
    shows = read_lake(built_workdir).shows.height
    for name in ("show_popularity", "show_seasonality", "show_graph"):
        table = pl.read_parquet(built_workdir.features / f"{name}.parquet")
        final = table.filter(pl.col("event_timestamp") == as_of)
        assert final["show_id"].n_unique() == final.height == shows, name  # all, at as_of
    popularity = pl.read_parquet(built_workdir.features / "show_popularity.parquet")
    assert popularity.height < shows * days / 4  # the dense table: shows x days
    assert popularity.height < 8 * events.height
