"""The heterogeneous TV graph a graph model trains on, as a PyG `HeteroData`.

Built here, from the lake and the graph feature tables (`<workdir>/features/graph/`), so that
no model opens the work directory. Everything is as of the training set's as-of: a watched
edge is an event strictly before it, a co-watch edge one whose `formed_at` is strictly before
it; credits, genres, networks and platforms are catalogue facts (static).

    node types   user, show, person, genre, network, platform   (`graph[t].ids`: their ids,
                 row i = node i; shows in the catalogue's order, `TrainingData.show_ids`)
    show.x       (n_shows, len(SHOW_FEATURES)) float32: numeric show content (year, episodes,
                 seasons, runtime, each z-scored, plus "known" flags) and the show type
    relations    user  -watched->    show      edge_attr (E, 3) [rating, recency, repeats]
                                               edge_weight (E,) rating * recency, in (0, 1]
                 show  -credited->   person    edge_attr (E, n_roles) one-hot role
                 show  -has_genre->  genre
                 show  -airs_on->    network
                 show  -streams_on-> platform
                 show  -cowatch->    show      both directions: edge e and e + M are one pair
                                               edge_attr (E, 1) log users / log max users
    reverse      rev_watched, rev_credited, rev_has_genre, rev_airs_on, rev_streams_on: the
                 forward edge_index flipped, in the same edge order (edge e is edge e)

Every node and edge type is present, possibly empty (a dataset without credits has no person
nodes and no credited edges: the model says so in its metrics); `graph.notes` holds what the
edges cannot say (untimed events), for the model's metrics and the run record.

`graph.events` (user_id, show_id, event_timestamp, weight: the events the watched edges come
from; kept only when asked, `keep_events`, as a long log's events are large) and
`graph.cowatch_rule` (how the feature build formed co-watch pairs) let `graph_before` build
the same graph again from fewer events: as a model trained before a cut on some of the users'
pairs would see it (the ensemble's graph member).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from . import import_quietly
from .features.graph import cowatch_edges as cowatch_pairs
from .features.temporal import cut_events

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

    from .contract import Dataset
    from .workdir import Workdir

GRAPH_DIR = "graph"  # under the features area: the edge tables of pipelines/features/graph.py
RECENCY_HALF_LIFE_DAYS = 365.0  # a watch a year before the as-of counts half
NODE_TYPES = ("user", "show", "person", "genre", "network", "platform")
WATCHED = ("user", "watched", "show")
COWATCH = ("show", "cowatch", "show")
# show -> catalogue node: (relation, node type, edge table, id column)
CATALOGUE_RELATIONS = (
    ("credited", "person", "show_person", "person_id"),
    ("has_genre", "genre", "show_genre", "genre"),
    ("airs_on", "network", "show_network", "network"),
    ("streams_on", "platform", "show_platform", "platform"),
)
WATCHED_ATTRS = ("rating", "recency", "repeats")
N_SHOW_TYPES = 8  # show types one-hot (the most common; the rest share "other")


@dataclass(frozen=True)
class CowatchRule:
    """How the feature build formed co-watch pairs (`[features]`, kept in its manifest)."""

    max_user_history: int
    min_users: int

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> CowatchRule | None:
        """The rule a features manifest records; None for features built before it was."""
        rule = manifest.get("cowatch")
        return cls(**rule) if rule else None


@dataclass(frozen=True)
class Edges:
    """One relation's edges as node rows: src (E,), dst (E,) int64, optional attributes."""

    src: np.ndarray
    dst: np.ndarray
    attr: np.ndarray | None = None  # (E, a) float32
    weight: np.ndarray | None = None  # (E,) float32


def reverse(edge_type: tuple[str, str, str]) -> tuple[str, str, str]:
    """The reverse relation's name: (show, rev_watched, user) for (user, watched, show)."""
    src, rel, dst = edge_type
    return (dst, f"rev_{rel}", src)


