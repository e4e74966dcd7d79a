"""Feature builders: known answers on hand-built logs, brute-force references, and the
point-in-time rule attacked with hypothesis (extra events at or after t never change a row
stamped <= t)."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from tvrec.pipelines.contract import EVENTS_SCHEMA, SHOWS_SCHEMA
from tvrec.pipelines.features import graph, show, temporal, text
from tvrec.pipelines.features.vocab import Vocab, build_vocab

UTC0 = datetime(1970, 1, 1, tzinfo=UTC)
D0 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
TS = pl.Datetime("us", "UTC")


def day(n: float, hours: float = 0.0) -> datetime:
    """D0 + n days + hours."""
    return D0 + timedelta(days=n, hours=hours)


def make_events(rows: list[tuple]) -> pl.DataFrame:
    """Canonical events from (user_id, show_id, timestamp[, weight]) tuples."""
    data = {
        "user_id": [r[0] for r in rows],
        "show_id": [r[1] for r in rows],
        "event_timestamp": [r[2] for r in rows],
        "weight": [r[3] if len(r) > 3 else 1.0 for r in rows],
        "event_type": [None] * len(rows),
        "watch_seconds": [None] * len(rows),
    }
    return pl.DataFrame(data, schema=EVENTS_SCHEMA)


def make_shows(rows: list[dict]) -> pl.DataFrame:
    """Canonical shows; unspecified columns are null (title defaults to the id)."""
    filled = [{"title": r["show_id"], **r} for r in rows]
    return pl.DataFrame([{c: r.get(c) for c in SHOWS_SCHEMA} for r in filled], schema=SHOWS_SCHEMA)


def row(df: pl.DataFrame, key: str, value: str, at: datetime) -> dict:
    """Entity `value`'s values at `at` as Feast joins them: its latest row stamped <= at.

    Tables hold a row only where a value changes, so the value at a snapshot time may come
    from an earlier row; the returned dict's event_timestamp is `at`.
    """
    out = df.filter((pl.col(key) == value) & (pl.col("event_timestamp") <= at))
    assert out.height > 0, f"no row for {value} at or before {at}"
    return {**out.sort("event_timestamp").row(-1, named=True), "event_timestamp": at}


def stamps_of(df: pl.DataFrame, key: str, value: str) -> list[datetime]:
    """The stamps of entity `value`'s rows, ascending."""
    return df.filter(pl.col(key) == value)["event_timestamp"].sort().to_list()


SHOWS = make_shows(
    [
        {
            "show_id": "s1",
            "genres": ["Drama", "Comedy"],
            "network": "HBO",
            "platforms": ["Max", "Prime"],
            "premiered": date(2002, 6, 2),
            "type": "Scripted",
            "seasons": 5,
            "episodes": 60,
            "runtime_minutes": 58.5,
            "language": "English",
            "age_rating": "TV-MA",
        },
        {"show_id": "s2", "genres": ["Drama"], "network": "BBC", "platforms": ["Netflix"]},
        {"show_id": "s3", "genres": [], "network": None},
        {"show_id": "s4"},  # every optional field null
    ]
)


# ---- vocab ----------------------------------------------------------------------------------
def test_vocab_sorted_ids_from_one_and_unknown_is_zero() -> None:
    vocab = build_vocab(SHOWS)
    assert vocab.genres == ["Comedy", "Drama"]
    assert vocab.networks == ["BBC", "HBO"]
    assert vocab.platforms == ["Max", "Netflix", "Prime"]
    assert vocab.index("genres", "Comedy") == 1
    assert vocab.index("genres", "Drama") == 2
    assert vocab.index("genres", "Western") == 0
    assert vocab.index("networks", None) == 0
    assert vocab.size("genres") == 3
    with pytest.raises(KeyError):
        vocab.index("colour", "red")


def test_vocab_json_round_trip() -> None:
    vocab = build_vocab(SHOWS)
    again = Vocab.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again == vocab
    assert again.index("platforms", "Prime") == 3
    with pytest.raises(ValueError):
        Vocab.from_json({**vocab.to_json(), "colours": ["red"]})


# ---- show metadata --------------------------------------------------------------------------
def test_show_metadata_known_values_and_missing_markers() -> None:
    vocab = build_vocab(SHOWS)
    out = show.show_metadata_features(SHOWS, vocab, UTC0)
    assert out["show_id"].to_list() == ["s1", "s2", "s3", "s4"]
    assert out.schema["event_timestamp"] == TS
    assert set(out["event_timestamp"].to_list()) == {UTC0}
    s1, s2, s3, s4 = out.rows(named=True)
    assert s1["year"] == 2002 and s1["premiered_days"] == (date(2002, 6, 2) - date(1970, 1, 1)).days
    assert (s1["seasons"], s1["episodes"], s1["runtime_minutes"]) == (5, 60, 58.5)
    assert s1["genre_ids"] == [2, 1]  # Drama, Comedy in the show's order
    assert s1["n_genres"] == 2
    assert s1["platform_ids"] == [1, 3]
    assert s1["network_id"] == vocab.index("networks", "HBO") == 2
    assert s1["age_rating_id"] == 1 and s1["type_id"] == 1 and s1["language_id"] == 1
    assert (s2["year"], s2["seasons"], s2["episodes"], s2["runtime_minutes"]) == (-1, -1, -1, -1)
    assert s2["premiered_days"] == -1 and s2["age_rating_id"] == 0
    assert (s3["n_genres"], s3["genre_ids"], s3["network_id"], s3["platform_ids"]) == (0, [], 0, [])
    assert (s4["n_genres"], s4["genre_ids"], s4["platform_ids"], s4["type_id"]) == (0, [], [], 0)
    assert out.schema["runtime_minutes"] == pl.Float32
    assert out.schema["genre_ids"] == pl.List(pl.Int64)


# ---- snapshot times -------------------------------------------------------------------------
def test_snapshot_times_daily_weekly_monthly() -> None:
    first, as_of = day(0, 12), day(3, 6)
    assert temporal.snapshot_times(first, as_of) == [day(1), day(2), day(3), as_of]
    # a midnight as_of is the last midnight: no extra snapshot
    assert temporal.snapshot_times(first, day(3)) == [day(1), day(2), day(3)]
    # an event exactly at midnight: the first snapshot is the next midnight
    assert temporal.snapshot_times(day(1), day(2, 1))[0] == day(2)
    weekly = temporal.snapshot_times(day(2), day(20, 1), "week")
    assert weekly == [day(7), day(14), day(20, 1)]  # Mondays, then as_of
    assert all(t.weekday() == 0 for t in weekly[:-1])
    monthly = temporal.snapshot_times(
        datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 15, tzinfo=UTC), "month"
    )
    assert monthly == [
        datetime(2024, 2, 1, tzinfo=UTC),
        datetime(2024, 3, 1, tzinfo=UTC),
        datetime(2024, 3, 15, tzinfo=UTC),
    ]
    assert temporal.snapshot_times(None, as_of) == [as_of]


