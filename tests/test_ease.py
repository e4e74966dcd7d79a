"""EASE-TV (models/ease.py), the closed-form item-item member: on the small synthetic world its
recommendations stay in the user's planted taste cluster, its served vectors reproduce the
closed form (exactly at full rank, nearly the same top-10 at a quarter of it), it agrees with the
EASE peer of `tvrec evaluate`, and a catalogue too large for it is refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from tvrec.jobs.evaluation.peers import EASE, EASEConfig
from tvrec.models.base import Recommender
from tvrec.models.ease import EASEModel, cosine_knn, ease_weights, gram
from tvrec.models.runtime import Runtime
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.model_inputs import TrainingData
from tvrec.pipelines.synthetic import PlantedTruth


@pytest.fixture(scope="module")
def data(inputs_of: Callable[[str], TrainingData]) -> TrainingData:
    return inputs_of("ease")


@pytest.fixture(scope="module")
def exact(data: TrainingData) -> EASEModel:
    model = EASEModel.create(Runtime.cpu(), {"rank": 100_000})  # rank >= catalogue: exact
    model.fit(data)
    return model  # type: ignore[return-value]


def _top10(model: Recommender, users: list[str]) -> np.ndarray:
    """(users, 10) show rows, the user's history left out."""
    shows = model.show_embeddings()[1]
    scores = model.user_embeddings(users) @ shows.T
    for i, u in enumerate(users):
        scores[i, model.histories[u]] = -np.inf
    return np.argsort(-scores, axis=1)[:, :10]


def test_recommendations_stay_in_the_taste_cluster(exact: EASEModel, truth: PlantedTruth) -> None:
    users = [u for u in exact.known_users() if u in truth.user_cluster][:300]
    top = _top10(exact, users)
    ids = exact.show_ids
    same = [
        np.mean([truth.show_cluster.get(ids[s]) == truth.user_cluster[u] for s in row])
        for u, row in zip(users, top, strict=True)
    ]
    chance = 1 / len(set(truth.show_cluster.values()))
    assert np.mean(same) > 0.6, (np.mean(same), chance)  # measured 0.639; chance 0.125


def test_full_rank_vectors_reproduce_the_closed_form(exact: EASEModel, data: TrainingData) -> None:
    users = exact.known_users()[:50]
    metrics = exact.manifest.metrics  # type: ignore[union-attr]
    l2 = metrics["l2"]  # tuned: one of the grid's, each grid value validated
    assert float(l2) in exact.config.grid and len(metrics["validation_ndcg"]) == 6
    X = _binary(exact, exact.known_users())
    B = ease_weights(gram(sp.csr_matrix(X)), l2)
    served = exact.user_embeddings(users) @ exact.show_embeddings()[1].T  # (50, n_shows)
    expected = _binary(exact, users) @ B
    prior = exact.show_embeddings()[1][:, -1]
    np.testing.assert_allclose(served - prior, expected, atol=1e-4)


def test_low_rank_keeps_the_top_ten(exact: EASEModel, data: TrainingData) -> None:
    assert len(exact.show_ids) > 48
    low = EASEModel.create(Runtime.cpu(), {"rank": 48})
    low.fit(data)
    users = exact.known_users()[:300]
    overlap = [
        len(set(a) & set(b)) / 10
        for a, b in zip(_top10(exact, users), _top10(low, users), strict=True)
    ]
    assert np.mean(overlap) > 0.9, np.mean(overlap)  # measured 0.944 at rank 48 of 200 shows


def test_agrees_with_the_evaluation_peer(exact: EASEModel) -> None:
    """The peer of `tvrec evaluate` with the same l2 on the same positives: the same top-10."""
    users = exact.known_users()[:200]
    rows = [(u, exact.show_ids[s]) for u, h in exact.histories.items() for s in h]
    train = pl.DataFrame(rows, schema=["user_id", "show_id"], orient="row")
    train = train.with_columns(event_timestamp=pl.datetime(2024, 1, 1))
    l2 = float(exact.manifest.metrics["l2"])  # type: ignore[union-attr]
    peer = EASE(EASEConfig(l2=l2)).fit(train)
    theirs = peer.recommend(users, 10, exclude_seen=True).sort("user_id", "rank")
    row = {s: i for i, s in enumerate(exact.show_ids)}
    ours = _top10(exact, users)
    agree = [
        len({row[s] for s in g["show_id"]} & set(ours[i])) / 10
        for i, (_, g) in enumerate(theirs.group_by("user_id", maintain_order=True))
    ]
    assert np.mean(agree) > 0.99, np.mean(agree)  # measured 1.0


