"""Time-dependent feature tables: show popularity and seasonality, user activity and genre
affinity, as change-point rows that Feast joins point in time.

The point-in-time rule, which every builder here keeps:
  * inputs are first cut to events with event_timestamp < as_of, and no row is stamped after
    as_of;
  * a row stamped t is computed only from events with event_timestamp strictly < t (an event at
    exactly t counts from the next snapshot on).
Feast gives a training row at time T the latest row stamped <= T, so it only ever sees events
strictly before T.

Snapshot times (`snapshot_times`): every UTC midnight from the day after the first event up to
as_of ("day"), the Mondays among them ("week") or the 1st of each month from the month after the
first event ("month"), always ending with a snapshot at exactly as_of.

Sparse tables. A builder does not write every entity at every snapshot (that grows with
entities x days: 75 million rows for MovieLens over 22 years). It writes an entity's row only
at the snapshots where one of its values changes, so the latest row at or before any snapshot
time holds exactly the value the dense snapshot table would hold there. A windowed count over
[t - w days, t) can only change at the first snapshot after an event x (x enters) or after
x + w days (x leaves), and a cumulative one only after an event, so the builders generate
those candidate times per entity (`next_snapshot_us`), evaluate the values there by binary
search over the entity's sorted events and drop the candidates whose values equal the entity's
previous row. Work and memory grow with events + entities, never with the number of days.
Kept always: a row per entity at the first snapshot where the dense table starts it, and a row
per entity at exactly as_of (the final snapshot), so a build cut at t ends with every entity's
value at t.

Counting is exact at microsecond resolution: `_EventIndex` keeps events sorted by (entity, time)
and answers "how many events of entity e before time q" by binary search, so a window
[t - 7d, t) is count_before(t) - count_before(t - 7d) for any t, midnight or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import polars as pl

from .vocab import Vocab

DAY_US = 86_400_000_000  # microseconds per day
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIMESTAMP = pl.Datetime("us", "UTC")
NO_EVENT = np.iinfo(np.int64).min  # "no event before q" in last_before
Every = Literal["day", "week", "month"]


# ---- time helpers ---------------------------------------------------------------------------
def to_utc(ts: datetime) -> datetime:
    """An aware UTC datetime (naive values are taken to be UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def to_us(ts: datetime) -> int:
    """Microseconds since 1970-01-01 UTC (exact integer arithmetic)."""
    return (to_utc(ts) - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


def timestamps(us: np.ndarray, name: str = "event_timestamp") -> pl.Series:
    """An int64 microsecond array (n,) as a Datetime(us, UTC) series."""
    return pl.Series(name, np.asarray(us, dtype=np.int64)).cast(TIMESTAMP)


def cut_events(events: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Events strictly before `as_of`, with event_timestamp as Datetime(us, UTC)."""
    ts = pl.col("event_timestamp")
    dtype = events.schema["event_timestamp"]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        ts = ts.dt.replace_time_zone("UTC")
    ev = events.with_columns(ts.dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
    return ev.filter(pl.col("event_timestamp") < to_utc(as_of))


def event_us(events: pl.DataFrame) -> np.ndarray:
    """event_timestamp as int64 microseconds, shape (n,)."""
    return events["event_timestamp"].dt.epoch("us").to_numpy().astype(np.int64, copy=False)


def _month_start(ts: datetime) -> datetime:
    return ts.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(ts: datetime) -> datetime:
    return ts.replace(year=ts.year + ts.month // 12, month=ts.month % 12 + 1)


def snapshot_us(first_event_us: int | None, as_of: datetime, every: Every = "day") -> np.ndarray:
    """Snapshot times (int64 us, ascending, shape (T,)); the last one is always as_of.

    With no events there is only the as_of snapshot.
    """
    end = to_us(as_of)
    if first_event_us is None:
        return np.array([end], dtype=np.int64)
    if every == "month":
        t = _next_month(_month_start(from_us(first_event_us)))
        points: list[int] = []
        while to_us(t) <= end:
            points.append(to_us(t))
            t = _next_month(t)
        times = np.array(points, dtype=np.int64)
    else:
        first_day = first_event_us // DAY_US + 1  # the midnight after the first event's day
        days = np.arange(first_day, end // DAY_US + 1, dtype=np.int64)
        if every == "week":
            days = days[(days + 3) % 7 == 0]  # 1970-01-01 was a Thursday: Monday <=> (d+3)%7 == 0
        elif every != "day":
            raise ValueError(f"every must be day, week or month, not {every!r}")
        times = days * DAY_US
    if times.size == 0 or times[-1] != end:
        times = np.append(times, np.int64(end))
    return times


def snapshot_times(
    first_event: datetime | None, as_of: datetime, every: Every = "day"
) -> list[datetime]:
    """`snapshot_us` as datetimes (for callers and tests)."""
    first = None if first_event is None else to_us(first_event)
    return [from_us(t) for t in snapshot_us(first, as_of, every)]


def _first_us(ts: np.ndarray) -> int | None:
    return int(ts.min()) if ts.size else None


def next_snapshot_us(x: np.ndarray, every: Literal["day", "week"] = "day") -> np.ndarray:
    """The first daily (midnight) or weekly (Monday midnight) time strictly after each x.

    x: (n,) int64 us. Returns (n,) int64 us. For any x at or after the first event, this is
    the first time of `snapshot_us(...)` strictly after x whenever it is before as_of; later
    ones fall on as_of itself, whose row every builder writes anyway.
    """
    days = np.floor_divide(x, DAY_US) + 1  # the midnight after x's day (floor: pre-1970 too)
    if every == "week":
        days = days + np.mod(-(days + 3), 7)  # on to a Monday: (day + 3) % 7 == 0
    elif every != "day":
        raise ValueError(f"every must be day or week, not {every!r}")
    return days * DAY_US


def first_snapshot_us(first_event_us: int | None, end: int, every: Every = "day") -> int:
    """The first time of `snapshot_us(first_event_us, as_of, every)` (end = as_of in us)."""
    if first_event_us is None:
        return end
    if every == "month":
        start = to_us(_next_month(_month_start(from_us(first_event_us))))
    else:
        start = int(next_snapshot_us(np.array([first_event_us], dtype=np.int64), every)[0])
    return min(start, end)


# ---- counting events before a time, per entity ----------------------------------------------
class _EventIndex:
    """Events sorted by (entity, time); answers per-entity questions about events before q.

    Times are replaced by their rank among the distinct event times, so the combined sort key
    entity * stride + rank stays far from int64 overflow at any realistic size.
    """

    def __init__(self, entity: np.ndarray, ts: np.ndarray) -> None:
        self._times = np.unique(ts)  # (m,) distinct event times, ascending
        self._stride = np.int64(self._times.size + 1)
        keys = entity.astype(np.int64) * self._stride + np.searchsorted(self._times, ts)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]  # (n,) sorted
        self._ts = ts[order]  # (n,) event times in key order

    def _position(self, entity: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Sorted position of the first event of `entity` at or after q (both shape (k,))."""
        rank = np.searchsorted(self._times, q, side="left")  # distinct times strictly < q
        return np.searchsorted(self._keys, entity * self._stride + rank, side="left")

    def count_before(self, entity: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Number of events of entity[i] with time < q[i], shape (k,) int64."""
        start = np.searchsorted(self._keys, entity * self._stride, side="left")
        return (self._position(entity, q) - start).astype(np.int64)

    def last_before(self, entity: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Time of the last event of entity[i] before q[i], or NO_EVENT; shape (k,) int64."""
        pos = self._position(entity, q)
        start = np.searchsorted(self._keys, entity * self._stride, side="left")
        found = pos > start
        out = np.full(entity.shape, NO_EVENT, dtype=np.int64)
        out[found] = self._ts[pos[found] - 1]
        return out


# ---- change-point rows -----------------------------------------------------------------------
def _change_points(
    entity: np.ndarray, at: np.ndarray, end: int, n_entities: int, start: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate rows (entity, stamp), distinct, sorted entity-major then time ascending.

    entity, at: (m,) candidate rows (stamps from `next_snapshot_us`); those at or after end
    are dropped: the row at end, which every entity gets, holds their values. start: when
    given, every entity also gets a row there (the first snapshot of a dense table that lists
    every entity from the start). Returns entity (n,) int64 and stamp (n,) int64 us.
    """
    early = at < end
    everyone = np.arange(n_entities, dtype=np.int64)
    ents = [entity[early].astype(np.int64), everyone]
    stamps = [at[early].astype(np.int64), np.full(n_entities, end, dtype=np.int64)]
    if start is not None and start < end:
        ents.append(everyone)
        stamps.append(np.full(n_entities, start, dtype=np.int64))
    ent, stamp = np.concatenate(ents), np.concatenate(stamps)
    order = np.lexsort((stamp, ent))
    ent, stamp = ent[order], stamp[order]
    fresh = np.ones(ent.size, dtype=bool)  # drop repeats of the same (entity, stamp)
    fresh[1:] = (ent[1:] != ent[:-1]) | (stamp[1:] != stamp[:-1])
    return ent[fresh], stamp[fresh]


def _changed(
    entity: np.ndarray, stamp: np.ndarray, end: int, values: Sequence[np.ndarray]
) -> np.ndarray:
    """Which rows to keep: an entity's first row, a row whose values differ from the entity's
    previous row, and every row at end (the final snapshot). Shape (n,) bool.

    entity, stamp: (n,) sorted as `_change_points` returns them; values: columns exactly as
    written, each (n,) or (n, k), compared exactly. Comparing with the previous candidate
    equals comparing with the previous kept row (equality is transitive).
    """
    keep = stamp == end
    if entity.size == 0:
        return keep
    differs = np.r_[True, entity[1:] != entity[:-1]]
    for column in values:
        step = column[1:] != column[:-1]
        differs[1:] |= step.any(axis=1) if step.ndim == 2 else step
    return keep | differs


def _encode(values: pl.Series, universe: pl.Series) -> np.ndarray:
    """Index of each value in `universe` (sorted, distinct); -1 when absent. Shape (n,)."""
    codes = values.replace_strict(
        universe, pl.int_range(universe.len(), eager=True), default=-1, return_dtype=pl.Int64
    )
    return codes.to_numpy()


def _universe(ids: pl.Series | Sequence[str]) -> pl.Series:
    """Distinct ids, sorted (the row order of the output tables)."""
    return pl.Series("id", ids, dtype=pl.String).drop_nulls().unique().sort()


def _shares(counts: np.ndarray) -> np.ndarray:
    """Rows of a (n, k) non-negative matrix divided by their sums (all-zero rows stay zero)."""
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.zeros(counts.shape, dtype=np.float64), where=total > 0)


# ---- show popularity ------------------------------------------------------------------------
def _known_events(
    events: pl.DataFrame, column: str, universe: pl.Series
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entity code and time (int64 us) of each event whose `column` is in `universe`, and the
    mask of those events among all; shapes (m,), (m,), (n,)."""
    code = _encode(events[column], universe)
    known = code >= 0
    return code[known], event_us(events)[known], known


def show_popularity(
    events: pl.DataFrame,
    show_ids: pl.Series | Sequence[str],
    as_of: datetime,
    windows_days: Sequence[int] = (7, 30, 365),
) -> pl.DataFrame:
    """View counts per show: [show_id, event_timestamp, views_{w}d..., views_total, trend].

    views_{w}d counts events in [t - w days, t); trend (f32) = views_7d / max(1, views_30d *
    7 / 30). Rows (see the module docstring): every show in `show_ids` at the first daily
    snapshot and at as_of, and a show at each daily snapshot where its values change (the
    midnight after a day with events, and after an event leaves a window). The latest row <=
    any snapshot time holds that snapshot's values; a show never watched has two rows of 0.
    """
    ev = cut_events(events, as_of)
    shows = _universe(show_ids)
    end = to_us(as_of)
    code, ts, _ = _known_events(ev, "show_id", shows)
    windows = sorted({*windows_days, 7, 30})  # trend needs the 7- and 30-day counts
    # values change the midnight after an event enters (x) or leaves (x + w days) a window
    moves = np.concatenate([ts, *[ts + w * DAY_US for w in windows]])
    start = first_snapshot_us(_first_us(event_us(ev)), end)
    ent, q = _change_points(
        np.tile(code, len(windows) + 1), next_snapshot_us(moves), end, shows.len(), start
    )
    index = _EventIndex(code, ts)
    total = index.count_before(ent, q)
    views = {w: total - index.count_before(ent, q - w * DAY_US) for w in windows}
    trend = (views[7] / np.maximum(1.0, views[30] * 7.0 / 30.0)).astype(np.float32)
    keep = _changed(ent, q, end, [total, *views.values(), trend])
    return pl.DataFrame(
        [
            shows.gather(ent[keep]).alias("show_id"),
            timestamps(q[keep]),
            *[pl.Series(f"views_{w}d", views[w][keep]) for w in windows_days],
            pl.Series("views_total", total[keep]),
            pl.Series("trend", trend[keep]),
        ]
    )


# ---- show seasonality -----------------------------------------------------------------------
def _profile(index: _EventIndex, ent: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Counts of events before q per category 0..k-1 of entity*k + category; shape (n, k)."""
    return np.stack([index.count_before(ent * k + c, q) for c in range(k)], axis=1)


def show_seasonality(
    events: pl.DataFrame, show_ids: pl.Series | Sequence[str], as_of: datetime
) -> pl.DataFrame:
    """Cumulative viewing profiles per show, on the weekly snapshot grid.

    Columns: show_id, event_timestamp (Mondays 00:00 UTC, and as_of), weekday_profile
    (list[f32] of 7 shares, Monday first), month_profile (list[f32] of 12 shares, January
    first), december_share (f32). Shares are of all events < t and sum to 1, or are all 0 when
    the show has no events yet. Rows: every show at the first weekly snapshot and at as_of,
    and a show on the Monday after each week with its events when its shares change.
    """
    ev = cut_events(events, as_of)
    shows = _universe(show_ids)
    end = to_us(as_of)
    code, ts, known = _known_events(ev, "show_id", shows)
    weekday = (ev["event_timestamp"].dt.weekday().to_numpy() - 1).astype(np.int64)[known]
    month = (ev["event_timestamp"].dt.month().to_numpy() - 1).astype(np.int64)[known]
    start = first_snapshot_us(_first_us(event_us(ev)), end, "week")
    ent, q = _change_points(code, next_snapshot_us(ts, "week"), end, shows.len(), start)
    weekdays = _shares(_profile(_EventIndex(code * 7 + weekday, ts), ent, q, 7))  # (n, 7)
    months = _shares(_profile(_EventIndex(code * 12 + month, ts), ent, q, 12))  # (n, 12)
    weekdays, months = weekdays.astype(np.float32), months.astype(np.float32)
    keep = _changed(ent, q, end, [weekdays, months])
    return pl.DataFrame(
        [
            shows.gather(ent[keep]).alias("show_id"),
            timestamps(q[keep]),
            _float_lists(weekdays[keep], "weekday_profile"),
            _float_lists(months[keep], "month_profile"),
            pl.Series("december_share", months[keep, 11]),
        ]
    )


def _float_lists(matrix: np.ndarray, name: str) -> pl.Series:
    """A (n, k) matrix as a list[f32] column of n rows."""
    if matrix.shape[0] == 0:
        return pl.Series(name, [], dtype=pl.List(pl.Float32))
    return pl.Series(name, matrix.astype(np.float32)).cast(pl.List(pl.Float32))


# ---- user activity --------------------------------------------------------------------------
ACTIVITY_WINDOWS = (7, 30)


def user_activity(events: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Activity per user on the daily grid, from the midnight after their first event.

    Columns: user_id, event_timestamp, events_7d, events_30d, events_total (i64; events in
    [t - w, t)), last_event_us (i64; the time of the last event < t, us since 1970-01-01 UTC:
    the days since it at any T are (T - last_event_us) / 86_400e6, a value that would change
    every day and so is left to the reader). Rows: a user at as_of, and at each daily
    snapshot where their counts or last event change.
    """
    ev = cut_events(events, as_of)
    users = _universe(ev["user_id"])
    end = to_us(as_of)
    code, ts, _ = _known_events(ev, "user_id", users)
    moves = np.concatenate([ts, *[ts + w * DAY_US for w in ACTIVITY_WINDOWS]])
    ent, q = _change_points(
        np.tile(code, len(ACTIVITY_WINDOWS) + 1), next_snapshot_us(moves), end, users.len()
    )
    index = _EventIndex(code, ts)
    total = index.count_before(ent, q)
    counts = [total - index.count_before(ent, q - w * DAY_US) for w in ACTIVITY_WINDOWS]
    last = index.last_before(ent, q)  # always found: a user's first row follows an event
    keep = _changed(ent, q, end, [total, *counts, last])
    return pl.DataFrame(
        [
            users.gather(ent[keep]).alias("user_id"),
            timestamps(q[keep]),
            *[
                pl.Series(f"events_{w}d", c[keep])
                for w, c in zip(ACTIVITY_WINDOWS, counts, strict=True)
            ],
            pl.Series("events_total", total[keep]),
            pl.Series("last_event_us", last[keep]),
        ]
    )


# ---- user genre affinity --------------------------------------------------------------------
def _group_cumsum(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Cumulative sum down axis 0 of x (R, k) within each group (group: (R,), rows in order).

    Sequential within each group, so a group's values never depend on other groups' rows
    (a global cumsum minus offsets would leave float residue that does).
    """
    if x.shape[0] == 0:
        return x
    frame = pl.DataFrame(x, schema=[f"c{i}" for i in range(x.shape[1])])
    frame = frame.with_columns(pl.Series("group", group))
    return frame.select(pl.exclude("group").cum_sum().over("group")).to_numpy()


def _genre_rows(shows: pl.DataFrame, vocab: Vocab) -> pl.DataFrame:
    """(show_id, genre_id, share): each known genre of a show with 1 / its number of genres."""
    ids = vocab.ids("genres")
    pairs = (
        shows.select("show_id", pl.col("genres").alias("genre"))
        .explode("genre")
        .with_columns(
            pl.col("genre")
            .str.strip_chars()
            .replace_strict(list(ids), list(ids.values()), default=0, return_dtype=pl.Int64)
            .alias("genre_id")
        )
        .filter(pl.col("genre_id") > 0)
        .unique(["show_id", "genre_id"])
    )
    return pairs.select("show_id", "genre_id", (1.0 / pl.len().over("show_id")).alias("share"))


def user_genre_affinity(
    events: pl.DataFrame, shows: pl.DataFrame, vocab: Vocab, as_of: datetime
) -> pl.DataFrame:
    """Cumulative weight share per genre of each user's events, at change points.

    Columns: user_id, event_timestamp, genre_affinity (list[f32] of len(vocab.genres) + 1,
    indexed by genre id, index 0 unused), n_genres_seen (i64). An event's weight (null -> 1,
    negative -> 0) is split evenly over its show's known genres; shares sum to 1 (all 0 when
    no event had a known genre). Rows are stamped at the midnight after each day with events
    and at as_of: the state is constant between them, and Feast takes the latest row <= T.
    """
    ev = cut_events(events, as_of)
    end = to_us(as_of)
    n_ids = vocab.size("genres")
    users = _universe(ev["user_id"])
    ev = ev.select(
        pl.Series("u", _encode(ev["user_id"], users)),
        "show_id",
        (pl.col("event_timestamp").dt.epoch("us") // DAY_US).alias("day"),
        pl.col("weight").fill_null(1.0).clip(lower_bound=0.0).alias("w")
        if "weight" in ev.columns
        else pl.lit(1.0).alias("w"),
    )
    days = ev.select("u", "day").unique().sort("u", "day").with_row_index("r")  # (R,)
    parts = (
        ev.join(_genre_rows(shows, vocab), on="show_id", how="inner")
        .join(days, on=["u", "day"], how="inner")
        .select("r", "genre_id", (pl.col("w") * pl.col("share")).alias("w"))
        .sort("r", "genre_id", "w")  # a fixed summation order: bit-identical reruns
    )
    flat = parts["r"].to_numpy().astype(np.int64) * n_ids + parts["genre_id"].to_numpy()
    size = days.height * n_ids
    u = days["u"].to_numpy()  # (R,) user of each user-day row, rows sorted by (user, day)
    weight = np.bincount(flat, weights=parts["w"].to_numpy(), minlength=size)
    weight = _group_cumsum(weight.reshape(-1, n_ids), u)  # (R, G+1) cumulative per user
    seen = _group_cumsum(np.bincount(flat, minlength=size).reshape(-1, n_ids), u)
    # change rows stamped at the midnight after their day (if before as_of), plus one row per
    # user at as_of holding the user's last (complete) state
    stamp = (days["day"].to_numpy() + 1) * DAY_US
    last = np.flatnonzero(np.r_[u[1:] != u[:-1], True]) if u.size else np.zeros(0, np.int64)
    rows = np.r_[np.flatnonzero(stamp < end), last].astype(np.int64)
    stamps = np.r_[stamp[stamp < end], np.full(last.size, end, dtype=np.int64)]
    out = pl.DataFrame(
        [
            users.gather(u[rows]).alias("user_id"),
            timestamps(stamps),
            _float_lists(_shares(weight[rows]), "genre_affinity"),
            pl.Series("n_genres_seen", (seen[rows, 1:] > 0).sum(axis=1).astype(np.int64)),
        ]
    )
    return out.sort("user_id", "event_timestamp")