# ---- show popularity ------------------------------------------------------------------------
POP_EVENTS = make_events([("u1", "s1", day(d, 12)) for d in (1, 2, 10)])


def test_popularity_known_windows() -> None:
    out = temporal.show_popularity(POP_EVENTS, ["s1", "s2"], day(40, 5))
    assert row(out, "show_id", "s1", day(3))["views_7d"] == 2
    assert row(out, "show_id", "s1", day(18))["views_7d"] == 0
    r11 = row(out, "show_id", "s1", day(11))
    assert (r11["views_7d"], r11["views_30d"], r11["views_total"]) == (1, 3, 3)
    assert r11["trend"] == pytest.approx(1 / max(1, 3 * 7 / 30))
    assert row(out, "show_id", "s1", day(33))["views_30d"] == 1  # days 1, 2 left the window
    assert row(out, "show_id", "s1", day(33))["views_total"] == 3


def test_popularity_rows_only_where_values_change() -> None:
    as_of = day(40, 5)
    out = temporal.show_popularity(POP_EVENTS, ["s2", "s1"], as_of)
    # events on days 1, 2, 10 (noon): counted from the next midnight, out of the 7-day window
    # the first midnight after x + 7d (days 9, 10, 18), out of the 30-day one after x + 30d
    # (days 32, 33; day 41 is after as_of); the first snapshot (day 2) and as_of always
    changes = [2, 3, 9, 10, 11, 18, 32, 33]
    assert stamps_of(out, "show_id", "s1") == [day(d) for d in changes] + [as_of]
    assert stamps_of(out, "show_id", "s2") == [day(2), as_of]  # never watched: 0 throughout
    assert out.filter(pl.col("show_id") == "s2")["views_total"].sum() == 0
    assert out["show_id"].to_list() == sorted(out["show_id"].to_list())  # show-major
    assert out["event_timestamp"].max() == as_of
    assert out.columns == [
        "show_id",
        "event_timestamp",
        "views_7d",
        "views_30d",
        "views_365d",
        "views_total",
        "trend",
    ]
    assert out.schema["trend"] == pl.Float32 and out.schema["views_7d"] == pl.Int64


def test_popularity_event_at_snapshot_time_is_not_counted_there() -> None:
    events = make_events([("u1", "s1", day(0, 9)), ("u1", "s1", day(2))])  # second at midnight
    out = temporal.show_popularity(events, ["s1"], day(5))
    assert row(out, "show_id", "s1", day(2))["views_total"] == 1
    assert row(out, "show_id", "s1", day(3))["views_total"] == 2
    # the 7-day window is half-open [t - 7d, t): an event exactly at t - 7d is inside
    out = temporal.show_popularity(events, ["s1"], day(9))
    assert row(out, "show_id", "s1", day(9))["views_7d"] == 1


def test_popularity_final_snapshot_counts_the_partial_day() -> None:
    events = make_events(
        [("u1", "s1", day(0, 9)), ("u1", "s1", day(3, 1)), ("u2", "s1", day(3, 4))]
    )
    as_of = day(3, 4)  # the second event of day 3 is exactly at as_of: cut
    out = temporal.show_popularity(events, ["s1"], as_of)
    assert row(out, "show_id", "s1", day(3))["views_total"] == 1
    assert row(out, "show_id", "s1", as_of)["views_total"] == 2


def test_popularity_ignores_events_after_as_of() -> None:
    as_of = day(12, 3)
    later = make_events([("u9", "s1", as_of), ("u9", "s2", day(13)), ("u9", "s1", day(90))])
    base = temporal.show_popularity(POP_EVENTS, ["s1", "s2"], as_of)
    more = temporal.show_popularity(pl.concat([POP_EVENTS, later]), ["s1", "s2"], as_of)
    assert_frame_equal(base, more)


def _naive_count(ts: list[datetime], lo: datetime | None, hi: datetime) -> int:
    return sum(1 for t in ts if t < hi and (lo is None or t >= lo))


def test_popularity_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    stamps = [day(0) + timedelta(seconds=int(s)) for s in rng.integers(0, 50 * 86400, 120)]
    stamps += [day(d) for d in (3, 10, 17)]  # some exactly at midnight
    shows_of = [f"s{i}" for i in rng.integers(0, 3, len(stamps))]
    events = make_events([("u", s, t) for s, t in zip(shows_of, stamps, strict=True)])
    as_of = day(45, 13.5)
    out = temporal.show_popularity(events, ["s0", "s1", "s2"], as_of)
    for r in out.iter_rows(named=True):
        ts = [t for s, t in zip(shows_of, stamps, strict=True) if s == r["show_id"] and t < as_of]
        t = r["event_timestamp"]
        for w in (7, 30, 365):
            assert r[f"views_{w}d"] == _naive_count(ts, t - timedelta(days=w), t)
        assert r["views_total"] == _naive_count(ts, None, t)


# ---- show seasonality -----------------------------------------------------------------------
def test_seasonality_december_only_show() -> None:
    dec = datetime(2023, 12, 4, 20, tzinfo=UTC)  # a Monday
    events = make_events(
        [
            ("u1", "s1", dec),
            ("u2", "s1", dec + timedelta(days=2)),
            ("u3", "s2", datetime(2024, 1, 3, 8, tzinfo=UTC)),
        ]
    )  # Wednesday
    as_of = datetime(2024, 1, 20, tzinfo=UTC)
    out = temporal.show_seasonality(events, ["s1", "s2"], as_of)
    last = row(out, "show_id", "s1", as_of)
    assert last["december_share"] == pytest.approx(1.0)
    assert last["month_profile"][11] == pytest.approx(1.0) and sum(last["month_profile"]) == 1
    assert last["weekday_profile"] == pytest.approx([0.5, 0, 0.5, 0, 0, 0, 0])
    s2 = out.filter(pl.col("show_id") == "s2").sort("event_timestamp")
    # the first Monday after the first event's day (zeros), then s2's Wednesday event shows
    # from 8 Jan on; nothing changes in between, so no rows there
    assert s2["event_timestamp"].to_list() == [
        datetime(2023, 12, 11, tzinfo=UTC),
        datetime(2024, 1, 8, tzinfo=UTC),
        as_of,
    ]
    assert s2["weekday_profile"][0].to_list() == [0.0] * 7  # no events yet: all zeros
    jan8 = row(out, "show_id", "s2", datetime(2024, 1, 8, tzinfo=UTC))
    assert jan8["weekday_profile"][2] == pytest.approx(1.0) and jan8["december_share"] == 0
    assert len(last["month_profile"]) == 12 and len(last["weekday_profile"]) == 7
    assert out.schema["weekday_profile"] == pl.List(pl.Float32)


