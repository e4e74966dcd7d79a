"""The synthetic TV world: deterministic, valid under the contract, and the planted answers are
really in the tables (measured on WorldConfig.small())."""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tvrec.pipelines import synthetic as syn
from tvrec.pipelines.contract import (
    SCHEMAS,
    Dataset,
    RawDataset,
    canonicalize,
    read_contract_dir,
)
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.synthetic import PlantedTruth, WorldConfig, generate_world, write_world

CFG = WorldConfig.small()


@pytest.fixture(scope="module")
def world() -> tuple[RawDataset, PlantedTruth, Dataset]:
    raw, truth = generate_world(CFG)
    return raw, truth, canonicalize(raw)


@pytest.fixture(scope="module")
def events(world: tuple[RawDataset, PlantedTruth, Dataset]) -> pl.DataFrame:
    """Canonical events with the planted clusters and calendar fields attached."""
    _, truth, ds = world
    return ds.events.with_columns(
        pl.col("user_id").replace_strict(truth.user_cluster).alias("user_cluster"),
        pl.col("show_id").replace_strict(truth.show_cluster).alias("show_cluster"),
        pl.col("event_timestamp").dt.month().alias("month"),
        pl.col("event_timestamp").dt.weekday().alias("weekday"),  # 1 = Monday .. 7 = Sunday
        pl.col("event_timestamp").dt.hour().alias("hour"),
        pl.col("event_timestamp").dt.date().alias("day"),
    )


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


# ---- determinism, contract, sizes -------------------------------------------------------------
def test_same_seed_gives_identical_tables_and_truth() -> None:
    a, ta = generate_world(CFG)
    b, tb = generate_world(CFG)
    for name in ("shows", "events", "credits", "users"):
        assert getattr(a, name).equals(getattr(b, name)), name
    assert ta == tb
    c, tc = generate_world(replace(CFG, seed=CFG.seed + 1))
    assert not c.events.equals(a.events)
    assert tc.user_cluster != ta.user_cluster


def test_small_world_generates_fast() -> None:
    t0 = time.perf_counter()
    generate_world(CFG)
    assert time.perf_counter() - t0 < 2.0


def test_canonicalize_accepts_the_world_with_exact_sizes(world) -> None:
    raw, _, ds = world
    assert ds.shows.height == CFG.n_shows == 200
    assert ds.events.height == CFG.n_events == 15_000
    assert ds.users.height == CFG.n_users == 300
    for name, df in ds.tables().items():
        assert dict(df.schema) == SCHEMAS[name], name
    assert ds.shows["show_id"].n_unique() == ds.shows.height
    assert ds.shows["title"].n_unique() == ds.shows.height  # titles are unique
    assert ds.timed and ds.events["event_type"].unique().to_list() == ["play"]
    # extra columns travel in `attributes`
    assert {json.loads(a)["status"] for a in ds.shows["attributes"]} == {
        "Running",
        "Ended",
        "In Development",
    }
    assert set(json.loads(ds.users["attributes"][0])) == {
        "country",
        "age_band",
        "plan",
        "signup_date",
    }
    # canonicalize keeps the generator's own order (already sorted by time, user, show)
    assert ds.events.select("user_id", "show_id").equals(raw.events.select("user_id", "show_id"))


def test_show_fields_are_plausible(world) -> None:
    _, _, ds = world
    s = ds.shows
    assert s["genres"].list.len().is_between(1, 3).all()
    assert s["platforms"].list.len().is_between(1, 2).all()
    assert (s["seasons"] >= 1).all() and (s["episodes"] >= s["seasons"]).all()
    assert s["runtime_minutes"].is_between(10, 95).all()
    assert (s["premiered"] < CFG.start).sum() > 0.4 * s.height  # many older shows
    assert s.null_count().select(pl.exclude("attributes")).sum_horizontal().item() == 0


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        WorldConfig(n_clusters=len(syn.GENRE_FAMILIES) + 1)
    with pytest.raises(ConfigError, match=r"40 shows are too few.* use at least 116"):
        WorldConfig(n_shows=40)  # fewer regular shows than the planted structures need
    WorldConfig(n_shows=116)  # the least it names is enough
    empty, _ = generate_world(WorldConfig(n_users=20, n_shows=200, n_events=0))
    assert empty.events.height == 0 and canonicalize(empty).events.height == 0


