"""Graph features: edge tables of the heterogeneous show graph, the user-show co-watch graph and
per-show graph statistics (degrees, co-cast neighbours, PageRank) on a monthly snapshot grid,
written only where a show's values change.

Co-watch pairs. For each user, shows are ordered by the user's first watch (ties by show_id).
When the user starts a show, it pairs with each of the user's `max_user_history - 1` most
recently started shows; the pair "forms" at that first watch, i.e. at the later of the two first
watches. This caps every user at (n_shows * max_user_history) pairs and, unlike a cap on the
most recent shows as of the build time, it never changes a pair formed in the past when later
events arrive, so the graph at any past time T is exactly the pairs formed before T. (For a user
with at most `max_user_history` shows every pair of their shows forms.)

A co-watch edge exists once `min_users` users formed the pair; `formed_at` is that moment, and
an edge is usable at time T iff formed_at < T (same strict rule as every feature row).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl
import scipy.sparse as sp

from .temporal import _universe, cut_events, event_us, snapshot_us, timestamps

DAMPING = 0.85
_NO_ROWS = np.zeros(0, np.int64)


# ---- static edge tables ---------------------------------------------------------------------
def _explode(shows: pl.DataFrame, column: str, name: str) -> pl.DataFrame:
    """(show_id, name) for each non-empty value of a string or list column, distinct, sorted."""
    df = shows.select("show_id", pl.col(column).alias(name))
    if isinstance(df.schema[name], pl.List):
        df = df.explode(name)
    df = df.with_columns(pl.col(name).str.strip_chars())
    return (
        df.filter(pl.col(name).is_not_null() & (pl.col(name) != "")).unique().sort("show_id", name)
    )


def _show_person(shows: pl.DataFrame, credits: pl.DataFrame) -> pl.DataFrame:
    """Distinct (show_id, person_id, role) of shows in the catalogue; missing role 'unknown'."""
    return (
        credits.filter(pl.col("show_id").is_in(shows["show_id"].implode()))
        .select("show_id", "person_id", pl.col("role").fill_null("unknown"))
        .unique()
        .sort("show_id", "person_id", "role")
    )


def show_graph_edges(shows: pl.DataFrame, credits: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Edge tables of the show graph: show_person (show_id, person_id, role), show_genre
    (show_id, genre), show_network (show_id, network), show_platform (show_id, platform)."""
    return {
        "show_person": _show_person(shows, credits),
        "show_genre": _explode(shows, "genres", "genre"),
        "show_network": _explode(shows, "network", "network"),
        "show_platform": _explode(shows, "platforms", "platform"),
    }