def test_seasonality_shares_sum_to_one() -> None:
    rng = np.random.default_rng(3)
    stamps = [day(0) + timedelta(seconds=int(s)) for s in rng.integers(0, 400 * 86400, 200)]
    events = make_events([("u", "s1", t) for t in stamps])
    out = temporal.show_seasonality(events, ["s1"], day(401))
    sums = out.select(pl.col("weekday_profile").list.sum(), pl.col("month_profile").list.sum())
    assert np.allclose(sums.to_numpy(), 1.0, atol=1e-5)
    last = out.row(-1, named=True)
    months = np.bincount([t.month - 1 for t in stamps], minlength=12) / len(stamps)
    assert np.allclose(last["month_profile"], months, atol=1e-6)


# ---- user activity --------------------------------------------------------------------------
def test_user_activity_known_values() -> None:
    events = make_events(
        [
            ("u1", "s1", day(1, 12)),
            ("u1", "s2", day(2, 18)),
            ("u1", "s1", day(10, 6)),
            ("u2", "s1", day(5, 0)),
        ]
    )
    as_of = day(12, 12)
    out = temporal.user_activity(events, as_of)
    # the midnights after each event and after it leaves the 7-day window (day 9: the day-1
    # event, day 10: day 2's), then as_of; the 30-day exits fall after as_of
    assert stamps_of(out, "user_id", "u1") == [day(d) for d in (2, 3, 9, 10, 11)] + [as_of]
    r3 = row(out, "user_id", "u1", day(3))
    assert (r3["events_7d"], r3["events_total"]) == (2, 2)
    assert r3["last_event_us"] == temporal.to_us(day(2, 18))  # 0.25 days before day 3
    r5 = row(out, "user_id", "u1", day(5))  # no row on day 5: the day-3 row holds
    assert (r5["events_7d"], r5["last_event_us"]) == (2, temporal.to_us(day(2, 18)))
    r10 = row(out, "user_id", "u1", day(10))
    assert r10["events_7d"] == 0 and r10["last_event_us"] == temporal.to_us(day(2, 18))
    final = row(out, "user_id", "u1", as_of)
    assert (final["events_7d"], final["events_30d"], final["events_total"]) == (1, 3, 3)
    assert final["last_event_us"] == temporal.to_us(day(10, 6))  # 2.25 days before as_of
    # u2's first event is exactly at midnight of day 5: first row the next midnight
    assert out.filter(pl.col("user_id") == "u2")["event_timestamp"].min() == day(6)
    assert row(out, "user_id", "u2", day(6))["last_event_us"] == temporal.to_us(day(5))
    assert out.schema["last_event_us"] == pl.Int64


def test_user_activity_matches_brute_force() -> None:
    rng = np.random.default_rng(11)
    stamps = [day(0) + timedelta(seconds=int(s)) for s in rng.integers(0, 40 * 86400, 150)]
    users = [f"u{i}" for i in rng.integers(0, 4, len(stamps))]
    events = make_events([(u, "s", t) for u, t in zip(users, stamps, strict=True)])
    as_of = day(38, 2)
    out = temporal.user_activity(events, as_of)
    for r in out.iter_rows(named=True):
        ts = [t for u, t in zip(users, stamps, strict=True) if u == r["user_id"] and t < as_of]
        t = r["event_timestamp"]
        assert r["events_7d"] == _naive_count(ts, t - timedelta(days=7), t)
        assert r["events_30d"] == _naive_count(ts, t - timedelta(days=30), t)
        assert r["events_total"] == _naive_count(ts, None, t)
        assert r["last_event_us"] == temporal.to_us(max(x for x in ts if x < t))


# ---- user genre affinity --------------------------------------------------------------------
def test_genre_affinity_weight_shares_at_change_points() -> None:
    vocab = build_vocab(SHOWS)  # Comedy=1, Drama=2
    events = make_events(
        [
            ("u1", "s1", day(1, 10), 2.0),  # Drama + Comedy: 1.0 each
            ("u1", "s2", day(3, 23), 1.0),  # Drama
            ("u1", "s3", day(5, 8), 4.0),  # no genres: changes nothing
            ("u1", "s2", day(7, 1), 1.0),  # after as_of below: cut
        ]
    )
    as_of = day(6, 12)
    out = temporal.user_genre_affinity(events, SHOWS, vocab, as_of)
    assert out["event_timestamp"].to_list() == [day(2), day(4), day(6), as_of]
    first, second = out.row(0, named=True), out.row(1, named=True)
    assert first["genre_affinity"] == pytest.approx([0.0, 0.5, 0.5])
    assert second["genre_affinity"] == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert out.row(-1, named=True)["genre_affinity"] == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert out["n_genres_seen"].to_list() == [2, 2, 2, 2]
    assert out.schema["genre_affinity"] == pl.List(pl.Float32)


def test_genre_affinity_separate_users_and_no_genre_user() -> None:
    vocab = build_vocab(SHOWS)
    events = make_events(
        [
            ("a", "s2", day(1, 1)),
            ("b", "s1", day(1, 2)),
            ("b", "s1", day(2, 2)),
            ("c", "s3", day(1, 3)),
        ]
    )
    out = temporal.user_genre_affinity(events, SHOWS, vocab, day(3))
    assert row(out, "user_id", "a", day(3))["genre_affinity"] == pytest.approx([0, 0, 1])
    assert row(out, "user_id", "b", day(2))["n_genres_seen"] == 2
    c = row(out, "user_id", "c", day(3))
    assert c["genre_affinity"] == [0.0, 0.0, 0.0] and c["n_genres_seen"] == 0


# ---- graph ----------------------------------------------------------------------------------
CREDITS = pl.DataFrame(
    {
        "show_id": ["s1", "s1", "s2", "s3", "s3"],
        "person_id": ["p1", "p2", "p1", "p3", "p3"],
        "name": [None] * 5,
        "role": ["actor", "director", "actor", "creator", "actor"],
        "character": [None] * 5,
    },
    schema_overrides={"name": pl.String, "character": pl.String},
)