# ---- taste clusters ---------------------------------------------------------------------------
def test_users_watch_mostly_their_own_cluster(events: pl.DataFrame, world) -> None:
    _, truth, _ = world
    same = events["user_cluster"] == events["show_cluster"]
    assert same.mean() > 0.7
    per = events.group_by("user_cluster").agg(
        (pl.col("user_cluster") == pl.col("show_cluster")).mean().alias("f"), pl.len()
    )
    assert per.filter(pl.col("len") >= 300)["f"].min() > 0.6
    # the same measure with shuffled user labels is near chance: the check can fail
    rng = np.random.default_rng(0)
    users = sorted(truth.user_cluster)
    shuffled = dict(
        zip(users, rng.permutation([truth.user_cluster[u] for u in users]), strict=True)
    )
    fake = events["user_id"].replace_strict(shuffled, return_dtype=pl.Int64)
    assert (fake == events["show_cluster"]).mean() < 0.3


def test_genres_follow_the_cluster(world) -> None:
    _, truth, ds = world
    assert set(truth.cluster_genres) == set(range(CFG.n_clusters))
    for show_id, genres in ds.shows.select("show_id", "genres").iter_rows():
        family = truth.cluster_genres[truth.show_cluster[show_id]]
        assert genres[0] == family[0] and set(genres) <= set(family)


def test_a_query_naming_a_cluster_vocabulary_retrieves_that_cluster(world) -> None:
    _, truth, ds = world
    docs = [(s, _words(d)) for s, d in ds.shows.select("show_id", "description").iter_rows()]
    for c in range(CFG.n_clusters):
        query = set(syn.GENRE_FAMILIES[c].vocabulary[:10])
        ranked = sorted(docs, key=lambda d: (-len(query & d[1]), d[0]))
        assert {truth.show_cluster[s] for s, _ in ranked[:5]} == {c}
        # and the best match of another cluster's words is never a show of this one
        other = set(syn.GENRE_FAMILIES[(c + 1) % CFG.n_clusters].vocabulary[:10])
        assert truth.show_cluster[max(docs, key=lambda d: len(other & d[1]))[0]] != c


def test_vocabularies_are_distinct_and_absent_from_the_templates() -> None:
    vocab = [set(f.vocabulary) for f in syn.GENRE_FAMILIES]
    assert sum(map(len, vocab)) == len(set().union(*vocab))
    nouns = [set(f.title_nouns) for f in syn.GENRE_FAMILIES]
    assert sum(map(len, nouns)) == len(set().union(*nouns))
    filler = " ".join(
        (
            *syn.OPENINGS,
            *syn.MIDDLES,
            syn.CLOSING,
            syn.LEAD_SCRIPTED,
            syn.LEAD_UNSCRIPTED,
            syn.CHRISTMAS_OPENING,
        )
    )
    assert not _words(re.sub(r"\{[^}]*\}", " ", filler)) & set().union(*vocab)


def test_networks_lean_to_their_families(world) -> None:
    _, truth, ds = world
    family_nets = [
        network in syn.GENRE_FAMILIES[truth.show_cluster[show_id]].networks
        for show_id, network in ds.shows.select("show_id", "network").iter_rows()
    ]
    assert np.mean(family_nets) > 0.6  # 75% planted; a random network would give ~10%


