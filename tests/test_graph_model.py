"""GNN-TV (models/graph.py) and its graph (pipelines/graph_inputs.py): the graph is built
point in time, the sampler keeps a step's targets out of what it encodes, and on the small
synthetic world (tests/conftest.py) the trained show vectors find what the world planted:
shows sharing cast sit nearer than random pairs, shows nobody watched land among their taste
cluster, and near-duplicate copies are each other's neighbours. Bad input (no credits, no
networks, a one-event user, a show without genres) trains and serves.

Fits are short (one torch thread, small dims, few epochs); the thresholds sit just under
the measured figures, which the comments give.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from tvrec.models.graph import (
    COWATCH,
    SHOW,
    USER,
    WATCHED,
    GraphConfig,
    GraphModel,
    GraphNet,
    GraphTensors,
    NeighbourSampler,
    SubGraph,
    UserHistories,
)
from tvrec.models.runtime import Runtime
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.graph_inputs import GRAPH_DIR, build_graph, reverse
from tvrec.pipelines.ingest import read_lake
from tvrec.pipelines.model_inputs import TrainingData
from tvrec.pipelines.synthetic import PlantedTruth
from tvrec.pipelines.workdir import Workdir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUICK = {"dim": 32, "heads": 2, "epochs": 12, "batch_size": 256, "lr": 1e-2, "min_steps": 0}


@pytest.fixture(scope="module")
def data(inputs_of: Callable[[str], TrainingData]) -> TrainingData:
    return inputs_of("graph")


def _without_watches(data: TrainingData, shows: set[str]) -> TrainingData:
    """`data` as if nobody had watched `shows`: their watched edges (and co-watch pairs) and
    their positives removed."""
    graph = data.graph.clone()
    rows = torch.tensor([i for i, s in enumerate(graph[SHOW].ids) if s in shows])
    watched = graph[WATCHED].edge_index
    keep = ~torch.isin(watched[1], rows)
    for edge_type in (WATCHED, reverse(WATCHED)):
        store = graph[edge_type]
        store.edge_index, store.edge_attr = store.edge_index[:, keep], store.edge_attr[keep]
        store.edge_weight = store.edge_weight[keep]
    pairs = graph[COWATCH].edge_index
    half = pairs.shape[1] // 2
    pair_keep = ~(torch.isin(pairs[0, :half], rows) | torch.isin(pairs[1, :half], rows))
    both = torch.cat([pair_keep, pair_keep])
    graph[COWATCH].edge_index = pairs[:, both]
    graph[COWATCH].edge_attr = graph[COWATCH].edge_attr[both]
    frame = data.frame[~data.frame["show_id"].isin(shows)].reset_index(drop=True)
    return dataclasses.replace(data, graph=graph, frame=frame)


@pytest.fixture(scope="module")
def cold_shows(truth: PlantedTruth) -> set[str]:
    """The planted cold-start shows (premiered late) and upcoming shows (no events)."""
    return set(truth.cold_start_shows) | set(truth.upcoming_shows)


@pytest.fixture(scope="module")
def trained(data: TrainingData, cold_shows: set[str]) -> GraphModel:
    """Trained on the small world with the cold shows' watches removed."""
    model = GraphModel.create(Runtime.cpu(), QUICK)
    model.fit(_without_watches(data, cold_shows))
    return model  # type: ignore[return-value]