def test_show_graph_edges() -> None:
    edges = graph.show_graph_edges(SHOWS, CREDITS)
    assert edges["show_person"].rows() == [
        ("s1", "p1", "actor"),
        ("s1", "p2", "director"),
        ("s2", "p1", "actor"),
        ("s3", "p3", "actor"),
        ("s3", "p3", "creator"),
    ]
    assert edges["show_genre"].rows() == [("s1", "Comedy"), ("s1", "Drama"), ("s2", "Drama")]
    assert edges["show_network"].rows() == [("s1", "HBO"), ("s2", "BBC")]
    assert edges["show_platform"].rows() == [("s1", "Max"), ("s1", "Prime"), ("s2", "Netflix")]


def test_cowatch_formed_at_known_answers() -> None:
    events = make_events(
        [
            ("u1", "a", day(0)),
            ("u1", "b", day(1)),
            ("u1", "a", day(2)),  # pair a-b at day 1
            ("u2", "b", day(3)),
            ("u2", "a", day(9)),  # a-b again at day 9
            ("u3", "c", day(4)),
            ("u3", "a", day(5)),
            ("u3", "b", day(20)),  # a-c 5, b-c/a-b 20
        ]
    )
    out = graph.cowatch_edges(events, day(30), max_user_history=10, min_users=2)
    assert out.rows() == [("a", "b", 3, day(9))]  # the second user formed it on day 9
    one = graph.cowatch_edges(events, day(30), max_user_history=10, min_users=1)
    assert one.rows() == [("a", "b", 3, day(1)), ("a", "c", 1, day(5)), ("b", "c", 1, day(20))]
    # as_of cut: at day 9 exactly u2's second watch is not there yet
    assert graph.cowatch_edges(events, day(9), 10, 2).height == 0
    assert graph.cowatch_edges(events, day(9, 1), 10, 2).rows() == [("a", "b", 2, day(9))]


def test_cowatch_history_cap_pairs_only_recent_shows() -> None:
    # a user who starts a, b, c, d in order; with a cap of 2 each show pairs with the one before
    events = make_events([("u", s, day(i)) for i, s in enumerate("abcd")])
    capped = graph.cowatch_edges(events, day(10), max_user_history=2, min_users=1)
    assert [(r[0], r[1]) for r in capped.rows()] == [("a", "b"), ("b", "c"), ("c", "d")]
    full = graph.cowatch_edges(events, day(10), max_user_history=4, min_users=1)
    assert full.height == 6
    a_d = full.filter((pl.col("show_a") == "a") & (pl.col("show_b") == "d"))
    assert a_d["formed_at"].item() == day(3)


def test_pagerank_star_closed_form_and_isolated_node() -> None:
    # star: centre 0 with leaves 1..3 -> c = (1-d)/n + d*3l, l = (1-d)/n + d*c/3
    d, n = 0.85, 4
    rank = graph.pagerank(n, np.array([0, 0, 0]), np.array([1, 2, 3]), np.ones(3))
    centre = ((1 - d) / n) * (1 + 3 * d) / (1 - d * d)
    assert rank[0] == pytest.approx(centre, rel=1e-6)
    assert rank.sum() == pytest.approx(1.0)
    assert rank[0] > rank[1] and np.allclose(rank[1:], rank[1])
    # an isolated node: every node gets the uniform teleport share when nothing links
    assert np.allclose(graph.pagerank(3, np.zeros(0, int), np.zeros(0, int), np.zeros(0)), 1 / 3)
    with_isolated = graph.pagerank(5, np.array([0, 0, 0]), np.array([1, 2, 3]), np.ones(3))
    teleport = ((1 - d) + d * with_isolated[4]) / 5
    assert with_isolated[4] == pytest.approx(teleport) and with_isolated.sum() == pytest.approx(1)


def test_show_graph_stats_known_answers() -> None:
    shows = make_shows([{"show_id": s} for s in ("hub", "x", "y", "z", "lone")])
    credits = pl.DataFrame(
        {"show_id": ["hub", "x", "y", "y", "x"], "person_id": ["p", "p", "p", "q", "q"]}
    )  # x and y share 2 people
    jan, feb1, mar1 = (
        datetime(2024, 1, 10, tzinfo=UTC),
        datetime(2024, 2, 1, tzinfo=UTC),
        datetime(2024, 3, 1, tzinfo=UTC),
    )
    events = make_events(
        [
            ("u1", "hub", jan),
            ("u1", "x", jan + timedelta(days=1)),
            ("u2", "hub", jan),
            ("u2", "y", jan + timedelta(days=2)),
            ("u3", "hub", jan),
            ("u3", "z", feb1),  # forms exactly at the Feb snapshot
            ("u4", "x", feb1 + timedelta(days=3)),
            ("u4", "hub", feb1 + timedelta(days=4)),
        ]
    )
    as_of = datetime(2024, 3, 5, 12, tzinfo=UTC)
    out = graph.show_graph_stats(shows, credits, events, as_of, max_user_history=50, min_users=1)
    assert sorted(set(out["event_timestamp"].to_list())) == [feb1, mar1, as_of]
    hub_feb = row(out, "show_id", "hub", feb1)
    assert (hub_feb["person_degree"], hub_feb["cocast_neighbors"]) == (1, 2)
    assert hub_feb["cowatch_degree"] == 2  # hub-z formed at feb1: not yet
    hub_mar = row(out, "show_id", "hub", mar1)
    assert (hub_mar["cowatch_degree"], hub_mar["cowatch_weight"]) == (3, 4.0)  # x edge has 2 users
    y = row(out, "show_id", "y", mar1)
    assert (y["person_degree"], y["cocast_neighbors"], y["cowatch_degree"]) == (2, 2, 1)
    assert row(out, "show_id", "x", as_of)["cocast_neighbors"] == 2
    lone = row(out, "show_id", "lone", mar1)
    assert (lone["person_degree"], lone["cowatch_degree"], lone["cowatch_weight"]) == (0, 0, 0)
    for t in (feb1, mar1, as_of):
        snap = out.filter(pl.col("event_timestamp") == t).sort("pagerank", descending=True)
        assert snap["pagerank"].sum() == pytest.approx(1.0, abs=1e-5)
        assert snap["show_id"][0] == "hub"
    # min_users=2: only hub-x (u1, u4) survives, and only from March
    two = graph.show_graph_stats(shows, credits, events, as_of, 50, 2)
    assert row(two, "show_id", "hub", feb1)["cowatch_degree"] == 0
    assert row(two, "show_id", "x", mar1)["cowatch_weight"] == 2.0