def graph_inputs(
    wd: Workdir,
    show_ids: list[str],
    as_of: datetime,
    cowatch_rule: CowatchRule | None = None,
    keep_events: bool = False,
) -> HeteroData:
    """The graph of the work directory's lake and graph features as of `as_of`
    (`cowatch_rule`: the features manifest's, `CowatchRule.of`)."""
    from .ingest import read_lake

    lake = read_lake(wd)
    return build_graph(lake, wd.features / GRAPH_DIR, show_ids, as_of, cowatch_rule, keep_events)


def build_graph(
    lake: Dataset,
    graph_dir: Path,
    show_ids: list[str],
    as_of: datetime,
    cowatch_rule: CowatchRule | None = None,
    keep_events: bool = False,
) -> HeteroData:
    """The graph of `lake` (events cut to `as_of`) and the edge tables in `graph_dir`."""
    import_quietly("torch_geometric")  # its first import, without PyG's import-time warning
    from torch_geometric.data import HeteroData

    graph = HeteroData()
    show_row = {s: i for i, s in enumerate(show_ids)}
    events = cut_events(lake.events, as_of).filter(pl.col("show_id").is_in(list(show_ids)))
    users = sorted(events["user_id"].unique().to_list())
    _nodes(graph, "user", users)
    _nodes(graph, "show", list(show_ids))
    graph["show"].x = torch.as_tensor(show_features(lake.shows, show_ids))
    _relation(graph, WATCHED, watched_edges(events, users, show_row, as_of, lake.timed))
    notes = [] if lake.timed else ["untimed events: recency 1 on every watched edge"]
    for rel, node_type, table, column in CATALOGUE_RELATIONS:
        frame = _read(graph_dir / f"{table}.parquet")
        frame = frame.filter(pl.col("show_id").is_in(list(show_ids))) if frame.height else frame
        ids = sorted(frame[column].unique().to_list()) if frame.height else []
        _nodes(graph, node_type, ids)
        edges = _catalogue_edges(frame, column, show_row, ids, rel == "credited", graph)
        _relation(graph, ("show", rel, node_type), edges)
    cowatch = cowatch_edges(_read(graph_dir / "cowatch.parquet"), show_row, as_of)
    _relation(graph, COWATCH, cowatch, with_reverse=False)
    graph.as_of = as_of.isoformat()
    graph.notes = notes
    graph.timed = lake.timed
    columns = ("user_id", "show_id", "event_timestamp", "weight")
    graph.events = events.select(columns) if keep_events else None
    graph.cowatch_rule = cowatch_rule
    return graph


def graph_before(graph: HeteroData, pairs: pl.DataFrame, cut: datetime) -> HeteroData:
    """`graph` as a model trained before `cut` on the (user, show) `pairs` alone sees it:
    users, watched and co-watch edges from those pairs' events strictly before the cut, built
    as `build_graph` builds them (co-watch pairs formed again by the feature build's rule, so
    that no pair formed by another event counts); show features and the catalogue's relations
    as they are (static facts)."""
    import_quietly("torch_geometric")
    from torch_geometric.data import HeteroData

    rule, events = getattr(graph, "cowatch_rule", None), getattr(graph, "events", None)
    if rule is None:
        raise ValueError("the features were built by an older tvrec: run `tvrec features build`")
    if events is None:
        raise ValueError("the graph was built without its events (`keep_events`)")
    events = cut_events(events, cut).join(pairs.select("user_id", "show_id").unique(),
                                          on=["user_id", "show_id"], how="semi")  # fmt: skip
    show_ids = list(graph["show"].ids)
    show_row = {s: i for i, s in enumerate(show_ids)}
    users = sorted(events["user_id"].unique().to_list())
    out = HeteroData()
    _nodes(out, "user", users)
    _nodes(out, "show", show_ids)
    out["show"].x = graph["show"].x
    _relation(out, WATCHED, watched_edges(events, users, show_row, cut, graph.timed))
    for rel, node_type, _, _ in CATALOGUE_RELATIONS:
        _nodes(out, node_type, list(graph[node_type].ids))
        for edge_type in (("show", rel, node_type), reverse(("show", rel, node_type))):
            for name, value in graph[edge_type].items():
                out[edge_type][name] = value
    frame = cowatch_pairs(events, cut, rule.max_user_history, rule.min_users)
    _relation(out, COWATCH, cowatch_edges(frame, show_row, cut), with_reverse=False)
    for name in ("notes", "timed", "cowatch_rule", "roles"):
        if hasattr(graph, name):
            out[name] = getattr(graph, name)
    out.as_of, out.events = cut.isoformat(), events
    return out