def _unit_vectors(model: GraphModel) -> tuple[list[str], np.ndarray]:
    ids = model.show_embeddings()[0]
    vectors = model.similarity_vectors()
    return ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties half."""
    diff = positive[:, None] - negative[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


# ---- the graph ---------------------------------------------------------------------------------
def test_graph_is_point_in_time(built_workdir: Workdir, data: TrainingData) -> None:
    lake = read_lake(built_workdir)
    shows = data.show_ids
    as_of = data.as_of - timedelta(days=120)
    graph = build_graph(lake, built_workdir.features / GRAPH_DIR, shows, as_of)
    before = lake.events.filter(pl.col("event_timestamp") < as_of)
    pairs = before.select("user_id", "show_id").unique()
    assert graph[WATCHED].edge_index.shape[1] == pairs.height  # one edge per pair, none later
    assert graph[USER].ids == sorted(before["user_id"].unique().to_list())
    assert graph[SHOW].ids == shows and graph[SHOW].x.shape[0] == len(shows)
    cowatch = pl.read_parquet(built_workdir.features / GRAPH_DIR / "cowatch.parquet")
    formed = cowatch.filter(pl.col("formed_at") < as_of).height
    assert graph[COWATCH].edge_index.shape[1] == 2 * formed < 2 * cowatch.height
    full = data.graph
    for edge_type in full.edge_types:  # reverse relations: the forward edges, flipped
        if edge_type[1].startswith("rev_"):
            forward = (edge_type[2], edge_type[1].removeprefix("rev_"), edge_type[0])
            assert torch.equal(full[edge_type].edge_index, full[forward].edge_index.flip(0))
    attrs = full[WATCHED].edge_attr  # rating, recency, repeats, all in (0, 1]
    assert attrs.shape[1] == 3 and bool((attrs > 0).all()) and bool((attrs <= 1).all())
    assert full.notes == []


def test_graph_without_credits_or_networks(built_workdir: Workdir, data: TrainingData,
                                           tmp_path: Path) -> None:  # fmt: skip
    lake = read_lake(built_workdir)
    bare = dataclasses.replace(
        lake,
        credits=lake.credits.clear(),
        shows=lake.shows.with_columns(pl.lit(None, dtype=pl.String).alias("network")),
    )
    for name in ("show_genre", "show_platform", "cowatch"):  # only these tables exist
        src = built_workdir.features / GRAPH_DIR / f"{name}.parquet"
        (tmp_path / f"{name}.parquet").write_bytes(src.read_bytes())
    graph = build_graph(bare, tmp_path, data.show_ids, data.as_of)
    assert graph["person"].num_nodes == 0 and graph["network"].num_nodes == 0
    assert graph["show", "credited", "person"].edge_index.shape == (2, 0)
    assert graph[WATCHED].edge_index.shape[1] == data.graph[WATCHED].edge_index.shape[1]


# ---- the sampler -------------------------------------------------------------------------------
def test_sampler_keeps_blocked_edges_out(data: TrainingData) -> None:
    tensors = GraphTensors.of(data.graph, cowatch_top_k=20)
    sampler = NeighbourSampler(tensors, [3, 2])
    watched = tensors.edge_index[WATCHED]
    targets = torch.arange(0, watched.shape[1], 7)[:50]
    users = watched[0, targets].unique()
    seeds = {USER: users, SHOW: watched[1, targets].unique()}
    blocked = {WATCHED: targets, reverse(WATCHED): targets}
    sub = sampler.sample(seeds, blocked, torch.Generator().manual_seed(0))
    for t, s in seeds.items():  # seeds first, in order
        assert torch.equal(sub.n_id[t][: len(s)], s)
    local = sub.edge_index[WATCHED]
    edges = set(zip(sub.n_id[USER][local[0]].tolist(), sub.n_id[SHOW][local[1]].tolist(),
                    strict=True))  # fmt: skip
    assert not edges & set(zip(*watched[:, targets].tolist(), strict=True))
    # a seed user gets at most `fanout` (3) of its shows at the first hop
    into_seeds = local[1][local[1] < len(seeds[SHOW])]
    assert int(torch.bincount(into_seeds).max()) <= 3 * 2 + 3  # first hop + second hop draws
    full = sampler.full(blocked)
    assert full.edge_index[WATCHED].shape[1] == watched.shape[1] - len(targets)


def test_layers_compute_only_what_reaches_the_seeds(data: TrainingData) -> None:
    """Layer l of L encodes the rows within L - 1 - l hops: the seeds' encoder output is
    the one of the untrimmed sub-graph (eval mode: no dropout)."""
    config = GraphModel.parse_config(QUICK)
    tensors = GraphTensors.of(data.graph, cowatch_top_k=20)
    net = GraphNet(tensors.structure(config.metapaths), config).eval()
    watched = tensors.edge_index[WATCHED]
    seeds = {USER: watched[0, :40].unique(), SHOW: watched[1, :40].unique()}
    sub = NeighbourSampler(tensors, [3, 2]).sample(seeds, {}, torch.Generator().manual_seed(0))
    whole = SubGraph(sub.n_id, sub.edge_index, sub.edge_attr)  # no hop counts: every row
    x0 = net.inputs(sub, tensors.show_x[sub.n_id[SHOW]], torch.ones(len(sub.n_id[SHOW])))
    with torch.no_grad():
        trimmed, full = net.encode(x0, sub), net.encode(x0, whole)
    for t, s in seeds.items():
        assert trimmed[t].shape[0] == len(s)
        assert torch.allclose(trimmed[t], full[t][: len(s)], atol=1e-5)


def test_history_bags_leave_the_targets_out(data: TrainingData) -> None:
    tensors = GraphTensors.of(data.graph, cowatch_top_k=20)
    watched = tensors.edge_index[WATCHED]
    histories = UserHistories(watched, tensors.num_nodes[USER])
    users = watched[0].unique()[:5]
    blocked = torch.nonzero(watched[0] == users[0]).squeeze(1)[:2]  # two of the first's edges
    shows, offsets = histories.bags(users, blocked, torch.device("cpu"))
    ends = [*offsets[1:].tolist(), len(shows)]
    for i, user in enumerate(users.tolist()):
        mine = watched[0] == user
        mine[blocked] = False
        assert sorted(shows[offsets[i] : ends[i]].tolist()) == sorted(watched[1, mine].tolist())


@pytest.mark.parametrize(("min_steps", "expected"), [(0, "one pass"), (10_000, "share")])
def test_an_epoch_is_a_pass_or_its_share_of_min_steps(
    data: TrainingData, min_steps: int, expected: str
) -> None:
    """A pass covers every watched edge once; a graph whose pass is shorter than the epoch's
    share of min_steps gets exactly that share (not whole passes rounded up)."""
    from tvrec.models.graph import _GraphTask
    from tvrec.models.trainer import Rngs

    tensors = GraphTensors.of(data.graph, cowatch_top_k=20)
    model = GraphModel.create(Runtime.cpu(), QUICK | {"epochs": 3, "min_steps": min_steps})
    model.net = GraphNet(tensors.structure(model.config.metapaths), model.config)
    task = _GraphTask(model, tensors, NeighbourSampler(tensors, model.config.fanouts))
    batches = task.plan(0, Rngs.seeded(0))
    n_edges, size = tensors.edge_index[WATCHED].shape[1], model.config.batch_size
    if expected == "one pass":
        assert sorted(torch.cat(batches).tolist()) == list(range(n_edges))
    else:
        assert len(batches) == -(-min_steps // 3) > -(-n_edges // size)
        assert all(len(b) <= size for b in batches)


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="heads"):
        GraphModel.parse_config({"dim": 30, "heads": 4})
    with pytest.raises(ConfigError, match="fanouts"):
        GraphModel.parse_config({"layers": 3, "fanouts": [10, 5]})
    with pytest.raises(ConfigError, match="meta-paths"):
        GraphModel.parse_config({"metapaths": ["show-cat-show"]})
    assert GraphConfig().batching == "neighbor"


# ---- known answers on the synthetic world ------------------------------------------------------
def test_co_cast_shows_are_nearer_than_random_pairs(
    trained: GraphModel, built_workdir: Workdir
) -> None:
    ids, unit = _unit_vectors(trained)
    row = {s: i for i, s in enumerate(ids)}
    credits = read_lake(built_workdir).credits.filter(pl.col("role") == "actor")
    pairs = (
        credits.join(credits, on="person_id", suffix="_b")
        .filter(pl.col("show_id") < pl.col("show_id_b"))
        .select("show_id", "show_id_b")
        .unique()
    )
    a = [row[s] for s in pairs["show_id"]]
    b = [row[s] for s in pairs["show_id_b"]]
    co_cast = np.einsum("nd,nd->n", unit[a], unit[b])
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(ids), (2, 5000))
    random = np.einsum("nd,nd->n", unit[i[i != j]], unit[j[i != j]])
    auc = _auc(co_cast, random)
    assert auc > 0.85, auc  # measured 0.889


def test_cold_shows_land_in_their_cluster(
    trained: GraphModel, truth: PlantedTruth, cold_shows: set[str]
) -> None:
    """A show nobody watched is encoded from its cast, genres, network and platforms: its
    nearest shows are its taste cluster's (AUC of same-cluster vs other-cluster similarity,
    over the watched shows)."""
    ids, unit = _unit_vectors(trained)
    cluster = np.array([truth.show_cluster[s] for s in ids])
    warm = np.array([s not in cold_shows for s in ids])
    aucs = []
    for s in sorted(cold_shows):
        i = ids.index(s)
        sim = unit[warm] @ unit[i]
        same = cluster[warm] == cluster[i]
        aucs.append(_auc(sim[same], sim[~same]))
    assert np.mean(aucs) > 0.92, aucs  # measured 0.945
    assert min(aucs) > 0.75, aucs  # measured 0.812


def test_near_duplicate_pairs_are_found(trained: GraphModel, truth: PlantedTruth) -> None:
    """A copy (same genres, network, platforms, all but one actor; its own audience) is
    among its original's nearest shows of the 200."""
    ids, unit = _unit_vectors(trained)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    ranks = []
    for original, copy in truth.near_duplicate_pairs:
        i, j = ids.index(original), ids.index(copy)
        ranks.append(int((sim[i] > sim[i, j]).sum()))  # shows nearer to the original
    assert np.mean(np.array(ranks) < 10) >= 0.6, ranks  # measured 4 of 6 in the top 10
    assert np.median(ranks) <= 8, ranks  # measured 5.5 (ranks 3, 22, 0, 8, 3, 12); random ~100