# ---- the point-in-time rule, attacked -------------------------------------------------------
BASE = datetime(2024, 1, 25, tzinfo=UTC)  # ~50 days cover month starts and Mondays
SECONDS = st.one_of(st.just(0), st.integers(0, 86_399))  # midnights are likely


BOUNDARIES = [
    datetime(2024, 2, 1, tzinfo=UTC),
    datetime(2024, 3, 1, tzinfo=UTC),
    datetime(2024, 1, 29, tzinfo=UTC),
    datetime(2024, 2, 5, tzinfo=UTC),
]  # 1st, Monday


@st.composite
def moments(draw: st.DrawFn, max_days: int = 50) -> datetime:
    """A time in the test window; snapshot boundaries (month starts, Mondays) are likely."""
    if draw(st.booleans()):
        return draw(st.sampled_from(BOUNDARIES))
    return BASE + timedelta(days=draw(st.integers(0, max_days)), seconds=draw(SECONDS))


@st.composite
def event_rows(draw: st.DrawFn, start: datetime, max_size: int = 20) -> list[tuple]:
    """Events at or after `start`, often exactly at it or on the same time of day."""
    n = draw(st.integers(0, max_size))
    days = st.one_of(st.just(0), st.integers(0, 30))
    return [
        (
            draw(st.sampled_from(["u0", "u1", "u2", "u3", "u4"])),
            draw(st.sampled_from(PROP_IDS)),
            start + timedelta(days=draw(days), seconds=draw(SECONDS)),
            draw(st.sampled_from([1.0, 0.5, 3.0])),
        )
        for _ in range(n)
    ]


PROP_IDS = [f"s{i}" for i in range(1, 9)]
PROP_SHOWS = make_shows(
    [
        {"show_id": s, "genres": [["Drama"], ["Comedy", "Drama"], [], ["News"]][i % 4]}
        for i, s in enumerate(PROP_IDS)
    ]
)


def _builders() -> dict:
    vocab = build_vocab(PROP_SHOWS)
    return {
        "show_popularity": lambda e, a: temporal.show_popularity(e, PROP_IDS, a),
        "show_seasonality": lambda e, a: temporal.show_seasonality(e, PROP_IDS, a),
        "user_activity": lambda e, a: temporal.user_activity(e, a),
        "user_genre_affinity": lambda e, a: temporal.user_genre_affinity(e, PROP_SHOWS, vocab, a),
        "show_graph": lambda e, a: graph.show_graph_stats(PROP_SHOWS, CREDITS, e, a, 2, 1),
        "show_graph_min2": lambda e, a: graph.show_graph_stats(PROP_SHOWS, CREDITS, e, a, 9, 2),
    }


def same(left: pl.DataFrame, right: pl.DataFrame, name: str) -> None:
    """assert_frame_equal, naming the builder on failure."""
    try:
        assert_frame_equal(left, right)
    except AssertionError as exc:
        raise AssertionError(f"{name}: {exc}") from exc


def _stamped_upto(df: pl.DataFrame, t: datetime) -> pl.DataFrame:
    key = "show_id" if "show_id" in df.columns else "user_id"
    return df.filter(pl.col("event_timestamp") <= t).sort(key, "event_timestamp")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_extra_events_at_or_after_t_never_change_rows_stamped_up_to_t(data: st.DataObject) -> None:
    base = make_events(data.draw(event_rows(BASE)))
    t = data.draw(moments())
    as_of = data.draw(moments())
    extra = make_events(data.draw(event_rows(t, max_size=10)))  # all at or after t
    more = pl.concat([base, extra])
    for name, build in _builders().items():
        before, after = build(base, as_of), build(more, as_of)
        assert after["event_timestamp"].max() is None or after["event_timestamp"].max() <= as_of
        same(_stamped_upto(before, t), _stamped_upto(after, t), name)
    # co-watch edges: an edge is usable at T iff formed_at < T
    for cap, min_users in ((2, 1), (10, 2)):
        edges = [
            graph.cowatch_edges(e, as_of, cap, min_users)
            .filter(pl.col("formed_at") < t)
            .drop("users")
            for e in (base, more)
        ]
        same(edges[0], edges[1], "cowatch_edges")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_events_at_or_after_as_of_change_nothing(data: st.DataObject) -> None:
    base = make_events(data.draw(event_rows(BASE)))
    as_of = data.draw(moments())
    more = pl.concat([base, make_events(data.draw(event_rows(as_of, max_size=10)))])
    for name, build in _builders().items():
        same(build(base, as_of), build(more, as_of), name)
    assert_frame_equal(
        graph.cowatch_edges(base, as_of, 10, 1), graph.cowatch_edges(more, as_of, 10, 1)
    )


def _latest_upto(df: pl.DataFrame, t: datetime) -> pl.DataFrame:
    """What Feast joins at time t: per entity, the latest row stamped <= t (stamp dropped)."""
    key = df.columns[0]
    upto = df.filter(pl.col("event_timestamp") <= t).sort(key, "event_timestamp")
    return upto.group_by(key, maintain_order=True).last().drop("event_timestamp")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_feast_view_at_t_equals_a_build_cut_at_t(data: st.DataObject) -> None:
    """Joined at any stamp t, the full build gives exactly the values of a build with as_of=t."""
    events = make_events(data.draw(event_rows(BASE)))
    as_of = data.draw(moments())
    for name, build in _builders().items():
        full = build(events, as_of)
        if full.height == 0:
            continue
        t = data.draw(st.sampled_from(sorted(set(full["event_timestamp"].to_list()))), label=name)
        cut = build(events, t)
        assert cut["event_timestamp"].max() == t
        same(_latest_upto(full, t), _latest_upto(cut, t), name)


# ---- sparse tables against the dense snapshot tables ----------------------------------------
# A small reference of the old dense tables (every entity at every snapshot time), written
# from the definitions, entity by entity. The builders' sparse tables must give, for every
# entity and every dense snapshot time t, exactly the dense value through an as-of lookup
# (the entity's latest row stamped <= t), as Feast's point-in-time join would.
DAY_US = temporal.DAY_US


def _ids(df: pl.DataFrame, column: str) -> list[str]:
    return sorted(set(df[column].to_list()))


def _times(ev: pl.DataFrame, as_of: datetime, every: temporal.Every) -> np.ndarray:
    """The dense snapshot grid (int64 us) of events already cut to as_of."""
    first = temporal.event_us(ev).min() if ev.height else None
    return temporal.snapshot_us(None if first is None else int(first), as_of, every)


