"""CL-TV, the contrastive show encoder, on the planted synthetic world: near-duplicates are
nearest neighbours, planted clusters are tight, cold-start shows land in their cluster and reach
its users; augmentations, the loss, hard negatives and the GPU profile's path behave. (ONNX
export, checkpoint resume and persistence: test_model_contract.py, for every model.)

The model is trained once (module fixture) on the training set of `contrastive_v1` with the
cold-start shows' rows removed, so they have no positives: what a brand-new show looks like.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tvrec.models.base import TrainingData
from tvrec.models.contrastive import (
    ContrastiveConfig,
    ContrastiveModel,
    audience_matrix,
    augment,
    cowatch_graph,
    hard_negative_table,
)
from tvrec.models.losses import multi_positive_info_nce
from tvrec.models.runtime import Runtime
from tvrec.pipelines.synthetic import PlantedTruth


@pytest.fixture(scope="module")
def data(inputs_of: Callable[[str], TrainingData], truth: PlantedTruth) -> TrainingData:
    """The training set without any row of the cold-start shows."""
    full = inputs_of(ContrastiveModel.name)
    frame = full.frame[~full.frame["show_id"].isin(truth.cold_start_shows)]
    return dataclasses.replace(full, frame=frame.reset_index(drop=True))


@pytest.fixture(scope="module")
def model(data: TrainingData, tmp_path_factory: pytest.TempPathFactory) -> ContrastiveModel:
    checkpoints = tmp_path_factory.mktemp("contrastive-checkpoints")
    model = ContrastiveModel(ContrastiveConfig(), Runtime.cpu())
    model.fit(dataclasses.replace(data, checkpoint_dir=checkpoints))
    return model


def _embeddings(model: ContrastiveModel) -> tuple[dict[str, int], np.ndarray]:
    """Show rows and the vectors shows are compared by (the served ones minus the prior)."""
    ids, _ = model.show_embeddings()
    return {s: i for i, s in enumerate(ids)}, model.similarity_vectors()


def _neighbours(emb: np.ndarray, k: int) -> np.ndarray:
    """(n, k) rows of each show's k nearest other shows by cosine (vectors are unit)."""
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :k]


# ---- known answers on the planted world ----------------------------------------------------
def test_cold_start_shows_have_no_positives(data: TrainingData, truth: PlantedTruth) -> None:
    assert truth.cold_start_shows
    assert not data.positives()["show_id"].isin(truth.cold_start_shows).any()
    assert set(truth.cold_start_shows) <= set(data.show_ids)  # ... but they are in the catalogue


def test_near_duplicates_are_nearest_neighbours(
    model: ContrastiveModel, truth: PlantedTruth
) -> None:
    pos, emb = _embeddings(model)
    top3 = _neighbours(emb, 3)
    found = [pos[copy] in top3[pos[orig]] for orig, copy in truth.near_duplicate_pairs]
    assert np.mean(found) >= 0.8, found  # measured: 6/6


def test_planted_clusters_are_tight(model: ContrastiveModel, truth: PlantedTruth) -> None:
    pos, emb = _embeddings(model)
    cluster = np.array([truth.show_cluster[s] for s in sorted(pos, key=pos.get)])
    sim = emb @ emb.T
    same = cluster[:, None] == cluster[None, :]
    intra = sim[same & ~np.eye(len(sim), dtype=bool)].mean()
    inter = sim[~same].mean()
    assert intra - inter > 0.3, (intra, inter)  # measured: 0.57 vs 0.02


def test_cold_start_shows_land_in_their_cluster(
    model: ContrastiveModel, truth: PlantedTruth
) -> None:
    pos, emb = _embeddings(model)
    cluster = np.array([truth.show_cluster[s] for s in sorted(pos, key=pos.get)])
    top10 = _neighbours(emb, 10)
    share = [
        np.mean(cluster[top10[pos[s]]] == truth.show_cluster[s]) for s in truth.cold_start_shows
    ]
    chance = 1 / len(set(truth.show_cluster.values()))
    assert np.mean(share) >= 0.6 > 4 * chance, share  # measured: 0.98


