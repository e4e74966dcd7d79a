"""The profile member (models/profile.py): a user's mean content against each candidate's.

Known answers: the scores are the closed form (the mean over the user's history of the
attribute and text inner products), however the users are chunked; on the synthetic world,
where taste clusters are planted in the shows' genres, cast and text, the profile alone ranks
a user's own cluster's shows above the others', including shows nobody has watched.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from tvrec.models.base import TrainingData
from tvrec.models.ease import _matrix
from tvrec.models.ensemble import EnsembleModel
from tvrec.models.profile import ShowProfiles
from tvrec.pipelines.model_inputs import CatalogueContent
from tvrec.pipelines.synthetic import PlantedTruth


@pytest.fixture(scope="module")
def data(inputs_of: Callable[[str], TrainingData]) -> TrainingData:
    return inputs_of(EnsembleModel.name)


@pytest.fixture(scope="module")
def profiles(data: TrainingData) -> ShowProfiles:
    out = ShowProfiles.of(data.content, list(data.show_ids))
    assert out is not None and out.text is not None
    return out


def _histories(data: TrainingData) -> tuple[list[str], list[list[int]]]:
    row = {s: i for i, s in enumerate(data.show_ids)}
    pos = data.positives()
    by_user = pos.groupby("user_id")["show_id"].agg(lambda s: sorted({row[x] for x in s}))
    return list(by_user.index), list(by_user)


def test_scores_are_the_mean_inner_product_with_the_history(
    data: TrainingData, profiles: ShowProfiles
) -> None:
    _, histories = _histories(data)
    histories = [*histories[:30], []]  # and a user without history: 0
    n = len(data.show_ids)
    rows = np.random.default_rng(0).integers(0, n, (len(histories), 40))
    A, T = profiles.attributes.toarray(), profiles.text
    assert T is not None
    expected = np.stack(
        [
            (A[h].mean(0) @ A[r].T + T[h].mean(0) @ T[r].T) if h else np.zeros(40)
            for h, r in zip(histories, rows, strict=True)
        ]
    )
    chunked = max(A.shape) * 11  # 11 users a chunk
    got = profiles.scores(_matrix(histories, n), rows, max_cells=chunked)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    one = profiles.scores(_matrix(histories[:1], n), rows[:1])  # a request: text gathered
    np.testing.assert_allclose(one, expected[:1], rtol=1e-4, atol=1e-5)
    # each field is one unit block: a show's attributes square to the fields it has
    fields = np.asarray((profiles.attributes.multiply(profiles.attributes)).sum(1)).ravel()
    assert fields.max() <= 10 + 1e-4 and fields.min() >= 3 - 1e-4


def test_saved_and_loaded_alike(profiles: ShowProfiles) -> None:
    back = ShowProfiles.from_state(profiles.state())
    assert back is not None and back.text is not None and profiles.text is not None
    assert (back.attributes != profiles.attributes).nnz == 0
    np.testing.assert_array_equal(back.text, profiles.text)


def test_shows_outside_the_catalogue_and_no_metadata() -> None:
    empty = CatalogueContent(["a", "b"], pd.DataFrame(), {}, {}, [])
    assert ShowProfiles.of(empty, ["a", "b"]) is None
    assert ShowProfiles.of(None, ["a"]) is None


def test_a_users_own_cluster_ranks_first_among_shows_nobody_watched(
    data: TrainingData, profiles: ShowProfiles, truth: PlantedTruth
) -> None:
    """Planted taste clusters share genres, cast and words: the mean content of a user's
    history ranks their cluster's new shows (40 drawn and taken out of every history) above
    the other clusters' (AUC per user)."""
    users, histories = _histories(data)
    n = len(data.show_ids)
    planted = [i for i, s in enumerate(data.show_ids) if s in truth.show_cluster]
    new = np.sort(np.random.default_rng(0).choice(planted, 40, replace=False))
    histories = [[r for r in h if r not in set(new)] for h in histories]
    cluster = np.array([truth.show_cluster[data.show_ids[i]] for i in new])
    scores = profiles.scores(_matrix(histories, n), np.tile(new, (len(users), 1)))
    aucs = []
    for i, u in enumerate(users):
        ours = cluster == truth.user_cluster[u]
        if ours.any() and (~ours).any() and histories[i]:
            aucs.append((scores[i][ours][:, None] > scores[i][~ours][None, :]).mean())
    assert np.mean(aucs) > 0.93, np.mean(aucs)  # measured 0.946 over 291 users
