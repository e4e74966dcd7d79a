"""Franchise links by title (models/franchise.py): known pairs on a small catalogue."""

from __future__ import annotations

from itertools import product

import numpy as np
import scipy.sparse as sp

from tvrec.models.franchise import closest_link, title_links, title_vectors

# Four franchises, plus shows that share only common words ("the", "season", "of").
TITLES = [
    "Gintama",  # 0
    "Gintama'",  # 1
    "Gintama°: Enchousen",  # 2
    "Death Note",  # 3
    "Death Note: Rewrite",  # 4
    "Steins;Gate",  # 5
    "Steins;Gate 0",  # 6
    "CSI: Miami",  # 7
    "CSI: Crime Scene Investigation",  # 8
    "The Office",  # 9
    "The Crown",  # 10
    "Season of the Witch",  # 11
    "Season of Love",  # 12
    "Cowboy Bebop",  # 13
]
# 200 more titles make "the", "season" and "of" common (in over 5% of titles)
TITLES += ["The Season of " + "".join(w) for w in list(product("bcdfghjklm", repeat=3))[:200]]
FRANCHISES = [{0, 1, 2}, {3, 4}, {5, 6}, {7, 8}]


def test_titles_of_one_franchise_are_linked_and_common_words_link_nothing() -> None:
    links = title_links(TITLES, neighbours=10, min_similarity=0.5).toarray()
    for group in FRANCHISES:
        for i in group:
            linked = set(np.flatnonzero(links[i, :14]))
            assert linked == group - {i}, (TITLES[i], [TITLES[j] for j in linked])
    for i in (9, 10, 11, 12, 13):  # "The ...", "Season of ...": no franchise
        assert not links[i, :14].any(), TITLES[i]
    np.testing.assert_array_equal(links, links.T)
    assert not np.diag(links).any()


def test_vectors_are_unit_rows_and_common_grams_weigh_nothing() -> None:
    V = title_vectors(TITLES, max_share=0.05)
    norms = np.sqrt(np.asarray(V.multiply(V).sum(1)).ravel())
    np.testing.assert_allclose(norms[norms > 0], 1.0, rtol=1e-5)
    assert norms[13] == 0  # "Cowboy Bebop" shares no n-gram with another title


def test_neighbours_caps_each_row_before_symmetry() -> None:
    links = title_links(TITLES, neighbours=1, min_similarity=0.5)
    linked = np.diff(links.indptr) > 0
    # each row keeps its best link; symmetry adds at most the links others chose
    assert links.nnz <= 2 * linked.sum()
    for group in FRANCHISES:
        for i in group:
            assert set(links[i].indices) <= group - {i}


def test_closest_link_takes_the_best_history_show_not_the_sum() -> None:
    links = sp.csr_matrix(np.array([[0, 0.9, 0.6], [0.9, 0, 0.6], [0.6, 0.6, 0]], np.float32))
    rows = np.array([[2, 1], [0, 2], [0, 1]])
    got = closest_link(links, [[0, 1], [], [2]], rows)
    np.testing.assert_allclose(got, [[0.6, 0.9], [0.0, 0.0], [0.6, 0.6]])