def test_cast_comes_from_cluster_communities(world) -> None:
    _, truth, ds = world
    cr = ds.credits.with_columns(
        pl.col("show_id").replace_strict(truth.show_cluster).alias("cluster")
    )
    per_show = cr.group_by("show_id").agg(
        (pl.col("role") == "actor").sum().alias("actors"),
        (pl.col("role") == "creator").sum().alias("creators"),
        (pl.col("role") == "director").sum().alias("directors"),
    )
    assert per_show.height == ds.shows.height
    assert per_show["actors"].is_between(4, 8).all()
    assert (per_show["creators"] == 1).all() and (per_show["directors"] == 1).all()
    actors = cr.filter(pl.col("role") == "actor")
    per_actor = actors.group_by("person_id").agg(
        pl.len(), pl.col("cluster").mode().first().alias("home")
    )
    assert per_actor["len"].mean() > 2.5  # actors recur
    home = actors.join(per_actor, on="person_id")
    assert (home["cluster"] == home["home"]).mean() > 0.9  # ... within their cluster


def test_popularity_is_skewed(events: pl.DataFrame, world) -> None:
    _, _, ds = world
    counts = events.group_by("show_id").len().sort("len", descending=True)["len"]
    top = counts.head(ds.shows.height // 10).sum() / events.height
    assert top > 0.3  # the top 10% of shows hold far more than 10% of the views


# ---- planted shows ----------------------------------------------------------------------------
def test_near_duplicate_pairs_share_content(world) -> None:
    _, truth, ds = world
    shows = {r["show_id"]: r for r in ds.shows.iter_rows(named=True)}
    cast = {
        s: set(p) for s, p in ds.credits.group_by("show_id").agg(pl.col("person_id")).iter_rows()
    }
    assert len(truth.near_duplicate_pairs) == CFG.n_near_duplicate_pairs
    pair_sims = []
    for a, b in truth.near_duplicate_pairs:
        sa, sb = shows[a], shows[b]
        assert sb["title"] in (sa["title"] + " II", sa["title"] + " Revisited")
        for field in ("genres", "network", "platforms", "type", "language"):
            assert sa[field] == sb[field], field
        assert truth.show_cluster[a] == truth.show_cluster[b]
        assert _jaccard(cast[a], cast[b]) >= 0.6
        pair_sims.append(_jaccard(_words(sa["description"]), _words(sb["description"])))
    # every planted pair is closer in words than any other pair of the catalogue
    planted = {frozenset(p) for p in truth.near_duplicate_pairs}
    words = {s: _words(r["description"]) for s, r in shows.items()}
    others = [
        _jaccard(words[a], words[b])
        for a, b in itertools.combinations(sorted(shows), 2)
        if frozenset((a, b)) not in planted
    ]
    assert min(pair_sims) > 0.7
    assert min(pair_sims) > max(others)
    assert np.mean(others) < 0.2


def test_december_shows_peak_in_december(events: pl.DataFrame, world) -> None:
    _, truth, _ = world
    dec = events.filter(pl.col("show_id").is_in(truth.december_shows))
    others = events.filter(~pl.col("show_id").is_in(truth.december_shows))
    per_show = dec.group_by("show_id").agg(pl.len(), (pl.col("month") == 12).mean().alias("f"))
    assert per_show.height == CFG.n_december_shows  # every special is watched
    assert per_show.filter(pl.col("len") >= 30)["f"].min() > 0.5
    dec_share = (dec["month"] == 12).mean()
    other_share = (others["month"] == 12).mean()
    assert dec_share > 0.75
    assert 0.05 < other_share < 0.16  # about 1/12, plus the holiday peak
    # each December of the window brings its own peak
    assert set(dec.filter(pl.col("month") == 12)["event_timestamp"].dt.year()) == {2024, 2025}


def test_no_event_before_premiere_or_outside_the_window(events: pl.DataFrame, world) -> None:
    _, _, ds = world
    joined = events.join(ds.shows.select("show_id", "premiered"), on="show_id")
    assert joined.filter(pl.col("day") < pl.col("premiered")).height == 0
    assert events["day"].min() >= CFG.start
    assert events["day"].max() < CFG.start + timedelta(days=CFG.days)


def test_upcoming_and_cold_start_shows(events: pl.DataFrame, world) -> None:
    _, truth, ds = world
    end = CFG.start + timedelta(days=CFG.days)
    cutoff = CFG.start + timedelta(days=int(0.9 * CFG.days))
    premiered = dict(ds.shows.select("show_id", "premiered").iter_rows())
    assert len(truth.upcoming_shows) == CFG.n_upcoming_shows
    assert all(premiered[s] > end for s in truth.upcoming_shows)
    assert events.filter(pl.col("show_id").is_in(truth.upcoming_shows)).height == 0
    assert len(truth.cold_start_shows) == CFG.n_cold_start_shows
    assert all(cutoff <= premiered[s] < end for s in truth.cold_start_shows)
    cold = events.filter(pl.col("show_id").is_in(truth.cold_start_shows))
    assert cold.filter(pl.col("day") < cutoff).height == 0
    assert cold.height > 0  # a premiere bump before the window closes
    # all the special lists are disjoint
    specials = [
        *truth.december_shows,
        *truth.cold_start_shows,
        *truth.upcoming_shows,
        *(b for _, b in truth.near_duplicate_pairs),
    ]
    assert len(set(specials)) == len(specials)


# ---- rhythm and sessions ----------------------------------------------------------------------
def test_weekly_daily_and_holiday_rhythm(events: pl.DataFrame, world) -> None:
    _, truth, _ = world
    assert (events["weekday"] >= 6).mean() > 2 / 7 + 0.03
    assert events["hour"].is_between(18, 23).mean() > 0.45  # evenings
    assert events["hour"].is_between(3, 6).mean() < 0.06  # the small hours are quiet (uniform: 1/6)
    regular = events.filter(~pl.col("show_id").is_in(truth.december_shows))
    daily = regular.group_by("day").len()
    late_december = daily.filter((pl.col("day").dt.month() == 12) & (pl.col("day").dt.day() >= 20))
    assert late_december["len"].mean() > 1.2 * daily["len"].mean()


def test_sessions_are_binges_of_one_show(events: pl.DataFrame, world) -> None:
    _, _, ds = world
    per_evening = events.group_by("user_id", "show_id", "day").len()
    assert per_evening["len"].mean() > 1.7
    # weight is the watched fraction of an episode; watch_seconds follows from the runtime
    assert events["weight"].is_between(0.1, 1.0).all()
    runtime = events.join(ds.shows.select("show_id", "runtime_minutes"), on="show_id")
    expected = runtime["weight"] * runtime["runtime_minutes"] * 60
    assert ((runtime["watch_seconds"] - expected).abs() < 0.06).all()


# ---- persistence ------------------------------------------------------------------------------
def test_truth_json_round_trip(world) -> None:
    _, truth, _ = world
    again = PlantedTruth.from_json(json.loads(json.dumps(truth.to_json())))
    assert again == truth
    assert isinstance(again.near_duplicate_pairs[0], tuple)
    assert set(again.cluster_genres) == set(range(CFG.n_clusters))


def test_write_world_round_trips_through_the_contract(tmp_path: Path, world) -> None:
    _, truth, ds = world
    out = tmp_path / "w"
    assert write_world(out, CFG) == truth
    assert sorted(p.name for p in out.iterdir()) == [
        "credits.parquet",
        "events.parquet",
        "shows.parquet",
        "truth.json",
        "users.parquet",
    ]
    back = canonicalize(read_contract_dir(out))
    for name, df in ds.tables().items():
        assert back.tables()[name].equals(df), name
    assert PlantedTruth.from_json(json.loads((out / "truth.json").read_text())) == truth


@pytest.mark.slow
def test_demo_world_has_the_demo_sizes() -> None:
    """Speed is measured by bench/, not asserted here."""
    raw, truth = generate_world(WorldConfig())
    assert raw.events.height == 300_000 and raw.shows.height == 1500
    assert len(truth.user_cluster) == 5000
    assert len(truth.near_duplicate_pairs) == 20 and len(truth.december_shows) == 10