def _entity_us(ev: pl.DataFrame, key: str, value: str) -> np.ndarray:
    """Sorted event times (int64 us) of one entity."""
    return np.sort(temporal.event_us(ev.filter(pl.col(key) == value)))


def dense_popularity(events: pl.DataFrame, show_ids: list[str], as_of: datetime) -> pl.DataFrame:
    ev = temporal.cut_events(events, as_of)
    times = _times(ev, as_of, "day")
    parts = []
    for sid in sorted(set(show_ids)):
        ts = _entity_us(ev, "show_id", sid)
        total = np.searchsorted(ts, times)  # events < t
        views = {w: total - np.searchsorted(ts, times - w * DAY_US) for w in (7, 30, 365)}
        trend = views[7] / np.maximum(1.0, views[30] * 7.0 / 30.0)
        parts.append(
            pl.DataFrame(
                [
                    pl.Series("show_id", [sid] * times.size),
                    temporal.timestamps(times),
                    *[pl.Series(f"views_{w}d", v) for w, v in views.items()],
                    pl.Series("views_total", total.astype(np.int64)),
                    pl.Series("trend", trend.astype(np.float32)),
                ]
            )
        )
    return pl.concat(parts)


def dense_seasonality(events: pl.DataFrame, show_ids: list[str], as_of: datetime) -> pl.DataFrame:
    ev = temporal.cut_events(events, as_of)
    times = _times(ev, as_of, "week")
    parts = []
    for sid in sorted(set(show_ids)):
        mine = ev.filter(pl.col("show_id") == sid)
        ts = temporal.event_us(mine)
        weekday = mine["event_timestamp"].dt.weekday().to_numpy() - 1
        month = mine["event_timestamp"].dt.month().to_numpy() - 1

        def shares(category: np.ndarray, k: int, ts: np.ndarray = ts) -> np.ndarray:
            counts = np.stack([(ts[None, category == c] < times[:, None]).sum(1) for c in range(k)])
            total = counts.sum(0)
            return (counts / np.maximum(total, 1)).T.astype(np.float32)  # (T, k)

        weekdays, months = shares(weekday, 7), shares(month, 12)
        parts.append(
            pl.DataFrame(
                [
                    pl.Series("show_id", [sid] * times.size),
                    temporal.timestamps(times),
                    pl.Series("weekday_profile", weekdays).cast(pl.List(pl.Float32)),
                    pl.Series("month_profile", months).cast(pl.List(pl.Float32)),
                    pl.Series("december_share", months[:, 11]),
                ]
            )
        )
    return pl.concat(parts)


ACTIVITY_SCHEMA = {
    "user_id": pl.String,
    "event_timestamp": TS,
    **dict.fromkeys(["events_7d", "events_30d", "events_total", "last_event_us"], pl.Int64),
}