# ---- bad input, profiles, batching -------------------------------------------------------------
def _bare_graph(data: TrainingData) -> TrainingData:
    """No credits and no networks at all, one user left with a single watch, one show
    without genres."""
    graph = data.graph.clone()
    for node_type, rel in (("person", "credited"), ("network", "airs_on")):
        graph[node_type].num_nodes, graph[node_type].ids = 0, []
        for edge_type in (("show", rel, node_type), reverse(("show", rel, node_type))):
            graph[edge_type].edge_index = torch.zeros(2, 0, dtype=torch.long)
            if "edge_attr" in graph[edge_type]:
                del graph[edge_type].edge_attr
    watched = graph[WATCHED].edge_index
    user = int(watched[0, 0])
    keep = (watched[0] != user) | (torch.arange(watched.shape[1]) == 0)
    for edge_type in (WATCHED, reverse(WATCHED)):
        store = graph[edge_type]
        store.edge_index, store.edge_attr = store.edge_index[:, keep], store.edge_attr[keep]
    genre = ("show", "has_genre", "genre")
    no_genre = graph[genre].edge_index[0] != 0  # show row 0 loses its genres
    graph[genre].edge_index = graph[genre].edge_index[:, no_genre]
    graph[reverse(genre)].edge_index = graph[reverse(genre)].edge_index[:, no_genre]
    return dataclasses.replace(data, graph=graph)