# ---- co-watch pairs -------------------------------------------------------------------------
def _sorted_pairs(
    events: pl.DataFrame, shows: pl.Series, max_user_history: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every per-user co-watch pair formation (see the module docstring), sorted by pair, then
    by time: keys (m,) a * S + b of node indices a < b, formed (m,) int64 us.

    events: already cut to as_of; shows: sorted distinct show ids (node numbering, S of them).
    Each formation is one int64 code (pair, rank of its time) written into one array and sorted
    in place, so memory holds a few int64 per formation (anime: 52 M formations, 1.3 GB; the
    per-k pieces, their concatenation and a hash group-by held 5 GB).
    """
    first = (
        events.group_by("user_id", "show_id")
        .agg(pl.col("event_timestamp").min())
        .filter(pl.col("show_id").is_in(shows.implode()))
        .sort("user_id", "event_timestamp", "show_id")
    )
    user = first["user_id"].rank("dense").to_numpy()
    node = (
        first["show_id"]
        .replace_strict(shows, pl.int_range(shows.len(), eager=True), return_dtype=pl.Int64)
        .to_numpy()
    )
    stamps, rank = np.unique(event_us(first), return_inverse=True)  # (R,) times, (n,) ranks
    n, n_stamps = shows.len(), max(stamps.size, 1)
    spans = _spans(user, max_user_history)

    def key(k: int, same: np.ndarray) -> np.ndarray:  # pairs with the show started k before
        later, earlier = node[k:][same], node[:-k][same]
        return np.minimum(later, earlier) * n + np.maximum(later, earlier)

    if n * n * n_stamps >= 2**63:  # one code would overflow: sort two arrays
        keys = _gather(user, spans, key)
        ranks = _gather(user, spans, lambda k, same: rank[k:][same])
        order = np.lexsort((ranks, keys))
        return keys[order], stamps[ranks[order]]
    codes = _gather(user, spans, lambda k, same: key(k, same) * n_stamps + rank[k:][same])
    codes.sort()  # in place: by pair, then by time
    keys = codes // n_stamps
    codes -= keys * n_stamps  # now each formation's time rank
    return keys, stamps[codes]


def _spans(user: np.ndarray, max_user_history: int) -> list[int]:
    """Formations pairing each show with the one its user started k shows before, for k = 1,
    2, ... (user: (n,) one row per user's first watch of a show, by user, then time)."""
    spans = []
    for k in range(1, max_user_history):
        same = int((user[k:] == user[:-k]).sum())
        if same == 0:
            break  # no user has more than k shows
        spans.append(same)
    return spans


def _gather(
    user: np.ndarray, spans: list[int], piece: Callable[[int, np.ndarray], np.ndarray]
) -> np.ndarray:
    """piece(k, same) for every k of `spans`, written one after another into one int64 array
    (same: (n - k,) rows whose user also has the row k before)."""
    out, at = np.empty(sum(spans), np.int64), 0
    for k, size in enumerate(spans, start=1):
        out[at : at + size] = piece(k, user[k:] == user[:-k])
        at += size
    return out


def _runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts (P,) and lengths (P,) of the runs of equal values in a sorted array."""
    if sorted_values.size == 0:
        return _NO_ROWS, _NO_ROWS
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    return starts, np.diff(np.r_[starts, sorted_values.size])


def cowatch_edges(
    events: pl.DataFrame, as_of: datetime, max_user_history: int, min_users: int
) -> pl.DataFrame:
    """Undirected co-watch edges from events < as_of: [show_a, show_b, users, formed_at].

    show_a < show_b; users (i64) = users who formed the pair by as_of; formed_at = when the
    min_users-th of them formed it. Only pairs with users >= min_users are edges.
    """
    ev = cut_events(events, as_of)
    shows = _universe(ev["show_id"])
    keys, formed = _sorted_pairs(ev, shows, max_user_history)
    starts, users = _runs(keys)
    edge = users >= min_users
    pair = keys[starts[edge]]  # (E,) sorted by show_a, then show_b
    n = shows.len()
    return pl.DataFrame(
        [
            shows.gather(pair // n).alias("show_a"),
            shows.gather(pair % n).alias("show_b"),
            pl.Series("users", users[edge], pl.Int64),
            timestamps(formed[starts[edge] + min_users - 1], "formed_at"),  # in time order
        ]
    )


# ---- PageRank -------------------------------------------------------------------------------
RANK_REFRESH = 0.1  # PageRank is recomputed when the co-watch graph has grown by this share


def pagerank(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    weight: np.ndarray,
    damping: float = DAMPING,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> np.ndarray:
    """PageRank of an undirected weighted graph on n nodes (edges a[i]-b[i]), shape (n,).

    Power iteration on the row-normalised adjacency; the rank of dangling nodes (no edges) is
    spread uniformly like the teleport, so an isolated node gets exactly the uniform share
    ((1 - damping) + damping * dangling mass) / n. Sums to 1.
    """
    if n == 0:
        return np.zeros(0)
    adj = sp.csr_matrix(
        (np.r_[weight, weight].astype(np.float64), (np.r_[a, b], np.r_[b, a])), shape=(n, n)
    )  # symmetric (n, n); duplicate entries are summed
    out = np.asarray(adj.sum(axis=1)).ravel()  # (n,) weighted degree
    dangling = out <= 0
    inv_out = np.divide(1.0, out, out=np.zeros(n), where=~dangling)
    rank = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        spread = adj @ (rank * inv_out)  # mass flowing along edges (adj is symmetric)
        new = damping * spread + (damping * rank[dangling].sum() + 1.0 - damping) / n
        done = np.abs(new - rank).sum() < tol
        rank = new
        if done:
            break
    return rank / rank.sum()


# ---- per-show statistics --------------------------------------------------------------------
def _person_stats(shows: pl.Series, credits: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """person_degree and cocast_neighbors per show in `shows` order, each shape (S,) int64."""
    credited = (
        credits.filter(pl.col("show_id").is_in(shows.implode()))
        .select("show_id", "person_id")
        .unique()
    )
    degree = credited.group_by("show_id").agg(pl.len().alias("n"))
    cocast = (
        credited.join(credited, on="person_id", suffix="_other")
        .filter(pl.col("show_id") != pl.col("show_id_other"))
        .group_by("show_id")
        .agg(pl.col("show_id_other").n_unique().alias("n"))
    )
    base = pl.DataFrame({"show_id": shows})

    def per_show(counts: pl.DataFrame) -> np.ndarray:
        joined = base.join(counts, on="show_id", how="left", maintain_order="left")
        return joined["n"].fill_null(0).cast(pl.Int64).to_numpy()

    return per_show(degree), per_show(cocast)


@dataclass
class _CowatchState:
    """Per-show co-watch statistics of one snapshot, each (S,): degree (i64), weight (f32)
    and PageRank (f32), as written."""

    degree: np.ndarray
    weight: np.ndarray
    rank: np.ndarray

    def differs(self, other: _CowatchState) -> np.ndarray:
        """(S,) bool: shows whose written values differ from `other`'s."""
        return (
            (self.degree != other.degree)
            | (self.weight != other.weight)
            | (self.rank != other.rank)
        )


def _cowatch_state(
    n: int, keys: np.ndarray, users: np.ndarray, rank: np.ndarray | None = None
) -> _CowatchState:
    """Statistics of the co-watch graph whose edges are pair keys a * n + b (m,) with user
    counts (m,), all already at least min_users; PageRank computed unless `rank` is given."""
    ea, eb, ew = keys // n, keys % n, users.astype(np.float64)
    weight = np.bincount(ea, ew, minlength=n) + np.bincount(eb, ew, minlength=n)
    return _CowatchState(
        degree=(np.bincount(ea, minlength=n) + np.bincount(eb, minlength=n)).astype(np.int64),
        weight=weight.astype(np.float32),
        rank=pagerank(n, ea, eb, ew).astype(np.float32) if rank is None else rank,
    )


def rank_is_stale(total_weight: float, ranked_weight: float, last: bool) -> bool:
    """Whether PageRank is recomputed at a snapshot: at the first (ranked_weight < 0) and the
    last (as_of) one, and whenever the graph's total edge weight has grown by RANK_REFRESH
    since it was last ranked. One new edge moves every show's exact rank, so recomputing it on
    every change would write every show every month: rows would grow with the calendar."""
    return ranked_weight < 0 or last or total_weight >= ranked_weight * (1 + RANK_REFRESH)


def _formations(
    keys: np.ndarray, formed: np.ndarray, n: int, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """User formations grouped by (pair, first snapshot that sees them: formed < t).

    keys, formed: (m,) pair formations from `_sorted_pairs` (by pair, then time); times: (T,)
    snapshot times. Returns keys (P,) distinct pair keys a * n + b, and, sorted by snapshot,
    pair (G,) index into keys, users (G,) formations, bounds (T + 1,) where snapshot j's
    groups start.
    """
    n_t = times.size
    seg = np.searchsorted(times, formed, side="right")  # (m,) in [0, T): strictly-before rule
    codes = keys * n_t + seg  # (m,) sorted already: a pair's snapshots follow its times
    del seg
    starts, users = _runs(codes)
    pair_key, seg = np.divmod(codes[starts], n_t)
    new_pair = np.ones(starts.size, dtype=bool)
    new_pair[1:] = pair_key[1:] != pair_key[:-1]
    keys, pair = pair_key[new_pair], np.cumsum(new_pair) - 1
    by_seg = np.argsort(seg, kind="stable")
    bounds = np.searchsorted(seg[by_seg], np.arange(n_t + 1))
    return keys, pair[by_seg], users[by_seg], bounds


def _cowatch_changes(
    n: int, times: np.ndarray, keys: np.ndarray, formed: np.ndarray, min_users: int
) -> Iterator[tuple[int, np.ndarray, _CowatchState]]:
    """(snapshot index j, shows (k,) to write at times[j], the state at times[j]).

    The first and the last snapshot (as_of) list every show; the others list the shows whose
    values changed since the previous snapshot. The graph, and with it PageRank (global: one
    new edge moves every show's rank), is recomputed only in snapshots where an edge formed or
    gained users; the others are skipped without a row.
    """
    keys, pair, users, bounds = _formations(keys, formed, n, times)
    running = np.zeros(keys.size, dtype=np.int64)  # users per pair formed before the snapshot
    everyone = np.arange(n, dtype=np.int64)
    last = times.size - 1
    state: _CowatchState | None = None
    ranked_weight = -1.0  # total edge weight when PageRank was last computed
    for j in range(times.size):
        fresh = slice(bounds[j], bounds[j + 1])
        running[pair[fresh]] += users[fresh]  # pairs are distinct within one snapshot
        shows = everyone[:0]
        grew = state is None or (running[pair[fresh]] >= min_users).any()  # an edge formed/grew
        if grew or j == last:
            live = running >= min_users
            total = float(running[live].sum())
            stale = state is None or rank_is_stale(total, ranked_weight, j == last)
            ranked_weight = total if stale else ranked_weight
            new = _cowatch_state(n, keys[live], running[live], None if stale else state.rank)
            shows = everyone if state is None else np.flatnonzero(new.differs(state))
            state = new
        yield j, everyone if j == last else shows, state


def show_graph_stats(
    shows: pl.DataFrame,
    credits: pl.DataFrame,
    events: pl.DataFrame,
    as_of: datetime,
    max_user_history: int,
    min_users: int,
) -> pl.DataFrame:
    """Monthly graph statistics per show: [show_id, event_timestamp, person_degree,
    cocast_neighbors, cowatch_degree, cowatch_weight, pagerank].

    Snapshots: the 1st of each month 00:00 UTC after the first event's month, then as_of.
    person_degree = distinct people credited; cocast_neighbors = distinct other shows sharing
    at least one person (both static). At snapshot t the co-watch graph holds the pairs with
    at least min_users users formed strictly before t, weighted by that user count:
    cowatch_degree (edges), cowatch_weight (f32, sum of edge weights) and pagerank (f32),
    computed at the first snapshot, at as_of, and whenever the total edge weight has grown by
    RANK_REFRESH since the last one (`rank_is_stale`), otherwise carried over.

    Rows (as in pipelines/features/temporal.py): every show at the first snapshot and at
    as_of, and a show at each monthly snapshot where one of its values changed, so the latest
    row <= a snapshot time holds that snapshot's values. PageRank is global: a month in which
    it is recomputed writes every show; between those, only shows whose degree or weight
    moved get a row, so the table grows with the graph, not with the months.
    """
    ev = cut_events(events, as_of)
    nodes = _universe(shows["show_id"])
    n = nodes.len()
    times = snapshot_us(int(event_us(ev).min()) if ev.height else None, as_of, "month")
    person_degree, cocast = _person_stats(nodes, credits)
    keys, formed = _sorted_pairs(ev, nodes, max_user_history)
    show_idx, stamp, degree, weight, rank = [], [], [], [], []  # one array per written snapshot
    for j, written, state in _cowatch_changes(n, times, keys, formed, min_users):
        show_idx.append(written)
        stamp.append(np.full(written.size, times[j], dtype=np.int64))
        degree.append(state.degree[written])
        weight.append(state.weight[written])
        rank.append(state.rank[written])
    idx, at = np.concatenate(show_idx), np.concatenate(stamp)
    order = np.lexsort((at, idx))  # show-major, time ascending
    idx, at = idx[order], at[order]
    return pl.DataFrame(
        [
            nodes.gather(idx).alias("show_id"),
            timestamps(at),
            pl.Series("person_degree", person_degree[idx]),
            pl.Series("cocast_neighbors", cocast[idx]),
            pl.Series("cowatch_degree", np.concatenate(degree)[order]),
            pl.Series("cowatch_weight", np.concatenate(weight)[order]),
            pl.Series("pagerank", np.concatenate(rank)[order]),
        ]
    )