def test_cold_start_shows_reach_their_cluster_users(
    model: ContrastiveModel, truth: PlantedTruth
) -> None:
    """Through user_embeddings (the serving path): users of a cold show's cluster score it
    above users of other clusters (AUC), and rank it in the top of the catalogue."""
    ids, emb = model.show_embeddings()  # served: the show prior included
    pos = {s: i for i, s in enumerate(ids)}
    users = model.known_users()
    scores = model.user_embeddings(users) @ emb.T  # (n_users, n_shows)
    user_cluster = np.array([truth.user_cluster[u] for u in users])
    aucs, percentiles = [], []
    for show in truth.cold_start_shows:
        mine = user_cluster == truth.show_cluster[show]
        col = scores[:, pos[show]]
        aucs.append(np.mean(col[mine][:, None] > col[~mine][None, :]))
        percentiles.append(np.mean(scores[mine] < col[mine, None]))
    assert np.mean(aucs) > 0.85, aucs  # chance 0.5; measured 0.98
    assert np.mean(percentiles) > 0.7, percentiles  # chance 0.5; measured 0.87


def test_training_metrics_in_manifest(model: ContrastiveModel) -> None:
    assert model.manifest is not None
    metrics, epochs = model.manifest.metrics, model.config.epochs
    assert len(metrics["train_loss"]) == len(metrics["val_recall_at_10"]) == epochs
    assert metrics["train_loss"][-1] < 0.8 * metrics["train_loss"][0]
    assert metrics["n_val_pairs"] > 0 and metrics["n_hard_negative_anchors"] > 0
    # held-out co-watch partners are found far above chance (10 / (n - 1))
    assert metrics["val_recall_at_10"][-1] > 4 * metrics["val_chance_at_10"]
    assert metrics["resumed_from_epoch"] == 0 and model.manifest.dim == model.config.dim + 1


def test_advance_pools_the_later_histories_with_the_encoder_as_trained(
    model: ContrastiveModel, inputs_of: Callable[[str], TrainingData]
) -> None:
    """`advance` (how the ensemble serves a member trained before its window): the users'
    histories come from the later events (here the cold-start shows' watches, absent from
    training), the encoder and the show vectors stay; a user who watched a cold show is
    pooled over it, the others are served as before."""
    import copy

    later = copy.deepcopy(model)
    assert later.advance(inputs_of(ContrastiveModel.name))
    np.testing.assert_allclose(later.show_embeddings()[1], model.show_embeddings()[1])
    users = model.known_users()
    moved = [u for u in users if later.histories[u] != model.histories[u]]
    same = [u for u in users if later.histories[u] == model.histories[u]][:50]
    assert moved and same
    np.testing.assert_allclose(later.user_embeddings(same), model.user_embeddings(same), atol=1e-6)
    assert not np.allclose(later.user_embeddings(moved), model.user_embeddings(moved))
    assert (
        later.fitted(later.manifest).metrics["trained_as_of"] == model.fitted(model.manifest).as_of
    )


# ---- parts -----------------------------------------------------------------------------------
def test_augmentations_change_views_but_never_padding(model: ContrastiveModel) -> None:
    shows = model.shows
    assert shows is not None
    gen = torch.Generator().manual_seed(1)
    view = augment(shows, model.config, model.vocab["year"], gen)
    for name in ("genres", "platforms", "people"):
        before, after = getattr(shows, name), getattr(view, name)
        assert (after[before == 0] == 0).all(), name  # padding stays padding
        assert ((after == before) | (after == 0)).all(), name  # ids are only hidden
        assert (after != before).any(1).float().mean() > 0.2, name  # rows really change
    for name in ("network", "language", "seasons_bucket", "runtime_bucket"):
        before, after = getattr(shows, name), getattr(view, name)
        assert ((after == before) | (after == 0)).all() and (after != before).any(), name
    year, jittered = shows.year_bucket, view.year_bucket
    assert (jittered[year == 0] == 0).all()
    moved = (jittered != 0) & (jittered != year)
    assert moved.any() and ((jittered[moved] - year[moved]).abs() == 1).all()
    cos = (view.text * shows.text).sum(1)
    assert torch.allclose(view.text.norm(dim=1), torch.ones(len(shows)), atol=1e-5)
    assert (cos < 0.999).all() and cos.mean() > 0.7
    again = augment(shows, model.config, model.vocab["year"], gen)  # two views differ
    assert not torch.equal(again.genres, view.genres) or not torch.equal(again.people, view.people)