# ---- nodes ----------------------------------------------------------------------------------
def _nodes(graph: HeteroData, node_type: str, ids: list[str]) -> None:
    graph[node_type].num_nodes = len(ids)
    graph[node_type].ids = list(ids)


def show_features(shows: pl.DataFrame, show_ids: list[str]) -> np.ndarray:
    """(n_shows, 8 + N_SHOW_TYPES) float32: z-scored year, log episodes, log seasons and
    runtime, each with a "known" flag, then the show type one-hot; in `show_ids` order."""
    frame = pl.DataFrame({"show_id": show_ids}).join(shows, on="show_id", how="left")
    columns = []
    for values in (
        frame["premiered"].dt.year().cast(pl.Float64),
        frame["episodes"].cast(pl.Float64).log1p(),
        frame["seasons"].cast(pl.Float64).log1p(),
        frame["runtime_minutes"].cast(pl.Float64),
    ):
        v = values.to_numpy().astype(np.float64)
        known = np.isfinite(v)
        mean, std = (v[known].mean(), v[known].std()) if known.any() else (0.0, 1.0)
        columns += [np.where(known, (v - mean) / (std or 1.0), 0.0), known.astype(np.float64)]
    types = frame["type"].fill_null("").to_list()
    common = [t for t, _ in _most_common(types, N_SHOW_TYPES - 1) if t]
    one_hot = np.zeros((len(show_ids), N_SHOW_TYPES))
    for i, t in enumerate(types):
        one_hot[i, common.index(t) if t in common else N_SHOW_TYPES - 1] = 1.0
    return np.column_stack([*columns, one_hot]).astype(np.float32)


def _most_common(values: list[str], n: int) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


# ---- edges ----------------------------------------------------------------------------------
def watched_edges(
    events: pl.DataFrame, users: list[str], show_row: dict[str, int], as_of: datetime, timed: bool
) -> Edges:
    """One edge per (user, show) watched before the as-of: attributes rating (the largest
    weight, log-scaled to (0, 1]), recency (half-life RECENCY_HALF_LIFE_DAYS from the last
    watch; 1 when the dataset is untimed) and repeats (events, log-scaled to [0, 1])."""
    pairs = (
        events.with_columns(pl.col("weight").fill_null(1.0).clip(lower_bound=0.0))
        .group_by("user_id", "show_id")
        .agg(
            pl.col("weight").max().alias("w"),
            pl.col("event_timestamp").max().alias("last"),
            pl.len().alias("n"),
        )
        .sort("user_id", "show_id")
    )
    if not pairs.height:
        return Edges(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.float32),
                     np.zeros(0, np.float32))  # fmt: skip
    user_row = {u: i for i, u in enumerate(users)}
    w = np.log1p(pairs["w"].to_numpy())
    rating = np.maximum(w / max(w.max(), 1e-9), 0.05)  # (E,) in [0.05, 1]: never silenced
    age_days = (to_us(as_of) - pairs["last"].dt.epoch("us").to_numpy()) / 86_400e6
    recency = np.exp(-math.log(2) * age_days / RECENCY_HALF_LIFE_DAYS) if timed else np.ones_like(w)
    n = np.log1p(pairs["n"].to_numpy().astype(np.float64))
    repeats = n / max(n.max(), 1e-9)
    return Edges(
        np.array([user_row[u] for u in pairs["user_id"].to_list()], dtype=np.int64),
        np.array([show_row[s] for s in pairs["show_id"].to_list()], dtype=np.int64),
        np.column_stack([rating, recency, repeats]).astype(np.float32),
        (rating * recency).astype(np.float32),
    )


