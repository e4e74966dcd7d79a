"""Franchise links between shows from their titles: a content signal co-watching misses.

A sequel, a spin-off, a special or a film of a series shares words of its title with it
("Gintama", "Gintama'", "Gintama°"; "CSI: Miami"). Users who finished one part of a franchise
go on to others, often to parts too rarely watched for co-watching counts (EASE, item-kNN) to
link them. Two shows are linked when their titles' TF-IDF vectors over character n-grams of
words (3 to 5 characters, as scikit-learn's `char_wb`) have a cosine of at least
`min_similarity`; n-grams in more than `max_share` of the titles ("the", "season", a year) weigh
nothing. A candidate's score is its closest link to the user's history (max, not sum: one
finished part says as much as five).

    title_vectors(titles)                     (n, V) l2-normalised TF-IDF rows
    title_links(titles, neighbours, ...)      (n, n) symmetric sparse cosine, thresholded
    link_strength(links, histories)           (b, n) each show's closest history show
    closest_link(links, histories, rows)      (b, N) the same on each user's candidates

Cost: the links are computed `block` titles at a time and each row keeps its `neighbours`
closest, so memory grows with shows x neighbours, not shows squared.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

WORD = re.compile(r"\w+")
NGRAMS = (3, 4, 5)


def _grams(title: str) -> Counter[str]:
    """Character n-grams of each word padded with spaces, as `char_wb` cuts them."""
    out: Counter[str] = Counter()
    for word in WORD.findall(title.lower()):
        padded = f" {word} "
        for n in NGRAMS:
            out.update(padded[i : i + n] for i in range(max(len(padded) - n + 1, 1)))
    return out


def title_vectors(titles: Sequence[str], max_share: float = 0.05) -> sp.csr_matrix:
    """(n, V) TF-IDF of each title's n-grams (smoothed idf), rows l2-normalised; n-grams of
    one title alone or of more than `max_share` of them are dropped (a row may be empty)."""
    counts = [_grams(t or "") for t in titles]
    df = Counter(g for c in counts for g in c)
    n = len(titles)
    vocab = {
        g: i for i, g in enumerate(sorted(g for g, d in df.items() if 2 <= d <= max_share * n))
    }
    rows, cols, values = [], [], []
    for r, c in enumerate(counts):
        for g, tf in c.items():
            if (j := vocab.get(g)) is not None:
                rows.append(r)
                cols.append(j)
                values.append(tf * (np.log((1 + n) / (1 + df[g])) + 1.0))
    V = sp.csr_matrix((values, (rows, cols)), shape=(n, len(vocab)), dtype=np.float32)
    norms = np.sqrt(np.asarray(V.multiply(V).sum(1)).ravel())  # (n,)
    return sp.diags(1.0 / np.where(norms > 0, norms, 1.0)).astype(np.float32) @ V


def title_links(
    titles: Sequence[str],
    neighbours: int = 100,
    min_similarity: float = 0.5,
    max_share: float = 0.05,
    block: int = 1024,
) -> sp.csr_matrix:
    """(n, n) cosine of the titles' vectors where it is at least `min_similarity`, each row's
    `neighbours` largest kept, then made symmetric (the larger of (i, j) and (j, i)); zero
    diagonal."""
    V = title_vectors(titles, max_share)
    n = V.shape[0]
    parts = []
    for start in range(0, n, block):
        sims = (V[start : start + block] @ V.T).tocsr()  # (b, n) sparse
        own = np.repeat(np.arange(sims.shape[0]), np.diff(sims.indptr)) + start  # row's show
        sims.data[(sims.data < min_similarity) | (sims.indices == own)] = 0.0
        sims.eliminate_zeros()
        parts.append(_top_per_row(sims, neighbours))
    links = sp.vstack(parts).tocsr() if parts else sp.csr_matrix((0, 0), dtype=np.float32)
    return links.maximum(links.T).tocsr().astype(np.float32)


def _top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's k largest entries."""
    rows, cols, values = [], [], []
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        keep = np.argsort(-m.data[lo:hi], kind="stable")[:k]
        rows.append(np.full(keep.size, r))
        cols.append(m.indices[lo:hi][keep])
        values.append(m.data[lo:hi][keep])
    r, c, v = (np.concatenate(x) if x else np.zeros(0) for x in (rows, cols, values))
    return sp.csr_matrix((v, (r, c)), shape=m.shape, dtype=np.float32)


def link_strength(links: sp.csr_matrix, histories: Sequence[Sequence[int]]) -> np.ndarray:
    """(b, n) each show's largest link to a show of each user's history (0: none), in one
    pass over the link rows of every history show (no per-user loop)."""
    out = np.zeros((len(histories), links.shape[1]), np.float32)
    lengths = np.fromiter((len(h) for h in histories), np.int64, len(histories))
    if lengths.sum() == 0:
        return out
    shows = np.concatenate([np.asarray(h, np.int64) for h in histories if len(h)])  # (H,)
    users = np.repeat(np.arange(len(histories)), lengths)  # (H,) each history show's user
    starts = links.indptr[shows]
    counts = links.indptr[shows + 1] - starts  # (H,) links of each history show
    # every link of every history show: its position in links.data, (L,)
    at = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
    np.maximum.at(out, (np.repeat(users, counts), links.indices[at]), links.data[at])
    return out


def closest_link(
    links: sp.csr_matrix, histories: Sequence[Sequence[int]], rows: np.ndarray
) -> np.ndarray:
    """(b, N) each candidate row's largest link to a show of the user's history (0: none)."""
    return np.take_along_axis(link_strength(links, histories), rows, 1)