def test_trains_and_serves_without_credits_or_networks(data: TrainingData) -> None:
    model = GraphModel.create(Runtime.cpu(), QUICK | {"epochs": 2})
    metrics = model.fit(_bare_graph(data))
    assert np.isfinite(metrics["train_loss"]).all()
    assert "network_loss" not in metrics  # no network to predict
    assert "credited" in metrics["missing_relations"] and "airs_on" in metrics["missing_relations"]
    assert "no credits" in metrics["graph_notes"], metrics["graph_notes"]
    assert "show-person-show" not in metrics["metapath_attention"][SHOW]
    ids, shows = model.show_embeddings()
    users = model.user_embeddings([*model.known_users()[:5], "nobody"])
    assert np.isfinite(shows).all() and np.isfinite(users).all()
    assert len(ids) == len(data.show_ids)


def test_gpu_profile_runs_with_autocast_on_cpu(data: TrainingData) -> None:
    runtime = Runtime("gpu", torch.device("cpu"), batch_multiplier=4, mixed_precision=True)
    model = GraphModel.create(runtime, QUICK | {"epochs": 1})
    metrics = model.fit(data)
    assert metrics["profile"] == "gpu" and np.isfinite(metrics["train_loss"]).all()
    assert np.isfinite(model.show_embeddings()[1]).all()


def test_full_batching_trains(data: TrainingData) -> None:
    model = GraphModel.create(Runtime.cpu(), QUICK | {"epochs": 2, "batching": "full"})
    metrics = model.fit(data)
    assert metrics["batching"] == "full" and np.isfinite(metrics["train_loss"]).all()


# ---- real data (slow) --------------------------------------------------------------------------
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.mark.slow
def test_movielens_quality(tmp_path: Path) -> None:
    """`tvrec evaluate`'s pipeline on MovieLens-100k (temporal split): GNN-TV's published
    top-10 against the peers, and its cold-slice ranking against a random order."""
    from tvrec.jobs.evaluation.pipeline import evaluate
    from tvrec.pipelines.config import Settings
    from tvrec.pipelines.ingest import load_dataset

    source = SHARED / "movielens-100k"
    if not source.exists():
        pytest.skip(f"shared dataset movielens-100k not at {SHARED}")
    settings = Settings.load(tmp_path / "work")
    dataset = load_dataset(source, "movielens-100k", settings.ingest)
    report = evaluate(dataset, settings, tmp_path / "report", models=("graph",))
    results = {r.name: r for r in report.results}
    graph, most_popular = results["tvrec (graph)"], results["MostPop"]
    assert graph.metrics.ndcg > most_popular.metrics.ndcg  # measured 0.213 vs 0.150
    # measured 0.213 (CI 0.157-0.277) with the defaults (7 epochs, cosine rate, 1,204 steps,
    # deterministic kernels), 2026-12-01; 0.198 with 6; ItemKNN 0.199, EASE 0.216; other
    # configurations 0.192-0.214: the spread of 90 test users, so the bar sits under it
    assert graph.metrics.ndcg > 0.195, graph.metrics
    # measured 0.187 (31 users, CI 0.099-0.289) with these defaults, 0.138-0.169 before;
    # the bar: above a random order of the same cold candidates (0.131)
    assert graph.cold is not None and graph.cold.ndcg > 0.131, graph.cold
