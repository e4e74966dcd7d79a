"""GNN-TV: a heterogeneous graph network over users, shows, people, genres, networks and
platforms (FeatureService `graph_v1`; the graph itself is built by pipelines/graph_inputs.py
and handed in as `TrainingData.graph`).

    inputs:     user -> ID embedding; show -> content projection (year, episodes, seasons,
                runtime, type) + ID embedding (only for shows watched in training, randomly
                hidden while training); person / genre / network / platform -> ID embedding
    encoder:    `layers` HeteroConv layers; on every relation a `SageGatConv`: GraphSAGE (mean
                of the neighbours) and GAT (attention over them, reading the edge attributes:
                rating, recency and repeats on watched edges, the role on credits, the user
                count on co-watch edges) mixed by a learned gate; residual + LayerNorm
    meta-paths: show-person-show (actor collaboration), show-genre-show, show-network-show,
                show-user-show (co-watch) and user-show-user: two-hop means of the input
                embeddings through the middle node type, each through its own projection
    semantic:   HAN-style attention over [encoder output, meta-path vectors] per node type:
                one weight per meta-path (reported in the metrics) -> z (dim,)
    history:    users add a residual pathway, the ID vectors of every show they watched
                (the step's target edges left out) summed over length ** history_alpha
                (FISM; 0.5: anime 0.349 against 0.341 for the mean): LightGCN's user-side
                propagation over the whole history, where the encoder sees `fanouts` of it
    served:     show [z / |z|, b] with bias b = w . z + c (from content too: cold shows
                get one), user [z / (|z| temperature), 1]: the inner product (what the "dot"
                index computes) is cos(z_u, z_s) / temperature + b_s, the training score

Training is multi-task (loss weights are settings): link prediction on watched edges
(sampled softmax over shared uniform negatives, or BPR), genre and network prediction for a
share of each step's shows whose genre and network edges are hidden from the encoder, and
show-show similarity (InfoNCE on co-watch pairs, the pair's own edge hidden). A step's target
edges are always removed from the graph it encodes, so no edge predicts itself.

Batching: neighbour sampling by default (`batching = "neighbor"`: each step encodes only the
sampled `fanouts`-hop neighbourhood of its users and shows, and layer l of L computes only the
nodes within L - 1 - l hops of them), or the whole graph per step (`"full"`, for small graphs).
Steps are small (1,024 watched edges) and many: at least `min_steps` (1,200) over the `epochs`,
so a small graph (MovieLens-100k: 88 a pass) makes more than a pass an epoch, a large one
(anime: 407) one. The learning rate follows a cosine over the epochs. On anime, epochs and the
schedule were what counted: NDCG@10 0.341 (4 epochs, constant rate, temperature 0.1), 0.364
(6 epochs), 0.373 (6, cosine, temperature 0.07).
PyG's NeighborLoader / LinkNeighborLoader need pyg-lib or torch-sparse, which tvrec does not
install (no wheels for its torch); the sampler here is the same uniform per-relation scheme
in plain torch (`NeighbourSampler`), drawn from the trainer's seeded streams so a resumed run
re-draws the same sub-graphs, and it runs on the CPU under both profiles (the GPU profile
moves each sampled sub-graph to the device).

The served vectors come from one pass over the whole graph after training (eval mode, every
edge). Co-watch edges are thinned to each show's `cowatch_top_k` strongest partners (a dense
catalogue has millions of pairs: 3.75M on the anime data). ID tables start small (std 0.1):
Adam's steps are then large relative to them, which made the link task learn several times
faster than PyTorch's N(0, 1) default.

Inductive: a show nobody watched has no ID vector; it is encoded from its content, cast,
genres, network and platforms (and their meta-paths), so it can be recommended and found as
similar. A user unknown to training gets [0, 1]: the show bias alone ranks for them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import polars as pl
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from tvrec.pipelines import import_quietly

from .base import ModelConfig, Recommender, TrainingData
from .layers import FastDropout
from .losses import bpr, info_nce, sampled_softmax
from .trainer import Rngs, StepResult, TrainTask

EdgeType = tuple[str, str, str]
USER, SHOW = "user", "show"
WATCHED: EdgeType = ("user", "watched", "show")
REV_WATCHED: EdgeType = ("show", "rev_watched", "user")
COWATCH: EdgeType = ("show", "cowatch", "show")
HAS_GENRE: EdgeType = ("show", "has_genre", "genre")
AIRS_ON: EdgeType = ("show", "airs_on", "network")
CATALOGUE_TYPES = ("person", "genre", "network", "platform")
# name -> (target type, first hop (target -> middle), second hop (middle -> target))
METAPATHS: dict[str, tuple[str, EdgeType, EdgeType]] = {
    "show-person-show": (SHOW, ("show", "credited", "person"), ("person", "rev_credited", "show")),
    "show-genre-show": (SHOW, HAS_GENRE, ("genre", "rev_has_genre", "show")),
    "show-network-show": (SHOW, AIRS_ON, ("network", "rev_airs_on", "show")),
    "show-user-show": (SHOW, REV_WATCHED, WATCHED),
    "user-show-user": (USER, WATCHED, REV_WATCHED),
}


class GraphConfig(ModelConfig):
    dim: int = Field(64, ge=4, description="node embedding size")
    epochs: int = Field(7, ge=1, description="epochs of at least one pass over the watched edges")
    min_steps: int = Field(
        600, ge=0, description="optimizer steps, at least: an epoch makes several passes when "
        "one is shorter than its share (MovieLens-100k: 44 steps a pass)",
    )  # fmt: skip
    lr: float = Field(1e-2, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="cosine: the rate falls from lr towards 0 over the epochs"
    )
    weight_decay: float = Field(0.0, ge=0)
    layers: int = Field(2, ge=1, le=4, description="HeteroConv layers")
    heads: int = Field(2, ge=1, description="GAT attention heads (dim must divide by it)")
    dropout: float = Field(0.1, ge=0, lt=1)
    batching: Literal["neighbor", "full"] = Field(
        "neighbor", description="neighbor: sampled sub-graphs per step; full: the whole graph"
    )
    fanouts: list[int] = Field(
        [5, 3], description="neighbours sampled per relation and hop (-1: all); one per hop, "
        "at least max(layers, 2) hops (the meta-paths reach two)",
    )  # fmt: skip
    batch_size: int = Field(
        2048, ge=1, description="watched edges per step; GPU multiplies (anime: 2.2x faster "
        "than 1,024, NDCG@10 0.356 against 0.378)",
    )  # fmt: skip
    link_loss: Literal["softmax", "bpr"] = "softmax"
    link_negatives: int = Field(1024, ge=1, description="uniform negatives shared by a step")
    temperature: float = Field(0.07, gt=0, description="of the link softmax (cosine scores)")
    id_dropout: float = Field(0.2, ge=0, lt=1, description="share of show ID vectors hidden")
    content_mask: float = Field(
        0.3, ge=0, le=1, description="share of a step's shows whose genre and network edges "
        "are hidden; the genre and network heads predict them",
    )  # fmt: skip
    genre_weight: float = Field(0.1, ge=0, description="loss weight of genre prediction")
    network_weight: float = Field(0.1, ge=0, description="loss weight of network prediction")
    similarity_weight: float = Field(0.1, ge=0, description="loss weight of co-watch pairs")
    similarity_batch: int = Field(256, ge=2, description="co-watch pairs per step")
    similarity_temperature: float = Field(0.2, gt=0)
    metapaths: list[str] = Field(
        list(METAPATHS), description="meta-paths aggregated (those the graph has): "
        + ", ".join(METAPATHS),
    )  # fmt: skip
    history: bool = Field(
        True, description="add to each user's z the show ID vectors of the user's whole watch "
        "history (the step's target edges left out, pooled by history_alpha): a residual pathway",
    )  # fmt: skip
    history_alpha: float = Field(
        0.5, ge=0, le=1, description="the history is the sum of the shows' ID vectors over "
        "length ** alpha (FISM's alpha): 1 is the mean; lower lets longer histories speak louder",
    )  # fmt: skip
    cowatch_top_k: int = Field(
        20, ge=1, description="co-watch edges kept per show: its strongest partners (a dense "
        "co-watch graph has millions of pairs)",
    )  # fmt: skip

    @model_validator(mode="after")
    def _consistent(self) -> GraphConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if len(self.fanouts) < max(self.layers, 2):
            raise ValueError(
                f"fanouts needs at least max(layers, 2) = {max(self.layers, 2)} hops, "
                f"got {self.fanouts}"
            )
        unknown = sorted(set(self.metapaths) - set(METAPATHS))
        if unknown:
            raise ValueError(f"unknown meta-paths {unknown}; known: {', '.join(METAPATHS)}")
        if any(f == 0 or f < -1 for f in self.fanouts):
            raise ValueError(f"fanouts must be positive or -1 (all), got {self.fanouts}")
        return self


# ---- the graph as tensors -----------------------------------------------------------------
@dataclass(frozen=True)
class GraphStructure:
    """What the network's shape depends on (kept in the state to rebuild it)."""

    num_nodes: dict[str, int]
    relations: list[EdgeType]  # the relations with edges, reverse ones included
    edge_dims: dict[str, int]  # "src__rel__dst" -> edge attribute width (0: none)
    show_features: int
    metapaths: list[str]
    n_genres: int
    n_networks: int

    def to_state(self) -> dict[str, Any]:
        return {
            "num_nodes": dict(self.num_nodes),
            "relations": [list(r) for r in self.relations],
            "edge_dims": dict(self.edge_dims),
            "show_features": self.show_features,
            "metapaths": list(self.metapaths),
            "n_genres": self.n_genres,
            "n_networks": self.n_networks,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GraphStructure:
        return cls(**(state | {"relations": [tuple(r) for r in state["relations"]]}))

    def fits(self, other: GraphStructure) -> bool:
        """Whether a network of this shape encodes `other`'s graph: the same nodes but
        users, its relations among these with the same attributes, the same show features."""
        nodes = {t: n for t, n in self.num_nodes.items() if t != USER}
        return (
            nodes == {t: n for t, n in other.num_nodes.items() if t != USER}
            and set(other.relations) <= set(self.relations)
            and all(self.edge_dims[key(r)] == other.edge_dims[key(r)] for r in other.relations)
            and self.show_features == other.show_features
        )


def key(edge_type: EdgeType) -> str:
    return "__".join(edge_type)


@dataclass
class GraphTensors:
    """The handed-in HeteroData reduced to what training reads: relations with edges."""

    num_nodes: dict[str, int]
    edge_index: dict[EdgeType, torch.Tensor]  # (2, E) global node rows
    edge_attr: dict[EdgeType, torch.Tensor]  # (E, a), relations with attributes only
    show_x: torch.Tensor  # (n_shows, f)
    known_shows: torch.Tensor  # (n_shows,) bool: watched in training (has an ID vector)
    genres: torch.Tensor  # (n_shows, n_genres) 0/1 targets
    network: torch.Tensor  # (n_shows,) network row, -1 none
    notes: list[str]

    @classmethod
    def of(cls, graph: Any, cowatch_top_k: int) -> GraphTensors:
        num_nodes = {t: int(graph[t].num_nodes or 0) for t in graph.node_types}
        edge_index, edge_attr = {}, {}
        for edge_type in graph.edge_types:
            store = graph[edge_type]
            index, attr = store.edge_index.long(), getattr(store, "edge_attr", None)
            if edge_type == COWATCH and index.shape[1]:
                index, attr = strongest_pairs(index, attr, cowatch_top_k)
            if index.shape[1] == 0:
                continue
            edge_index[edge_type] = index
            if attr is not None and attr.dim() == 2 and attr.shape[1] > 0:
                edge_attr[edge_type] = attr.float()
        n_shows = num_nodes[SHOW]
        watched = edge_index.get(WATCHED, torch.zeros(2, 0, dtype=torch.long))
        known = torch.zeros(n_shows, dtype=torch.bool)
        known[watched[1]] = True
        genres = torch.zeros(n_shows, num_nodes.get("genre", 0))
        if HAS_GENRE in edge_index:
            genres[edge_index[HAS_GENRE][0], edge_index[HAS_GENRE][1]] = 1.0
        network = torch.full((n_shows,), -1, dtype=torch.long)
        if AIRS_ON in edge_index:  # a show on several networks: one of them is the target
            network[edge_index[AIRS_ON][0]] = edge_index[AIRS_ON][1]
        x = graph[SHOW].x.float() if "x" in graph[SHOW] else torch.zeros(n_shows, 1)
        notes = list(getattr(graph, "notes", []) or [])
        return cls(num_nodes, edge_index, edge_attr, x, known, genres, network, notes)

    def only(self, relations: Sequence[EdgeType]) -> GraphTensors:
        """These tensors with the edges of `relations` alone (a network trained without a
        relation has no convolution for it)."""
        keep = set(relations)
        return dataclasses.replace(
            self,
            edge_index={r: e for r, e in self.edge_index.items() if r in keep},
            edge_attr={r: a for r, a in self.edge_attr.items() if r in keep},
        )

    def structure(self, metapaths: Sequence[str]) -> GraphStructure:
        """The network's shape on this graph: its relations, and those of `metapaths` whose
        two hops both have edges."""
        relations = list(self.edge_index)
        metapaths = [
            name for name, (_, first, second) in METAPATHS.items()
            if name in metapaths and first in self.edge_index and second in self.edge_index
        ]  # fmt: skip
        return GraphStructure(
            num_nodes=dict(self.num_nodes),
            relations=relations,
            edge_dims={
                key(r): int(self.edge_attr[r].shape[1]) if r in self.edge_attr else 0
                for r in relations
            },
            show_features=int(self.show_x.shape[1]),
            metapaths=metapaths,
            n_genres=int(self.genres.shape[1]) if self.genres.sum() > 0 else 0,
            n_networks=self.num_nodes.get("network", 0) if (self.network >= 0).any() else 0,
        )

    def cowatch_pairs(self) -> torch.Tensor:
        """(M, 2) show rows of each co-watch pair (the first half of the edges)."""
        edges = self.edge_index.get(COWATCH, torch.zeros(2, 0, dtype=torch.long))
        return edges[:, : edges.shape[1] // 2].T


def strongest_pairs(
    index: torch.Tensor, attr: torch.Tensor | None, top_k: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Co-watch pairs (both directions: edge e and e + M one pair) kept where the pair is
    among the `top_k` strongest (attribute 0, the user count) of either show; the result
    keeps the both-directions layout. (2, 2M), (2M, a) -> (2, 2M'), (2M', a)."""
    m = index.shape[1] // 2
    strength = attr[:m, 0] if attr is not None else torch.ones(m)  # (M,)
    keep = torch.zeros(m, dtype=torch.bool)
    for side in (0, 1):  # the pair's rank among each show's pairs
        show = index[side, :m]
        order = torch.argsort(strength, descending=True, stable=True)
        order = order[torch.argsort(show[order], stable=True)]  # by show, strongest first
        counts = torch.bincount(show, minlength=int(show.max()) + 1)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(m) - starts[show[order]]
        keep[order[rank < top_k]] = True
    pairs = torch.nonzero(keep).squeeze(1)
    both = torch.cat([pairs, pairs + m])
    return index[:, both], (attr[both] if attr is not None else None)


# ---- neighbour sampling --------------------------------------------------------------------
@dataclass
class SubGraph:
    """Nodes (global rows per type, `n_id`) and edges (local rows) that one step encodes.
    With sampling, each type's seeds come first, in the order asked for."""

    n_id: dict[str, torch.Tensor]
    edge_index: dict[EdgeType, torch.Tensor]  # (2, e) local rows
    edge_attr: dict[EdgeType, torch.Tensor]  # (e, a)
    # sampled: per type, how many rows lie within 0 (the seeds), 1, ... hops; None: whole graph
    hops: dict[str, list[int]] | None = None

    def to(self, device: torch.device) -> SubGraph:
        move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return SubGraph(move(self.n_id), move(self.edge_index), move(self.edge_attr), self.hops)

    def within(self, hop: int) -> dict[str, int]:
        """Rows per type within `hop` hops of the seeds (every row when not sampled): the
        nodes whose vectors a layer still has to compute."""
        if self.hops is None:
            return {t: len(n) for t, n in self.n_id.items()}
        return {t: counts[min(hop, len(counts) - 1)] for t, counts in self.hops.items()}


class NeighbourSampler:
    """Uniform per-relation neighbour sampling over CSR (incoming edges by destination), the
    scheme of PyG's NeighborSampler, in plain torch. Also builds the whole graph as one
    sub-graph (full batching) with some edges left out."""

    def __init__(self, graph: GraphTensors, fanouts: Sequence[int]) -> None:
        self.graph, self.fanouts = graph, list(fanouts)
        self.csr: dict[EdgeType, tuple[torch.Tensor, torch.Tensor]] = {}
        for rel, index in graph.edge_index.items():
            order = torch.argsort(index[1], stable=True)  # edge ids sorted by destination
            counts = torch.bincount(index[1], minlength=graph.num_nodes[rel[2]])
            ptr = torch.zeros(len(counts) + 1, dtype=torch.long)
            ptr[1:] = torch.cumsum(counts, 0)
            self.csr[rel] = (ptr, order)  # (n_dst + 1,), (E,)

    def in_edges(
        self, rel: EdgeType, nodes: torch.Tensor, fanout: int, gen: torch.Generator | None
    ) -> torch.Tensor:
        """Edge ids into `nodes` over `rel`: all of a node's when it has at most `fanout`
        (or fanout is -1), else `fanout` drawn uniformly (with replacement, then deduplicated)."""
        if rel not in self.csr or not len(nodes):
            return torch.zeros(0, dtype=torch.long)
        ptr, order = self.csr[rel]
        start, degree = ptr[nodes], ptr[nodes + 1] - ptr[nodes]  # (n,) each
        every = degree <= fanout if fanout >= 0 else torch.ones_like(degree, dtype=torch.bool)
        s, d = start[every], degree[every]
        first = torch.repeat_interleave(s - torch.cumsum(d, 0) + d, d)  # (sum d,)
        positions = [first + torch.arange(len(first))]
        if not bool(every.all()):
            s, d = start[~every], degree[~every]
            draw = torch.rand(len(s), fanout, generator=gen)  # (n_big, fanout)
            positions.append(((draw * d[:, None]).long() + s[:, None]).flatten())
        return order[torch.cat(positions).unique()]

    def sample(
        self,
        seeds: dict[str, torch.Tensor],
        blocked: dict[EdgeType, torch.Tensor],
        gen: torch.Generator,
    ) -> SubGraph:
        """The `len(fanouts)`-hop neighbourhood of `seeds` (unique global rows per type),
        without the `blocked` edge ids."""
        nodes = _NodeSet(self.graph.num_nodes, seeds)
        frontier = dict(seeds)
        masks = {
            rel: _mask(ids, self.graph.edge_index[rel].shape[1]) for rel, ids in blocked.items()
        }  # (E,) bool per relation: a lookup per hop instead of a set search
        picked: dict[EdgeType, list[torch.Tensor]] = {r: [] for r in self.csr}
        hops = {t: [n] for t, n in nodes.count.items()}  # rows within 0, 1, ... hops
        for fanout in self.fanouts:
            reached: dict[str, list[torch.Tensor]] = {}
            for rel in self.csr:
                dst_nodes = frontier.get(rel[2])
                if dst_nodes is None or not len(dst_nodes):
                    continue
                eids = _unblocked(self.in_edges(rel, dst_nodes, fanout, gen), masks.get(rel))
                picked[rel].append(eids)
                reached.setdefault(rel[0], []).append(self.graph.edge_index[rel][0, eids])
            frontier = {t: nodes.add(t, torch.cat(v)) for t, v in reached.items()}
            for t, counts in hops.items():
                counts.append(nodes.count[t])
        return self._subgraph(nodes, picked, hops)

    def _subgraph(
        self,
        nodes: _NodeSet,
        picked: dict[EdgeType, list[torch.Tensor]],
        hops: dict[str, list[int]],
    ) -> SubGraph:
        edge_index, edge_attr = {}, {}
        for rel, parts in picked.items():
            eids = torch.cat(parts).unique() if parts else torch.zeros(0, dtype=torch.long)
            src, dst = self.graph.edge_index[rel][:, eids]
            edge_index[rel] = torch.stack([nodes.local(rel[0], src), nodes.local(rel[2], dst)])
            if rel in self.graph.edge_attr:
                edge_attr[rel] = self.graph.edge_attr[rel][eids]
        return SubGraph(nodes.ids(), edge_index, edge_attr, hops)

    def full(self, blocked: dict[EdgeType, torch.Tensor]) -> SubGraph:
        """The whole graph (local rows = global rows) without the `blocked` edge ids."""
        n_id = {t: torch.arange(n) for t, n in self.graph.num_nodes.items()}
        edge_index, edge_attr = {}, {}
        for rel, index in self.graph.edge_index.items():
            keep = torch.ones(index.shape[1], dtype=torch.bool)
            if rel in blocked:
                keep[blocked[rel]] = False
            edge_index[rel] = index[:, keep]
            if rel in self.graph.edge_attr:
                edge_attr[rel] = self.graph.edge_attr[rel][keep]
        return SubGraph(n_id, edge_index, edge_attr)


class _NodeSet:
    """Global -> local rows per node type, growing as hops reach new nodes."""

    def __init__(self, num_nodes: dict[str, int], seeds: dict[str, torch.Tensor]) -> None:
        self.rows = {t: torch.full((n,), -1, dtype=torch.long) for t, n in num_nodes.items()}
        self.order: dict[str, list[torch.Tensor]] = {t: [] for t in num_nodes}
        self.count = dict.fromkeys(num_nodes, 0)
        for t, s in seeds.items():
            self.add(t, s)

    def add(self, node_type: str, nodes: torch.Tensor) -> torch.Tensor:
        """Register `nodes` (global rows); returns the ones not seen before (the next
        frontier), in first-seen order."""
        rows = self.rows[node_type]
        nodes = _first_unique(nodes)
        new = nodes[rows[nodes] < 0]
        rows[new] = torch.arange(self.count[node_type], self.count[node_type] + len(new))
        self.count[node_type] += len(new)
        self.order[node_type].append(new)
        return new

    def local(self, node_type: str, nodes: torch.Tensor) -> torch.Tensor:
        return self.rows[node_type][nodes]

    def ids(self) -> dict[str, torch.Tensor]:
        return {
            t: torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
            for t, parts in self.order.items()
        }


def _first_unique(nodes: torch.Tensor) -> torch.Tensor:
    """Distinct values of `nodes` in order of first occurrence."""
    values, inverse = torch.unique(nodes, return_inverse=True)
    first = torch.full((len(values),), len(nodes), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(nodes)), reduce="amin")
    return values[torch.argsort(first)]


def _mask(ids: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) bool, True at `ids`."""
    mask = torch.zeros(n, dtype=torch.bool)
    mask[ids] = True
    return mask


def _unblocked(eids: torch.Tensor, blocked: torch.Tensor | None) -> torch.Tensor:
    """`eids` without those `blocked` marks ((E,) bool; None: none blocked)."""
    if blocked is None or not len(eids):
        return eids
    return eids[~blocked[eids]]


class UserHistories:
    """Each user's watched edges as CSR (edge ids grouped by user), for the history pathway."""

    def __init__(self, watched: torch.Tensor, n_users: int) -> None:
        self.watched = watched  # (2, E) user row, show row
        self.order = torch.argsort(watched[0], stable=True)  # (E,) edge ids by user
        counts = torch.bincount(watched[0], minlength=n_users)
        self.ptr = torch.zeros(n_users + 1, dtype=torch.long)  # (n_users + 1,)
        self.ptr[1:] = torch.cumsum(counts, 0)

    def bags(
        self, users: torch.Tensor, blocked: torch.Tensor | None, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """EmbeddingBag input for `users` (n,): their shows (nnz,) and each bag's offset
        (n,), the `blocked` edge ids left out."""
        start, degree = self.ptr[users], self.ptr[users + 1] - self.ptr[users]  # (n,) each
        bag = torch.repeat_interleave(torch.arange(len(users)), degree)  # (sum d,)
        first = torch.repeat_interleave(start - torch.cumsum(degree, 0) + degree, degree)
        eids = self.order[first + torch.arange(len(first))]  # (sum d,) the users' edge ids
        if blocked is not None and len(blocked):
            keep = ~_mask(blocked, self.watched.shape[1])[eids]
            eids, bag = eids[keep], bag[keep]
        offsets = torch.searchsorted(bag, torch.arange(len(users)))  # (n,) bag starts
        return self.watched[1, eids].to(device), offsets.to(device)


# ---- the network ---------------------------------------------------------------------------
class SageGatConv(nn.Module):
    """One relation's message passing, GraphSAGE and GAT in one pass over the edges.

    Both read the same projected neighbour vectors W x_j (heads x channels); each edge's
    weight mixes SAGE's mean (1 / in-degree) with GAT's attention (GATv1 logits
    LeakyReLU(a_src . W x_j + a_dst . W x_i + a_edge . edge_attr), softmaxed over the
    destination's incoming edges) by a learned gate g = sigmoid(gate):

        out_i = sum_j (g / deg_i + (1 - g) alpha_ij) W x_j  +  W_root x_i

    (SAGE's root weight keeps the node's own vector). One gather and one scatter of the
    edges instead of two convolutions: what makes it affordable on a CPU. The edge
    attributes (rating, recency and repeats of a watch, a credit's role, a co-watch pair's
    user count) enter the attention only, so a relation without them is plain GAT there."""

    def __init__(self, dim: int, heads: int, edge_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.channels = heads, dim // heads
        self.lin = nn.Linear(dim, dim, bias=False)  # W: messages and attention
        self.root = nn.Linear(dim, dim)  # SAGE's root weight
        self.att_src = nn.Parameter(torch.empty(heads, self.channels))
        self.att_dst = nn.Parameter(torch.empty(heads, self.channels))
        self.att_edge = nn.Linear(edge_dim, heads, bias=False) if edge_dim else None
        self.gate = nn.Parameter(torch.zeros(1))  # g = 0.5: half mean, half attention
        self.attention_dropout = FastDropout(dropout)
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)

    def forward(
        self,
        x: tuple[torch.Tensor, torch.Tensor] | torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor | None = None,
    ) -> torch.Tensor:
        from torch_geometric.utils import scatter, softmax

        x_src, x_dst = x if isinstance(x, tuple) else (x, x)  # (n_src, dim), (n_dst, dim)
        n_dst, (src, dst) = len(x_dst), edge_index
        h_src = self.lin(x_src).view(-1, self.heads, self.channels)  # (n_src, H, C)
        # a_dst . W x_i as x_i . (W^T a_dst): the destinations need no projection of their own
        w = self.lin.weight.view(self.heads, self.channels, -1)  # (H, C, dim)
        dst_att = torch.einsum("hcd,hc->dh", w, self.att_dst)  # (dim, H)
        logits = (h_src * self.att_src).sum(-1)[src] + (x_dst @ dst_att.to(x_dst.dtype))[dst]
        if self.att_edge is not None and edge_attr is not None:
            logits = logits + self.att_edge(edge_attr.to(logits.dtype))  # (E, H)
        alpha = softmax(F.leaky_relu(logits.float(), 0.2), dst, num_nodes=n_dst)  # (E, H)
        degree = torch.bincount(dst, minlength=n_dst).clamp(min=1).float()  # (n_dst,)
        g = torch.sigmoid(self.gate)
        weight = g / degree[dst, None] + (1 - g) * self.attention_dropout(alpha)  # (E, H)
        messages = h_src[src] * weight.to(h_src.dtype)[..., None]  # (E, H, C)
        out = scatter(messages, dst, 0, dim_size=n_dst, reduce="sum")  # (n_dst, H, C)
        return out.reshape(n_dst, self.heads * self.channels) + self.root(x_dst)  # (n_dst, dim)


class SemanticAttention(nn.Module):
    """HAN's semantic-level attention: one weight per candidate view (the encoder output and
    each meta-path), from the views' mean projected score over the nodes."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.query = nn.Linear(dim, 1, bias=False)

    def forward(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """views (p, n, dim) -> (fused (n, dim), weights (p,))."""
        if views.shape[1] == 0:
            return views.sum(0), torch.full((views.shape[0],), 1.0 / views.shape[0])
        score = self.query(self.project(views)).mean(dim=(1, 2))  # (p,)
        beta = torch.softmax(score.float(), dim=0).to(views.dtype)  # (p,)
        return (beta[:, None, None] * views).sum(0), beta


class GraphNet(nn.Module):
    def __init__(self, structure: GraphStructure, cfg: GraphConfig) -> None:
        import_quietly("torch_geometric")  # its first import, without PyG's import-time warning
        from torch_geometric.nn import HeteroConv

        super().__init__()
        d, n = cfg.dim, structure.num_nodes
        self.structure = structure
        self.user_arch = nn.Embedding(max(n[USER], 1), d)
        self.show_id_arch = nn.Embedding(max(n[SHOW], 1), d)
        self.show_content_arch = nn.Sequential(
            nn.Linear(structure.show_features, d), nn.GELU(), nn.Linear(d, d)
        )
        self.entity_arch = nn.ModuleDict(
            {t: nn.Embedding(max(n.get(t, 0), 1), d) for t in CATALOGUE_TYPES}
        )
        self.encoder = nn.ModuleList(
            HeteroConv(self._convs(structure, cfg), aggr="mean") for _ in range(cfg.layers)
        )
        self.norms = nn.ModuleList(
            nn.ModuleDict({t: nn.LayerNorm(d) for t in (USER, SHOW, *CATALOGUE_TYPES)})
            for _ in range(cfg.layers)
        )
        self.metapath_arch = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(d, d), nn.GELU()) for name in structure.metapaths}
        )
        self.semantic = nn.ModuleDict({t: SemanticAttention(d) for t in (USER, SHOW)})
        self.history = cfg.history
        self.history_alpha = cfg.history_alpha
        self.bias_head = nn.Linear(d, 1)
        self.genre_head = nn.Linear(d, structure.n_genres) if structure.n_genres else None
        self.network_head = nn.Linear(d, structure.n_networks) if structure.n_networks else None
        self.dropout = FastDropout(cfg.dropout)
        self.temperature = cfg.temperature
        for table in (self.user_arch, self.show_id_arch, *self.entity_arch.values()):
            nn.init.normal_(table.weight, std=0.1)  # small: Adam turns them quickly

    @staticmethod
    def _convs(structure: GraphStructure, cfg: GraphConfig) -> dict[EdgeType, nn.Module]:
        """One SageGatConv per relation (reverse relations included)."""
        return {
            r: SageGatConv(cfg.dim, cfg.heads, structure.edge_dims[key(r)], cfg.dropout)
            for r in structure.relations
        }

    def adopt_users(self, users: list[str], trained: list[str]) -> None:
        """The user ID table re-indexed to `users`: a trained user keeps their vector, any
        other starts at zero."""
        old, row = self.user_arch.weight.detach(), {u: i for i, u in enumerate(trained)}
        table = nn.Embedding(max(len(users), 1), old.shape[1]).to(old.device)
        nn.init.zeros_(table.weight)
        pairs = [(i, row[u]) for i, u in enumerate(users) if u in row]
        if pairs:
            at, rows = torch.as_tensor(pairs, device=old.device).T
            table.weight.data[at] = old[rows]
        self.user_arch = table
        self.structure = dataclasses.replace(
            self.structure, num_nodes=self.structure.num_nodes | {USER: len(users)}
        )

    def inputs(
        self, sub: SubGraph, show_x: torch.Tensor, id_keep: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Layer-0 vectors of the sub-graph's nodes, (n_t, dim) per type. show_x (n_show_sub,
        f) content; id_keep (n_show_sub,) 1 where the show's ID vector is used."""
        x = {USER: self.user_arch(sub.n_id[USER])}
        shows = sub.n_id[SHOW]
        x[SHOW] = self.show_content_arch(show_x) + self.show_id_arch(shows) * id_keep[:, None]
        for t in CATALOGUE_TYPES:
            if t in sub.n_id:
                x[t] = self.entity_arch[t](sub.n_id[t])
        return x

    def encode(self, x0: dict[str, torch.Tensor], sub: SubGraph) -> dict[str, torch.Tensor]:
        """The HeteroConv stack: h_{l+1} = LayerNorm(h_l + dropout(gelu(conv_l(h_l)))).

        On a sampled sub-graph layer l of L computes only the rows within L - 1 - l hops of
        the seeds (the last layer: the seeds alone), reading the edges into them: the rows
        further out cannot reach a seed any more. (n_t, dim) -> (n_t', dim) per type."""
        h, depth = x0, len(self.encoder)
        for layer, (conv, norms) in enumerate(zip(self.encoder, self.norms, strict=True)):
            n_out = sub.within(depth - 1 - layer)  # rows this layer computes, per type
            edges, attrs, x = {}, {}, {}
            for rel, index in sub.edge_index.items():
                if not n_out[rel[2]]:  # no row of its destination type needed any more
                    continue
                into = index[1] < n_out[rel[2]]  # (e,) edges into a row still needed
                edges[rel] = index[:, into]
                x[rel] = (h[rel[0]], h[rel[2]][: n_out[rel[2]]])  # (n_src, dim), (n_dst', dim)
                if rel in sub.edge_attr:
                    attrs[rel] = sub.edge_attr[rel][into]
            out = conv(x, edges, edge_attr_dict=attrs) if attrs else conv(x, edges)
            h = {t: v[: n_out[t]] for t, v in h.items()}
            h = {t: norms[t](v + self.dropout(F.gelu(out[t]))) if t in out else v
                 for t, v in h.items()}  # fmt: skip
        return h

    def metapaths(
        self, x0: dict[str, torch.Tensor], sub: SubGraph
    ) -> dict[str, list[torch.Tensor]]:
        """Per target type, each meta-path's vector (n_t, dim) for the seed rows (every row
        when not sampled): the mean over the middle nodes of the mean of their target-type
        neighbours' input vectors, projected."""
        views: dict[str, list[torch.Tensor]] = {USER: [], SHOW: []}
        n_out = sub.within(0)
        for name, arch in self.metapath_arch.items():
            target, first, second = METAPATHS[name]
            middle = _mean_into(x0[first[0]], sub.edge_index[first], len(x0[first[2]]))
            index = sub.edge_index[second]
            index = index[:, index[1] < n_out[target]]  # (2, e') into the seed rows
            views[target].append(arch(_mean_into(middle, index, n_out[target])))
        return views

    def forward(
        self,
        sub: SubGraph,
        show_x: torch.Tensor,
        id_keep: torch.Tensor,
        bags: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """z (n_t, dim) for the seed users and shows (every one when not sampled), and the
        semantic weights. bags: the users' histories (show rows (nnz,), offsets (n_users,)),
        for the history pathway."""
        x0 = self.inputs(sub, show_x, id_keep)
        h = self.encode(x0, sub)
        paths = self.metapaths(x0, sub)
        z, beta = {}, {}
        for t in (USER, SHOW):
            z[t], beta[t] = self.semantic[t](torch.stack([h[t], *paths[t]]))  # (p, n, dim)
        if self.history and bags is not None:
            z[USER] = z[USER] + self.history_vector(*bags)
        return z, beta

    def history_vector(self, shows: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The users' watched shows' ID vectors, summed over length ** alpha: (nnz,) show
        rows, (n_users,) bag offsets -> (n_users, dim)."""
        pooled = F.embedding_bag(shows, self.show_id_arch.weight, offsets, mode="sum")
        ends = torch.cat([offsets[1:], offsets.new_tensor([len(shows)])])
        length = (ends - offsets).clamp(min=1).float()  # (n_users,)
        return pooled / length.pow(self.history_alpha)[:, None]

    def show_bias(self, z_show: torch.Tensor) -> torch.Tensor:
        """(n, dim) -> (n,): the show's prior score."""
        return self.bias_head(z_show).squeeze(-1)

    def served_shows(self, z_show: torch.Tensor) -> torch.Tensor:
        """(n, dim) -> (n, dim + 1): [z / |z|, b], the show side of the inner product."""
        return torch.cat([F.normalize(z_show, dim=-1), self.show_bias(z_show)[:, None]], dim=1)

    def served_users(self, z_user: torch.Tensor) -> torch.Tensor:
        """(n, dim) -> (n, dim + 1): [z / (|z| temperature), 1], so that the inner product
        with a served show is cos(z_u, z_s) / temperature + b_s."""
        z = F.normalize(z_user, dim=-1) / self.temperature  # (n, dim)
        return torch.cat([z, torch.ones_like(z_user[:, :1])], dim=1)

    def view_names(self, node_type: str) -> list[str]:
        """Names of the semantic attention's views of `node_type`, in weight order."""
        return ["encoder"] + [n for n in self.metapath_arch if METAPATHS[n][0] == node_type]


def _mean_into(x_src: torch.Tensor, edge_index: torch.Tensor, n_dst: int) -> torch.Tensor:
    """Mean of source vectors per destination: (n_src, d), (2, e) -> (n_dst, d); 0 if none."""
    from torch_geometric.utils import scatter

    if edge_index.shape[1] == 0:
        return x_src.new_zeros(n_dst, x_src.shape[1])
    return scatter(x_src[edge_index[0]], edge_index[1], 0, dim_size=n_dst, reduce="mean")


# ---- training ------------------------------------------------------------------------------
@dataclass
class _Batch:
    """One step's targets, as global rows."""

    users: torch.Tensor  # (b,) of the watched edges
    shows: torch.Tensor  # (b,)
    negatives: torch.Tensor  # (k,) shared negative shows
    pair_a: torch.Tensor  # (s,) co-watch pairs
    pair_b: torch.Tensor  # (s,)
    masked: torch.Tensor  # (m,) shows whose genre / network edges are hidden
    blocked: dict[EdgeType, torch.Tensor]  # edge ids left out of the encoded graph


class _GraphTask(TrainTask):
    """Batches of watched edges; each step encodes the (sampled or whole) graph without the
    step's target edges and scores the multi-task loss."""

    def __init__(self, model: GraphModel, graph: GraphTensors, sampler: NeighbourSampler) -> None:
        self.model, self.graph, self.sampler, self.cfg = model, graph, sampler, model.config
        self.net = model._net()
        self.device = model.runtime.device
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, fused=True
        )
        self.watched = graph.edge_index.get(WATCHED, torch.zeros(2, 0, dtype=torch.long))  # (2, E)
        self.pairs = graph.cowatch_pairs()  # (M, 2)
        self.histories = UserHistories(self.watched, graph.num_nodes[USER])
        self.batch = self.cfg.batch_size * model.runtime.batch_multiplier

    def start_epoch(self, epoch: int) -> None:
        """The epoch's learning rate (cosine: lr (1 + cos(pi epoch / epochs)) / 2)."""
        scale = 1.0
        if self.cfg.lr_schedule == "cosine":
            scale = 0.5 * (1.0 + math.cos(math.pi * epoch / self.cfg.epochs))
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr * scale

    def plan(self, epoch: int, rngs: Rngs) -> list[torch.Tensor]:
        """One pass over the watched edges in random order, or, when a pass is shorter than
        the epoch's share of `min_steps` (counted in CPU-profile batches: the GPU profile's
        larger ones need fewer), exactly that share, drawn from passes one after another."""
        n_edges = self.watched.shape[1]
        steps = -(-self.cfg.min_steps // self.model.runtime.batch_multiplier)
        need, batches = -(-steps // self.cfg.epochs), []
        while not batches or len(batches) < need:
            order = torch.randperm(n_edges, generator=rngs.torch)
            batches += [order[s : s + self.batch] for s in range(0, max(n_edges, 1), self.batch)]
        one_pass = -(-max(n_edges, 1) // self.batch)
        return batches[: max(need, one_pass)]

    def loss(self, eids: torch.Tensor, rngs: Rngs) -> StepResult:
        batch = self._draw(eids, rngs.torch)
        seeds, users = _seeds(batch)
        if self.cfg.batching == "full":
            sub = self.sampler.full(batch.blocked)
        else:
            sub = self.sampler.sample(seeds, batch.blocked, rngs.torch)
        keep = self._id_keep(sub.n_id[SHOW], rngs.torch)
        show_x = self.graph.show_x[sub.n_id[SHOW]]  # (n_sub_shows, f)
        encoded = sub.n_id[USER][: sub.within(0)[USER]]  # users whose z comes out
        bags = self.histories.bags(encoded, batch.blocked[WATCHED], self.device)
        z, _ = self.net(sub.to(self.device), show_x.to(self.device), keep.to(self.device), bags)
        rows = {t: _rows(seeds[t], self.cfg.batching).to(self.device) for t in (USER, SHOW)}
        zu = z[USER][rows[USER][users.to(self.device)]]  # (b, dim): the batch's users
        zs = z[SHOW][rows[SHOW]]  # (n_seed_shows, dim)
        parts = self._losses(batch, zu, zs, seeds[SHOW])
        total = sum(w * v for w, v in parts.values())
        logged = {k: float(v.detach()) for k, (_, v) in parts.items()}
        return StepResult(total, {"train_loss": float(total.detach())} | logged, len(eids))

    # ---- the step's pieces ---------------------------------------------------------------
    def _draw(self, eids: torch.Tensor, gen: torch.Generator) -> _Batch:
        cfg, n_shows = self.cfg, self.graph.num_nodes[SHOW]
        negatives = torch.randint(n_shows, (cfg.link_negatives,), generator=gen)
        n_pairs = len(self.pairs)
        pick = (
            torch.randint(n_pairs, (min(cfg.similarity_batch, n_pairs),), generator=gen)
            if n_pairs and cfg.similarity_weight > 0
            else torch.zeros(0, dtype=torch.long)
        )
        pick = pick.unique()
        users, shows = self.watched[:, eids].contiguous()
        pair_a, pair_b = self.pairs[pick].T if len(pick) else (pick, pick)
        touched = torch.cat([shows, negatives, pair_a, pair_b]).unique()
        masked = touched[torch.rand(len(touched), generator=gen) < cfg.content_mask]
        blocked = {WATCHED: eids, REV_WATCHED: eids}
        if len(pick):
            blocked[COWATCH] = torch.cat([pick, pick + n_pairs])
        for rel in (HAS_GENRE, AIRS_ON):
            back = (rel[2], f"rev_{rel[1]}", rel[0])
            hidden = self.sampler.in_edges(back, masked, -1, None)  # same ids both ways
            if len(hidden):
                blocked[rel] = blocked[back] = hidden
        return _Batch(users, shows, negatives, pair_a, pair_b, masked, blocked)

    def _id_keep(self, shows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """(n,) float: 1 where a show's ID vector is used (watched in training, and not
        hidden by id_dropout this step)."""
        drop = torch.rand(len(shows), generator=gen) < self.cfg.id_dropout
        return (self.graph.known_shows[shows] & ~drop).float()

    def _losses(
        self, batch: _Batch, zu: torch.Tensor, zs: torch.Tensor, seed_shows: torch.Tensor
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """name -> (weight, value) of each task with targets this step. zu (b, dim) the
        batch's users; zs (n_seed_shows, dim) the seed shows, sorted by global row."""
        cfg = self.cfg
        at = lambda s: torch.searchsorted(seed_shows, s.contiguous()).to(zs.device)  # noqa: E731
        pos, neg = zs[at(batch.shows)], zs[at(batch.negatives)]  # (b, dim), (k, dim)
        parts = {"link_loss": (1.0, self._link(zu, pos, neg))}
        masked = zs[at(batch.masked)]  # (m, dim): shows whose genre / network edges are hidden
        genre = self._genre(masked, batch.masked)
        if genre is not None and cfg.genre_weight > 0:
            parts["genre_loss"] = (cfg.genre_weight, genre)
        network = self._network(masked, batch.masked)
        if network is not None and cfg.network_weight > 0:
            parts["network_loss"] = (cfg.network_weight, network)
        if len(batch.pair_a) >= 2 and cfg.similarity_weight > 0:
            a = F.normalize(zs[at(batch.pair_a)], dim=-1)  # (s, dim)
            b = F.normalize(zs[at(batch.pair_b)], dim=-1)  # (s, dim)
            target = torch.arange(len(a), device=a.device)
            similarity = info_nce(a @ b.T, target, cfg.similarity_temperature)
            parts["similarity_loss"] = (cfg.similarity_weight, similarity)
        return parts

    def _genre(self, z: torch.Tensor, shows: torch.Tensor) -> torch.Tensor | None:
        """Multi-label genre prediction of hidden-genre shows that have genres."""
        target = self.graph.genres[shows].to(z.device)  # (m, n_genres)
        has = target.sum(1) > 0
        if self.net.genre_head is None or not bool(has.any()):
            return None
        logits = self.net.genre_head(z[has]).float()  # (m', n_genres)
        return F.binary_cross_entropy_with_logits(logits, target[has])

    def _network(self, z: torch.Tensor, shows: torch.Tensor) -> torch.Tensor | None:
        """Network prediction of hidden-network shows that air on one."""
        target = self.graph.network[shows].to(z.device)  # (m,)
        has = target >= 0
        if self.net.network_head is None or not bool(has.any()):
            return None
        return F.cross_entropy(self.net.network_head(z[has]).float(), target[has])

    def _link(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Link prediction on the watched edges: score = <z_u, z_s> + b_s."""
        net = self.net
        served_pos, served_neg = net.served_shows(pos), net.served_shows(neg)  # (b|k, dim + 1)
        queries = net.served_users(users)  # (b, dim + 1)
        if self.cfg.link_loss == "bpr":
            return bpr((queries * served_pos).sum(-1), queries @ served_neg.T)
        return sampled_softmax(queries, served_pos, served_neg, 1.0)


def _seeds(batch: _Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Unique seed rows per type, sorted (the batch's users; every show a loss reads), and
    the batch's users as positions among the user seeds."""
    users, user_pos = torch.unique(batch.users, return_inverse=True)
    shows = torch.cat([batch.shows, batch.negatives, batch.pair_a, batch.pair_b]).unique()
    return {USER: users, SHOW: shows}, user_pos


def _rows(seeds: torch.Tensor, batching: str) -> torch.Tensor:
    """Sub-graph rows of the seeds: the first rows when sampled, the global rows when full."""
    return seeds if batching == "full" else torch.arange(len(seeds))


# ---- the model -----------------------------------------------------------------------------
class GraphModel(Recommender, name="graph", config=GraphConfig):
    needs_graph = prior_column = True
    net: GraphNet | None = None
    user_ids: list[str]
    _show_vectors: np.ndarray | None = None  # (n_shows, dim + 1) served [z, b]
    _user_vectors: np.ndarray | None = None  # (n_users, dim) z of the training users

    def fit(self, data: TrainingData) -> dict[str, Any]:
        cfg, started = self.config, time.perf_counter()
        torch.manual_seed(cfg.seed)
        graph = GraphTensors.of(_graph_of(data), cfg.cowatch_top_k)
        self.show_ids = list(data.graph[SHOW].ids)
        self.user_ids = list(data.graph[USER].ids)
        self.histories = _histories(data, set(self.show_ids))
        structure = graph.structure(cfg.metapaths)
        self.net = GraphNet(structure, cfg).to(self.runtime.device)
        sampler = NeighbourSampler(graph, cfg.fanouts)
        history = self.trainer(data).fit(_GraphTask(self, graph, sampler))
        beta = self._embed_all(graph, sampler)
        seconds = round(time.perf_counter() - started, 2)
        metrics = history.metrics() | self._describe(graph, structure, beta)
        metrics |= {"train_seconds": seconds, "profile": self.runtime.profile}
        self.make_manifest(data, cfg.dim + 1, metrics)
        return metrics

    @classmethod
    def at_cut(cls, data: TrainingData, before: pd.DataFrame, cut: datetime) -> TrainingData:
        """The base's copy, with the graph of `before`'s pairs as of the cut: watched and
        co-watch edges from their events alone (a co-watch pair formed by a window event
        would tell the member what the window holds)."""
        from tvrec.pipelines.graph_inputs import graph_before

        pairs = pl.from_pandas(before[["user_id", "show_id"]].astype(str))
        graph = graph_before(_graph_of(data), pairs, cut)
        return dataclasses.replace(super().at_cut(data, before, cut), graph=graph)

    def advance(self, data: TrainingData) -> bool:
        """To `data`'s as-of: its graph (every user, watched and co-watch edge up to it)
        encoded by the weights as trained. A user the training graph did not hold gets a
        zero ID vector: the shows they watched speak for them."""
        cfg, net = self.config, self._net()
        if data.graph is None or list(data.graph[SHOW].ids) != self.show_ids:
            return False
        graph = GraphTensors.of(data.graph, cfg.cowatch_top_k).only(net.structure.relations)
        if not net.structure.fits(graph.structure(cfg.metapaths)):
            return False  # another catalogue's nodes: the trained vectors would not line up
        users = list(data.graph[USER].ids)
        unseen = len(set(users) - set(self.user_ids))
        net.adopt_users(users, self.user_ids)
        self.user_ids = users
        self.histories = _histories(data, set(self.show_ids))
        self._embed_all(graph, NeighbourSampler(graph, cfg.fanouts))
        self.restamp(data)
        self.fitted(self.manifest).metrics.update(n_users=len(users), advance_new_users=unseen)
        return True

    @torch.no_grad()
    def _embed_all(self, graph: GraphTensors, sampler: NeighbourSampler) -> dict[str, torch.Tensor]:
        """Encode the whole graph once (eval mode, every edge, whole histories): the served
        vectors."""
        net, device = self._net(), self.runtime.device
        net.eval()
        users = torch.arange(graph.num_nodes[USER])
        watched = graph.edge_index.get(WATCHED, torch.zeros(2, 0, dtype=torch.long))
        bags = UserHistories(watched, len(users)).bags(users, None, device)
        x, known = graph.show_x.to(device), graph.known_shows.float().to(device)
        z, beta = net(sampler.full({}).to(device), x, known, bags)
        self._show_vectors = net.served_shows(z[SHOW]).float().cpu().numpy()
        self._user_vectors = net.served_users(z[USER])[:, :-1].float().cpu().numpy()
        net.train()
        return {t: b.float().cpu() for t, b in beta.items()}

    def _describe(
        self, graph: GraphTensors, structure: GraphStructure, beta: dict[str, torch.Tensor]
    ) -> dict[str, Any]:
        """Scalars and small dicts for the manifest and the run record (lists there are
        read as per-epoch curves, so none here)."""
        net = self._net()
        missing = [r for r in _FORWARD if r not in graph.edge_index]
        present = [r for r in _FORWARD if r in graph.edge_index]
        gates = {key(r): round(float(torch.sigmoid(c.gate.detach())), 4) for r, c in _convs(net)}
        return {
            "n_users": len(self.user_ids),
            "n_shows": len(self.show_ids),
            "n_known_shows": int(graph.known_shows.sum()),
            "edges": {key(r): int(e.shape[1]) for r, e in graph.edge_index.items()},
            "missing_relations": ", ".join(r[1] for r in missing),
            "graph_notes": "; ".join(graph.notes + _relation_notes(missing, present)),
            "metapath_attention": {
                t: {n: round(float(b), 4) for n, b in zip(net.view_names(t), beta[t], strict=True)}
                for t in (USER, SHOW)
            },
            "sage_gate_layer1": gates,
            "batching": self.config.batching,
        }

    # ---- embeddings -------------------------------------------------------------------------
    def show_embeddings(self) -> tuple[list[str], np.ndarray]:
        return list(self.show_ids), self.fitted(self._show_vectors)

    def user_embeddings(self, user_ids: list[str]) -> np.ndarray:
        """[z_u, 1] for users of the training graph; [0, 1] for the others."""
        vectors = self.fitted(self._user_vectors)
        row = {u: i for i, u in enumerate(self.user_ids)}
        out = np.zeros((len(user_ids), vectors.shape[1] + 1), dtype=np.float32)
        out[:, -1] = 1.0
        known = [(i, row[u]) for i, u in enumerate(user_ids) if u in row]
        if known:
            at, rows = map(list, zip(*known, strict=True))
            out[at, :-1] = vectors[rows]
        return out

    def _net(self) -> GraphNet:
        return self.fitted(self.net)

    # ---- persistence ------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        net = self._net()
        return {
            "net": {k: v.cpu() for k, v in net.state_dict().items()},
            "structure": net.structure.to_state(),
            "shows": self.show_ids,
            "users": self.user_ids,
            "show_vectors": torch.as_tensor(self.fitted(self._show_vectors)),
            "user_vectors": torch.as_tensor(self.fitted(self._user_vectors)),
            "histories": self.histories,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.show_ids, self.user_ids = state["shows"], state["users"]
        self.histories = state["histories"]
        self.net = GraphNet(GraphStructure.from_state(state["structure"]), self.config)
        self.net.load_state_dict(state["net"])
        self._show_vectors = state["show_vectors"].numpy()
        self._user_vectors = state["user_vectors"].numpy()


# ---- helpers --------------------------------------------------------------------------------
_FORWARD: list[EdgeType] = [
    WATCHED,
    ("show", "credited", "person"),
    HAS_GENRE,
    AIRS_ON,
    ("show", "streams_on", "platform"),
    COWATCH,
]
_WHAT = {
    "watched": "watches",
    "credited": "credits",
    "has_genre": "genres",
    "airs_on": "networks",
    "streams_on": "platforms",
    "cowatch": "co-watch pairs",
}


def _relation_notes(missing: list[EdgeType], present: list[EdgeType]) -> list[str]:
    """One sentence on the relations the graph lacks, for the run record."""
    if not missing:
        return []
    lacking = ", ".join(_WHAT[r[1]] for r in missing)
    kept = ", ".join(r[1] for r in present) or "none"
    return [f"no {lacking}: trained on the remaining relations ({kept})"]


def _convs(net: GraphNet) -> Iterator[tuple[EdgeType, SageGatConv]]:
    """The first encoder layer's convolution of each relation."""
    for name, conv in net.encoder[0].convs.items():  # PyG keys them by edge type
        yield (tuple(name.split("__")) if isinstance(name, str) else tuple(name)), conv


def _graph_of(data: TrainingData) -> Any:
    """The TV graph the model reads (a HeteroData), or why there is none."""
    if data.graph is None:
        raise ValueError("the graph model reads the TV graph: build its inputs with graph=True")
    return data.graph


def _histories(data: TrainingData, shows: set[str]) -> dict[str, list[str]]:
    """user -> shows watched before the as-of (the training set's positives)."""
    pos = data.positives()
    pos = pos[pos["show_id"].isin(shows)]
    return {u: g.tolist() for u, g in pos.groupby("user_id")["show_id"]}