def _catalogue_edges(
    frame: pl.DataFrame,
    column: str,
    show_row: dict[str, int],
    ids: list[str],
    with_roles: bool,
    graph: HeteroData,
) -> Edges:
    """show -> catalogue node edges; credits carry their role one-hot (`graph.roles` names
    the columns)."""
    if not frame.height:
        if with_roles:
            graph.roles = []
        return Edges(np.zeros(0, np.int64), np.zeros(0, np.int64),
                     np.zeros((0, 0), np.float32) if with_roles else None)  # fmt: skip
    row = {v: i for i, v in enumerate(ids)}
    src = np.array([show_row[s] for s in frame["show_id"].to_list()], dtype=np.int64)
    dst = np.array([row[v] for v in frame[column].to_list()], dtype=np.int64)
    if not with_roles:
        return Edges(src, dst)
    pairs = frame.group_by("show_id", column, maintain_order=True).agg("role")
    roles = sorted(frame["role"].unique().to_list())
    graph.roles = roles
    attr = np.zeros((pairs.height, len(roles)), dtype=np.float32)
    for i, rs in enumerate(pairs["role"].to_list()):  # a person with two roles: both set
        attr[i, [roles.index(r) for r in rs]] = 1.0
    src = np.array([show_row[s] for s in pairs["show_id"].to_list()], dtype=np.int64)
    dst = np.array([row[v] for v in pairs[column].to_list()], dtype=np.int64)
    return Edges(src, dst, attr)


def cowatch_edges(frame: pl.DataFrame, show_row: dict[str, int], as_of: datetime) -> Edges:
    """Co-watch pairs formed strictly before `as_of`, both directions (edge e, e + M one
    pair), attribute log(users) / log(max users)."""
    if frame.height:
        formed = frame["formed_at"].dt.epoch("us").to_numpy()
        keep = formed < to_us(as_of)
        keep &= np.array([a in show_row and b in show_row for a, b in
                          zip(frame["show_a"].to_list(), frame["show_b"].to_list(), strict=True)],
                         dtype=bool)  # fmt: skip
        frame = frame.filter(pl.Series(keep))
    if not frame.height:
        return Edges(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 1), np.float32))
    a = np.array([show_row[s] for s in frame["show_a"].to_list()], dtype=np.int64)
    b = np.array([show_row[s] for s in frame["show_b"].to_list()], dtype=np.int64)
    users = np.log1p(frame["users"].to_numpy().astype(np.float64))
    strength = (users / max(users.max(), 1e-9)).astype(np.float32)[:, None]  # (M, 1)
    return Edges(np.r_[a, b], np.r_[b, a], np.r_[strength, strength])


def _relation(
    graph: HeteroData, edge_type: tuple[str, str, str], edges: Edges, with_reverse: bool = True
) -> None:
    """Store a relation (and its reverse: same edge order, endpoints swapped)."""
    index = torch.as_tensor(np.stack([edges.src, edges.dst]), dtype=torch.long)  # (2, E)
    stores = [(edge_type, index)] + ([(reverse(edge_type), index.flip(0))] if with_reverse else [])
    for name, edge_index in stores:
        graph[name].edge_index = edge_index
        if edges.attr is not None:
            graph[name].edge_attr = torch.as_tensor(edges.attr)
        if edges.weight is not None:
            graph[name].edge_weight = torch.as_tensor(edges.weight)


def _read(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path) if path.exists() else pl.DataFrame()


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return int(moment.timestamp() * 1_000_000)
