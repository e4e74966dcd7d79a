"""Graph features: edge tables of the heterogeneous show graph, the user-show co-watch graph and
per-show graph statistics (degrees, co-cast neighbours, PageRank) as monthly snapshots.

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

from datetime import datetime

import numpy as np
import polars as pl
import scipy.sparse as sp

from .temporal import _universe, cut_events, event_us, snapshot_us, timestamps

DAMPING = 0.85


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
def _user_pairs(
    events: pl.DataFrame, shows: pl.Series, max_user_history: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user co-watch pairs (see the module docstring).

    events: already cut to as_of; shows: sorted distinct show ids (node numbering).
    Returns show_a (m,), show_b (m,) node indices with a < b, and formed (m,) int64 us.
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
    ts = event_us(first)
    a, b, formed = [], [], []
    for k in range(1, max_user_history):  # pair each show with the one started k shows before
        same = user[k:] == user[:-k]
        if not same.any():
            break
        later, earlier = node[k:][same], node[:-k][same]
        a.append(np.minimum(later, earlier))
        b.append(np.maximum(later, earlier))
        formed.append(ts[k:][same])
    if not a:
        return (np.zeros(0, np.int64),) * 3  # type: ignore[return-value]
    return np.concatenate(a), np.concatenate(b), np.concatenate(formed)


def cowatch_edges(
    events: pl.DataFrame, as_of: datetime, max_user_history: int, min_users: int
) -> pl.DataFrame:
    """Undirected co-watch edges from events < as_of: [show_a, show_b, users, formed_at].

    show_a < show_b; users (i64) = users who formed the pair by as_of; formed_at = when the
    min_users-th of them formed it. Only pairs with users >= min_users are edges.
    """
    ev = cut_events(events, as_of)
    shows = _universe(ev["show_id"])
    a, b, formed = _user_pairs(ev, shows, max_user_history)
    pairs = pl.DataFrame({"a": a, "b": b, "formed": formed})
    edges = (
        pairs.group_by("a", "b")
        .agg(
            pl.len().cast(pl.Int64).alias("users"),
            pl.col("formed").bottom_k(min_users).max().alias("formed"),
        )
        .filter(pl.col("users") >= min_users)
        .sort("a", "b")
    )
    return pl.DataFrame(
        [
            shows.gather(edges["a"]).alias("show_a"),
            shows.gather(edges["b"]).alias("show_b"),
            edges["users"],
            timestamps(edges["formed"].to_numpy(), "formed_at"),
        ]
    )


# ---- PageRank -------------------------------------------------------------------------------
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


def _show_major(per_snapshot: list[np.ndarray]) -> np.ndarray:
    """T arrays of shape (S,) as one (S * T,) array ordered show-major, time ascending."""
    return np.stack(per_snapshot, axis=1).ravel()


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
    cowatch_degree (edges), cowatch_weight (f32, sum of edge weights) and pagerank (f32).
    """
    ev = cut_events(events, as_of)
    nodes = _universe(shows["show_id"])
    n = nodes.len()
    times = snapshot_us(int(event_us(ev).min()) if ev.height else None, as_of, "month")
    person_degree, cocast = _person_stats(nodes, credits)
    a, b, formed = _user_pairs(ev, nodes, max_user_history)
    # user formations per (pair, first snapshot that sees them): strictly-before rule
    n_t = times.size
    seg = np.searchsorted(times, formed, side="right")  # (m,) in [0, T)
    codes, users_of = np.unique((a * n + b) * n_t + seg, return_counts=True)  # sorted by pair
    pair_key, seg = codes // n_t, codes % n_t
    new_pair = np.r_[True, pair_key[1:] != pair_key[:-1]] if codes.size else np.zeros(0, bool)
    keys, pair = pair_key[new_pair], np.cumsum(new_pair) - 1  # distinct pairs; index of each
    by_seg = np.argsort(seg, kind="stable")
    pair, users_of = pair[by_seg], users_of[by_seg]
    bounds = np.searchsorted(seg[by_seg], np.arange(n_t + 1))
    running = np.zeros(keys.size, dtype=np.int64)  # users per pair formed before the snapshot
    deg, weight, rank = [], [], []  # per snapshot, each (S,)
    for j in range(n_t):
        fresh = slice(bounds[j], bounds[j + 1])
        running[pair[fresh]] += users_of[fresh]  # pairs are distinct within one snapshot
        live = running >= min_users
        ea, eb, ew = keys[live] // n, keys[live] % n, running[live].astype(np.float64)
        deg.append(np.bincount(ea, minlength=n) + np.bincount(eb, minlength=n))
        weight.append(np.bincount(ea, ew, minlength=n) + np.bincount(eb, ew, minlength=n))
        rank.append(pagerank(n, ea, eb, ew))
    show_idx = np.repeat(np.arange(n), times.size)  # show-major grid (S * T,)
    return pl.DataFrame(
        [
            nodes.gather(show_idx).alias("show_id"),
            timestamps(np.tile(times, n)),
            pl.Series("person_degree", person_degree[show_idx]),
            pl.Series("cocast_neighbors", cocast[show_idx]),
            pl.Series("cowatch_degree", _show_major(deg).astype(np.int64)),
            pl.Series("cowatch_weight", _show_major(weight).astype(np.float32)),
            pl.Series("pagerank", _show_major(rank).astype(np.float32)),
        ]
    )