def test_unknown_users_get_the_prior(exact: EASEModel) -> None:
    vectors = exact.user_embeddings(["nobody"])
    assert (vectors[0, :-1] == 0).all() and vectors[0, -1] == 1.0


def test_a_catalogue_too_large_is_refused(data: TrainingData) -> None:
    model = EASEModel.create(Runtime.cpu(), {"max_shows": 10})
    with pytest.raises(ConfigError, match="max_shows"):
        model.fit(data)


def _binary(model: EASEModel, users: list[str]) -> np.ndarray:
    X = np.zeros((len(users), len(model.show_ids)))
    for i, u in enumerate(users):
        X[i, model.histories[u]] = 1.0
    return X


def test_exact_scores_are_the_closed_form_at_any_rank(exact: EASEModel, data: TrainingData) -> None:
    """`exact` keeps B: a rank-48 model scores as the full-rank one, on the whole catalogue and
    on candidate rows, and again after a save and load; its index vectors stay rank 48."""
    low = EASEModel.create(Runtime.cpu(), {"rank": 48, "exact": True})
    low.fit(data)
    users = [*exact.known_users()[:40], "nobody"]
    full = exact.user_embeddings(users) @ exact.show_embeddings()[1].T  # (41, n_shows)
    np.testing.assert_allclose(low.scores(users), full, atol=1e-4)
    rows = np.random.default_rng(0).integers(0, len(low.show_ids), (len(users), 30))
    expected = np.take_along_axis(full, rows, 1)
    np.testing.assert_allclose(low.scores(users, rows), expected, atol=1e-4)
    again = EASEModel.create(Runtime.cpu(), {"rank": 48, "exact": True})
    again.set_state(low.get_state())
    np.testing.assert_allclose(again.scores(users, rows), expected, atol=1e-4)
    assert low.show_embeddings()[1].shape[1] == 48 + 1  # the index's vectors: rank + prior
    approx = EASEModel.create(Runtime.cpu(), {"rank": 48})
    approx.fit(data)
    assert np.abs(approx.scores(users) - full).max() > 1e-3  # the factorisation is not exact


def test_the_solve_runs_in_place_and_matches_the_textbook() -> None:
    """`ease_weights` runs in one buffer (G's own with `overwrite`), in C order whatever G's
    order, and gives the textbook I - P / diag(P) to rounding; `cosine_knn` built a block of
    columns at a time keeps exactly the neighbours of the whole-matrix build."""
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((300, 1100)) < 0.05).astype(np.float32))  # 1,100 shows
    G = gram(X)
    assert G.flags.c_contiguous and np.array_equal(G, G.T)
    P = np.linalg.inv(G + 50.0 * np.eye(len(G)))
    expected = np.eye(len(G)) - P / np.diag(P)
    copied = ease_weights(G, 50.0)
    assert not np.shares_memory(copied, G) and copied.flags.c_contiguous
    np.testing.assert_allclose(copied, expected, atol=1e-9)
    np.testing.assert_array_equal(ease_weights(np.asfortranarray(G), 50.0), copied)
    owned = G.copy()
    in_place = ease_weights(owned, 50.0, overwrite=True)
    assert np.shares_memory(in_place, owned) and np.array_equal(in_place, copied)

    whole = cosine_knn(G, 20, shrink=1.0, block=len(G))
    blocked = cosine_knn(G, 20, shrink=1.0, block=256)  # 5 blocks, the last one short
    assert (whole != blocked).nnz == 0 and whole.nnz == 20 * len(G)
    assert whole.diagonal().max() == 0.0  # no show is its own neighbour