def dense_activity(events: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    ev = temporal.cut_events(events, as_of)
    grid = _times(ev, as_of, "day")
    parts = [pl.DataFrame(schema=ACTIVITY_SCHEMA)]
    for uid in _ids(ev, "user_id"):
        ts = _entity_us(ev, "user_id", uid)
        times = grid[grid > ts[0]]  # from the first snapshot after the user's first event
        total = np.searchsorted(ts, times)
        parts.append(
            pl.DataFrame(
                [
                    pl.Series("user_id", [uid] * times.size),
                    temporal.timestamps(times),
                    *[
                        pl.Series(f"events_{w}d", total - np.searchsorted(ts, times - w * DAY_US))
                        for w in (7, 30)
                    ],
                    pl.Series("events_total", total.astype(np.int64)),
                    pl.Series("last_event_us", ts[total - 1]),
                ]
            )
        )
    return pl.concat(parts)


def dense_graph(
    shows: pl.DataFrame,
    credits: pl.DataFrame,
    events: pl.DataFrame,
    as_of: datetime,
    cap: int,
    min_users: int,
) -> pl.DataFrame:
    """Every show at every monthly snapshot; the co-watch graph at t has the pairs formed by
    at least min_users users strictly before t."""
    ev = temporal.cut_events(events, as_of)
    nodes = _ids(shows, "show_id")
    n = len(nodes)
    people = credits.filter(pl.col("show_id").is_in(nodes)).select("show_id", "person_id").unique()
    cast = {s: set(people.filter(pl.col("show_id") == s)["person_id"]) for s in nodes}
    cocast = [sum(1 for o in nodes if o != s and cast[s] & cast[o]) for s in nodes]
    keys, formed = graph._sorted_pairs(ev, pl.Series(nodes), cap)  # one row per formation
    a, b = keys // n, keys % n
    parts, rank, ranked_weight = [], None, -1.0
    times = _times(ev, as_of, "month")
    for t in times:
        keys, users = np.unique(a[formed < t] * n + b[formed < t], return_counts=True)
        live = users >= min_users
        ea, eb, w = keys[live] // n, keys[live] % n, users[live].astype(np.float64)
        if graph.rank_is_stale(float(w.sum()), ranked_weight, t == times[-1]):
            rank, ranked_weight = graph.pagerank(n, ea, eb, w), float(w.sum())
        parts.append(
            pl.DataFrame(
                [
                    pl.Series("show_id", nodes),
                    temporal.timestamps(np.full(n, t)),
                    pl.Series("person_degree", [len(cast[s]) for s in nodes], pl.Int64),
                    pl.Series("cocast_neighbors", cocast, pl.Int64),
                    pl.Series("cowatch_degree", np.bincount(np.r_[ea, eb], minlength=n)),
                    pl.Series("cowatch_weight", np.bincount(np.r_[ea, eb], np.r_[w, w], n)),
                    pl.Series("pagerank", rank),
                ]
            ).cast({"cowatch_weight": pl.Float32, "pagerank": pl.Float32})
        )
    return pl.concat(parts).sort("show_id", "event_timestamp")


def assert_sparse_equals_dense(sparse: pl.DataFrame, dense: pl.DataFrame, as_of: datetime) -> None:
    """The sparse table, looked up as of every dense (entity, t), is the dense table; its rows
    are a subset of the dense grid, each entity's last one at as_of, and no row repeats the
    entity's previous values except the one at as_of."""
    key, ts = dense.columns[0], "event_timestamp"
    assert sparse.schema == dense.schema
    assert sparse.join(dense.select(key, ts), on=[key, ts], how="anti").height == 0
    assert sparse[key].to_list() == sorted(sparse[key].to_list())  # entity-major
    looked_up = (
        dense.select(key, ts)
        .sort(ts)
        .join_asof(sparse.sort(ts), on=ts, by=key, strategy="backward", check_sortedness=False)
        .sort(key, ts)
    )
    assert_frame_equal(looked_up, dense.sort(key, ts), check_exact=True)
    last = sparse.group_by(key).agg(pl.col(ts).max())
    assert last[ts].to_list() == [as_of] * last.height
    assert set(last[key]) == set(dense[key])
    values = [c for c in sparse.columns if c not in (key, ts)]
    repeats = sparse.filter(
        (pl.col(key) == pl.col(key).shift())
        & pl.all_horizontal([pl.col(c) == pl.col(c).shift() for c in values])
        & (pl.col(ts) != as_of)
    )
    assert repeats.height == 0, repeats


def assert_all_sparse_equal_dense(
    events: pl.DataFrame, shows: pl.DataFrame, credits: pl.DataFrame, as_of: datetime
) -> dict[str, tuple[int, int]]:
    """Every sparse builder against its dense reference; (sparse, dense) rows per table."""
    ids = shows["show_id"].to_list()
    pairs = {
        "show_popularity": (
            temporal.show_popularity(events, ids, as_of),
            dense_popularity(events, ids, as_of),
        ),
        "show_seasonality": (
            temporal.show_seasonality(events, ids, as_of),
            dense_seasonality(events, ids, as_of),
        ),
        "user_activity": (temporal.user_activity(events, as_of), dense_activity(events, as_of)),
    }
    for cap, min_users in ((2, 1), (9, 2)):
        pairs[f"show_graph_{cap}_{min_users}"] = (
            graph.show_graph_stats(shows, credits, events, as_of, cap, min_users),
            dense_graph(shows, credits, events, as_of, cap, min_users),
        )
    for name, (sparse, dense) in pairs.items():
        try:
            assert_sparse_equals_dense(sparse, dense, as_of)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc
    return {name: (s.height, d.height) for name, (s, d) in pairs.items()}


def test_sparse_equals_dense_on_the_synthetic_world(
    _world_master: tuple[Path, object],
) -> None:
    directory = _world_master[0]
    events = pl.read_parquet(directory / "events.parquet")
    shows = pl.read_parquet(directory / "shows.parquet")
    credits = pl.read_parquet(directory / "credits.parquet")
    last = temporal.cut_events(events, datetime(2100, 1, 1, tzinfo=UTC))["event_timestamp"].max()
    for as_of in (last + timedelta(seconds=1), datetime(2025, 3, 17, tzinfo=UTC)):  # a Monday
        rows = assert_all_sparse_equal_dense(events, shows, credits, as_of)
        for name in ("show_popularity", "user_activity"):
            sparse, dense = rows[name]
            assert sparse < dense / 4, (name, sparse, dense)


AWKWARD_SHOWS = make_shows([{"show_id": s} for s in ("old", "once", "busy", "never", "z")])
AWKWARD_CREDITS = pl.DataFrame({"show_id": ["old", "busy", "z"], "person_id": ["p", "p", "q"]})


def _awkward_events(as_of: datetime) -> pl.DataFrame:
    """Events decades apart, before 1970, exactly at midnights (and exactly w days before
    one), one show and one user with a single event, a show outside the catalogue first of
    all, an event 1 us before as_of and events at and after as_of (cut)."""
    y1968 = datetime(1968, 7, 14, 6, tzinfo=UTC)
    y1999 = datetime(1999, 12, 31, tzinfo=UTC)  # midnight
    midnight = datetime(2024, 2, 29, tzinfo=UTC)
    return make_events(
        [
            ("ghost", "outside", y1968 - timedelta(days=400)),  # not in the catalogue
            ("u1", "old", y1968),
            ("u2", "old", y1968 + timedelta(days=7)),  # enters as the first leaves 7d
            ("u1", "old", y1999),
            ("u1", "busy", y1999 + timedelta(days=30)),  # midnight, 30 days later
            ("u2", "busy", y1999 + timedelta(days=30)),  # same instant, other user
            ("u3", "busy", midnight - timedelta(days=365)),
            ("u1", "busy", midnight),
            ("u2", "z", midnight),
            ("u1", "z", midnight + timedelta(days=7)),  # at the 7-day exit of the previous
            ("u2", "old", midnight + timedelta(days=7, hours=5)),
            ("lonely", "once", as_of - timedelta(microseconds=1)),  # last instant counted
            ("u1", "busy", as_of),  # at as_of: must not count
            ("u3", "z", as_of),
            ("u2", "busy", as_of + timedelta(days=3)),
        ]
    )


@pytest.mark.parametrize(
    "as_of",
    [
        datetime(2024, 4, 9, 15, 30, tzinfo=UTC),
        datetime(2024, 4, 8, tzinfo=UTC),  # a midnight Monday
        datetime(2024, 3, 1, tzinfo=UTC),  # the 1st, a month snapshot
    ],
)
def test_sparse_equals_dense_on_an_awkward_log(as_of: datetime) -> None:
    events = _awkward_events(as_of)
    assert_all_sparse_equal_dense(events, AWKWARD_SHOWS, AWKWARD_CREDITS, as_of)
    pop = temporal.show_popularity(events, AWKWARD_SHOWS["show_id"], as_of)
    assert row(pop, "show_id", "once", as_of)["views_total"] == 1  # 1 us before as_of
    assert row(pop, "show_id", "busy", as_of)["views_total"] == 4  # not the one at as_of
    # the first snapshot: the midnight after the first event (1967-06-10 06:00, "outside")
    assert stamps_of(pop, "show_id", "never") == [datetime(1967, 6, 11, tzinfo=UTC), as_of]
    # 56 years of days, yet a handful of rows per show
    assert pop.height < 40
    activity = temporal.user_activity(events, as_of)
    assert stamps_of(activity, "user_id", "lonely") == [as_of]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_sparse_equals_dense_on_random_logs(data: st.DataObject) -> None:
    events = make_events(data.draw(event_rows(BASE, max_size=30)))
    if events.height == 0:
        return
    assert_all_sparse_equal_dense(events, PROP_SHOWS, CREDITS, data.draw(moments()))


def test_next_snapshot_is_the_first_grid_time_after() -> None:
    rng = np.random.default_rng(5)
    x = np.r_[rng.integers(-40, 40, 300) * DAY_US // 3, np.arange(-9, 9) * DAY_US]
    as_of = datetime(1970, 3, 1, 7, tzinfo=UTC)
    for every in ("day", "week"):
        grid = temporal.snapshot_us(int(x.min()), as_of, every)
        nxt = temporal.next_snapshot_us(x, every)
        inside = nxt < grid[-1]
        expected = grid[np.searchsorted(grid, x, side="right")]
        assert (nxt[inside] == expected[inside]).all()
        assert (expected[~inside] == grid[-1]).all()  # later ones fall on as_of
        end = temporal.to_us(as_of)
        assert temporal.first_snapshot_us(int(x.min()), end, every) == grid[0]


# ---- text embeddings ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder() -> text.TextEncoder:
    enc = text.TextEncoder(device="cpu")
    enc.encode(["warm up"])  # load once for the module
    return enc


TEXT_SHOWS = make_shows(
    [
        {
            "show_id": "wire",
            "title": "The Wire",
            "description": "A police drama about the drug trade in Baltimore.",
        },
        {
            "show_id": "wire2",
            "title": "The Wire",
            "description": "A police drama about the drug trade in Baltimore, Maryland.",
        },
        {"show_id": "chef", "title": "Chef's Table", "description": "Great chefs cook their food."},
        {"show_id": "notes", "title": "Untitled", "description": None},
    ]
)


def test_encoder_is_offline_and_normalised(encoder: text.TextEncoder) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    emb = encoder.encode(["one", "two", "three"], batch_size=2)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_text_embeddings_similarity(tmp_path: Path, encoder: text.TextEncoder) -> None:
    result = text.show_text_embeddings(TEXT_SHOWS, tmp_path / "cache.parquet", encoder)
    emb = dict(zip(result.table["show_id"], result.table["text_embedding"].to_list(), strict=True))
    cos = {k: np.asarray(v) for k, v in emb.items()}
    assert float(cos["wire"] @ cos["wire2"]) > 0.9
    assert float(cos["wire"] @ cos["chef"]) < 0.5
    assert result.table.columns == ["show_id", "content_hash", "text_embedding"]
    assert result.table["show_id"].to_list() == ["wire", "wire2", "chef", "notes"]


def test_text_cache_hit_and_single_change(tmp_path: Path, encoder: text.TextEncoder) -> None:
    cache = tmp_path / "cache.parquet"
    first = text.show_text_embeddings(TEXT_SHOWS, cache, encoder)
    assert (first.n_encoded, first.n_cached) == (4, 0)
    again = text.show_text_embeddings(TEXT_SHOWS, cache, encoder)
    assert (again.n_encoded, again.n_cached) == (0, 4)
    assert_frame_equal(first.table, again.table)
    changed = TEXT_SHOWS.with_columns(
        pl.when(pl.col("show_id") == "chef")
        .then(pl.lit("Chefs cook over fire."))
        .otherwise(pl.col("description"))
        .alias("description")
    )
    third = text.show_text_embeddings(changed, cache, encoder)
    assert third.n_encoded == 1
    differs = first.table["content_hash"] != third.table["content_hash"]
    assert third.table.filter(differs)["show_id"].to_list() == ["chef"]
    assert [p.name for p in tmp_path.iterdir()] == ["cache.parquet"]  # no temp files left


def test_text_content_hash_and_identical_texts(tmp_path: Path, encoder: text.TextEncoder) -> None:
    twins = make_shows(
        [
            {"show_id": "a", "title": "Same", "description": "Same words."},
            {"show_id": "b", "title": "Same", "description": "Same words."},
        ]
    )
    result = text.show_text_embeddings(twins, tmp_path / "c.parquet", encoder)
    assert result.n_encoded == 1
    expected = text.content_hash("Same. Same words.", text.MODEL_NAME)
    assert result.table["content_hash"].to_list() == [expected, expected]
    assert text.content_hash("x", "model-a") != text.content_hash("x", "model-b")


def test_show_text_carries_the_genres_and_skips_missing_parts() -> None:
    shows = make_shows(
        [
            {"show_id": "a", "title": "Kimi", "description": "A story.", "genres": ["Drama"]},
            {"show_id": "b", "title": "Umi", "genres": ["Romance", "School"]},
            {"show_id": "c", "title": "Sora", "description": " ", "genres": []},
            {"show_id": "d", "title": "Kimi no Na wa.", "description": "Two meet.", "genres": []},
            {"show_id": "e", "title": "Why?", "genres": ["Drama"]},
            {"show_id": "f", "title": "", "description": "Only this", "genres": ["Drama"]},
        ]
    )
    got = shows.select(text.show_text())["text"].to_list()
    assert got == [
        "Kimi. A story. Drama",
        "Umi. Romance, School",
        "Sora",
        "Kimi no Na wa. Two meet.",  # no second full stop after a title that ends a sentence
        "Why? Drama",
        "Only this. Drama",
    ]


def test_genre_names_find_shows_whose_titles_say_nothing(
    tmp_path: Path, encoder: text.TextEncoder
) -> None:
    """Anime's catalogue has titles and genres, no descriptions: a genre name asked as a text
    query finds that genre's show only through the genres in the show's text."""
    planted = {"Romance": "Kimi no Sora", "Horror": "Hoshi no Umi", "Sports": "Ao no Kaze",
               "Mecha": "Tsuki no Michi", "Cooking": "Yume no Hana"}  # fmt: skip
    shows = make_shows([{"show_id": g, "title": t, "genres": [g]} for g, t in planted.items()])
    table = text.show_text_embeddings(shows, tmp_path / "c.parquet", encoder).table
    shown = np.asarray(table["text_embedding"].to_list())  # (5, 384)
    asked = encoder.encode([g.lower() for g in planted])  # (5, 384)
    found = [table["show_id"][int(i)] for i in (asked @ shown.T).argmax(1)]
    assert found == list(planted)


class _FailingWrite(Exception):
    pass


def test_text_cache_write_is_atomic(
    tmp_path: Path, encoder: text.TextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache.parquet"
    text.show_text_embeddings(TEXT_SHOWS.head(2), cache, encoder)
    before = cache.read_bytes()

    def broken(self: pl.DataFrame, path: object, *args: object, **kwargs: object) -> None:
        Path(str(path)).write_bytes(b"half a parquet file")
        raise _FailingWrite

    monkeypatch.setattr(pl.DataFrame, "write_parquet", broken)
    with pytest.raises(_FailingWrite):
        text.show_text_embeddings(TEXT_SHOWS, cache, encoder)
    assert cache.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cache.parquet"]


def test_text_unreadable_cache_is_rebuilt(tmp_path: Path, encoder: text.TextEncoder) -> None:
    cache = tmp_path / "cache.parquet"
    cache.write_bytes(b"not parquet")
    result = text.show_text_embeddings(TEXT_SHOWS.head(1), cache, encoder)
    assert result.n_encoded == 1
    assert text.show_text_embeddings(TEXT_SHOWS.head(1), cache, encoder).n_encoded == 0