def test_multi_positive_info_nce_known_answer() -> None:
    """Two shows, two views each, views identical, shows orthogonal: each anchor's softmax
    sees its positive at cosine 1 and two negatives at cosine 0."""
    e1, e2 = torch.eye(2)
    z = torch.stack([e1, e2, e1, e2])  # (4, 2): rows 0/2 show A, rows 1/3 show B
    rows = torch.tensor([0, 1, 0, 1])
    weights = (rows[:, None] == rows[None, :]).float()
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    got = multi_positive_info_nce(z, 4, weights, t)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # an extra candidate identical to show A: a third cosine-1 candidate for A's anchors, a
    # third cosine-0 negative for B's
    extra = torch.cat([z, e1[None]])
    got = multi_positive_info_nce(extra, 4, torch.cat([weights, torch.zeros(4, 1)], 1), t)
    loss_a = -math.log(math.exp(1 / t) / (2 * math.exp(1 / t) + 2))
    loss_b = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 3))
    assert got.item() == pytest.approx((loss_a + loss_b) / 2, rel=1e-6)


def test_hard_negatives_share_a_genre_but_not_the_audience(
    model: ContrastiveModel, data: TrainingData, truth: PlantedTruth
) -> None:
    shows, cfg = model.shows, model.config
    assert shows is not None
    graph = cowatch_graph(data, model.show_ids, cfg)
    audience = audience_matrix(data, model.show_ids)
    table = hard_negative_table(audience, shows.genres, shows.text, graph.counts, cfg)
    anchors, slots = np.nonzero(table >= 0)
    negatives = table[anchors, slots]
    assert len(set(anchors)) > len(model.show_ids) // 2
    genres = [set(g.tolist()) - {0} for g in shows.genres]
    assert all(genres[a] & genres[n] for a, n in zip(anchors, negatives, strict=True))
    assert (graph.counts[anchors, negatives] == 0).all()  # never co-watched
    # their audience overlap is below that of same-genre shows in general
    inter = (audience @ audience.T).toarray()
    size = np.diag(inter)
    jaccard = inter / np.maximum(size[:, None] + size[None, :] - inter, 1)
    same_genre = np.array([[bool(a & b) for b in genres] for a in genres])
    np.fill_diagonal(same_genre, False)
    assert jaccard[anchors, negatives].mean() < 0.5 * jaccard[same_genre].mean()
    pos = {s: i for i, s in enumerate(model.show_ids)}
    pairs = {(pos[a], pos[b]) for a, b in truth.near_duplicate_pairs}
    hard_pairs = set(zip(anchors.tolist(), negatives.tolist(), strict=True))
    assert not pairs & hard_pairs and not {(b, a) for a, b in pairs} & hard_pairs


def test_hard_negatives_of_a_catalogue_smaller_than_the_pool() -> None:
    """Four shows of one genre against `hard_pool` 10 (it was a numpy shape error that failed
    a night on a two-show catalogue): shows 0 and 1 share an audience and are co-watched, so
    neither is the other's negative; 2 and 3 are everyone's; the rest of each row is -1."""
    import scipy.sparse as sp

    viewers = [range(0, 4), range(0, 4), range(4, 8), range(8, 12)]  # show -> its users
    cells = [(s, u) for s, users in enumerate(viewers) for u in users]
    rows, cols = zip(*cells, strict=True)
    audience = sp.csr_matrix((np.ones(len(cells)), (rows, cols)), shape=(4, 12))
    cowatched = sp.csr_matrix(([4.0, 4.0], ([0, 1], [1, 0])), shape=(4, 4))
    genres, text = torch.ones(4, 1, dtype=torch.long), torch.eye(4)
    table = hard_negative_table(audience, genres, text, cowatched, ContrastiveConfig())
    assert table.shape == (4, 10)
    found = [set(row[row >= 0].tolist()) for row in table]
    assert found == [{2, 3}, {2, 3}, {0, 1, 3}, {0, 1, 2}]
    assert all((row[len(f) :] == -1).all() for row, f in zip(table, found, strict=True))


# ---- the GPU profile's path ------------------------------------------------------------------
def test_gpu_profile_path_runs_with_autocast_on_cpu(data: TrainingData, tmp_path: Path) -> None:
    """The GPU profile's code path (bigger batches, bf16 autocast), exercised on CPU."""
    runtime = Runtime("gpu", torch.device("cpu"), batch_multiplier=8, mixed_precision=True)
    cfg = ContrastiveConfig(epochs=2, user_epochs=1, prior_steps=0)  # the prior fits on CPU
    model = ContrastiveModel(cfg, runtime)
    metrics = model.fit(dataclasses.replace(data, checkpoint_dir=tmp_path))
    assert metrics["profile"] == "gpu" and all(np.isfinite(metrics["train_loss"]))
    _, served = model.show_embeddings()
    assert served.dtype == np.float32 and np.isfinite(served).all()
    emb = model.similarity_vectors()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
