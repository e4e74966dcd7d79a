"""The profile member: a user's taste as the mean content of the shows they watched.

Every show is a bag of catalogue attributes known before anyone watches it (genres, platforms,
network, type, language, age rating, release-year, seasons and runtime buckets, the people
credited) and its MiniLM text embedding. Each attribute field is one block of one-hot columns,
unit-normalised per show (a show with three genres weighs each 1/sqrt(3)), the text another
block; a user's profile is the mean of their history's rows, a candidate's score its inner
product with the profile (the sum over blocks of how much of the user's history shares the
candidate's genre, cast, ...). A show nobody watched yet scores like any other: this member
speaks for new shows, where co-watching (EASE-TV, item-kNN) and popularity cannot.

    ShowProfiles.of(content, show_ids)       the catalogue's rows, None without metadata
    profiles.scores(histories, rows)         (b, N) each user's candidates
    premiere_days(content, show_ids)         (n,) for the release member (models/ensemble.py)

Cost: the attribute block is sparse, (n, A) with about 25 entries a show; users are scored
against the whole catalogue (one sparse and one dense product, as item-kNN's member is) in
chunks of at most `max_cells` cells, so memory grows with the chunk x shows, never with
shows squared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from tvrec.pipelines.model_inputs import CatalogueContent

from .content import ShowTensors, show_content

FIELDS = tuple(f for f in ShowTensors.names() if f != "text")
METADATA = "show_metadata__genre_ids"  # present when the catalogue carries show metadata
REQUEST_USERS = 8  # at most this many users: score text on the candidates alone
UNKNOWN_DAY = -1  # premiered_days of a show without a premiere date (pipelines/features/show.py)


@dataclass
class ShowProfiles:
    """Each catalogue row's content: attribute blocks (sparse) and text (dense or None)."""

    attributes: sp.csr_matrix  # (n, A) float32, each field's block unit-normalised per show
    text: np.ndarray | None  # (n, T) float32, unit text embeddings (None: no text)

    @classmethod
    def of(cls, content: CatalogueContent | None, show_ids: list[str]) -> ShowProfiles | None:
        """The rows of `show_ids` (a show the catalogue lacks: all zero), None when the
        catalogue carries no show metadata."""
        if content is None or METADATA not in content.features.columns:
            return None
        people = sorted({p for credited in content.credits.values() for p in credited})
        vocab = {p: i + 1 for i, p in enumerate(people)}  # every person: catalogue metadata
        tensors = show_content(content, pd.DataFrame(), vocab).tensors
        where = {s: i for i, s in enumerate(content.show_ids)}
        rows = np.array([where.get(s, -1) for s in show_ids], np.int64)  # (n,) -1: unknown
        known = rows >= 0
        attributes = _attributes(tensors)[np.where(known, rows, 0)]
        attributes = sp.diags(known.astype(np.float32)) @ attributes  # unknown rows: zero
        text = tensors.text.numpy().astype(np.float32)
        norm = np.linalg.norm(text, axis=1, keepdims=True)
        text = np.where(norm > 0, text / np.maximum(norm, 1e-12), 0.0)[np.where(known, rows, 0)]
        text[~known] = 0.0
        has_text = bool(np.abs(text).sum() > 0)
        return cls(attributes.tocsr().astype(np.float32), text if has_text else None)

    def scores(
        self, histories: sp.csr_matrix, rows: np.ndarray, max_cells: int = 1 << 24
    ) -> np.ndarray:
        """Each user's profile against their candidate rows: histories (b, n) 0/1, rows
        (b, N) -> (b, N) float32 (a user without history: 0)."""
        share = 1.0 / np.maximum(np.asarray(histories.sum(1)), 1.0)  # (b, 1) 1 / history length
        out = np.empty(rows.shape, np.float32)
        step = max(1, max_cells // max(self.attributes.shape))  # users a chunk
        for lo in range(0, len(rows), step):
            users = slice(lo, lo + step)
            chunk = histories if len(rows) <= step else histories[users]  # (c, n)
            profile = (chunk @ self.attributes).toarray() * share[users]  # (c, A)
            every = (self.attributes @ profile.T).T  # (c, n) the whole catalogue
            out[users] = np.take_along_axis(every, rows[users], 1)
            if self.text is not None:
                taste = (chunk @ self.text) * share[users]  # (c, T)
                out[users] += _text_scores(self.text, taste, rows[users])
        return out

    def state(self) -> dict[str, Any]:
        text = {"text": torch.as_tensor(self.text)} if self.text is not None else {}
        return {"attributes": sparse_state(self.attributes)} | text

    @classmethod
    def from_state(cls, saved: dict[str, Any] | None) -> ShowProfiles | None:
        if saved is None:
            return None
        text = saved["text"].numpy() if "text" in saved else None
        return cls(sparse_matrix(saved["attributes"]), text)


def sparse_state(m: sp.spmatrix) -> dict[str, torch.Tensor]:
    """A sparse matrix as tensors (what `torch.load(weights_only=True)` reads back)."""
    coo = m.tocoo()
    return {
        "ij": torch.as_tensor(np.stack([coo.row, coo.col]).astype(np.int64)),
        "values": torch.as_tensor(coo.data),
        "shape": torch.as_tensor(m.shape),
    }


def sparse_matrix(
    saved: dict[str, torch.Tensor], shape: tuple[int, int] | None = None
) -> sp.csr_matrix:
    """`sparse_state`'s matrix back; `shape` for a state saved without one (square links)."""
    size = tuple(saved["shape"].tolist()) if "shape" in saved else shape
    ij = saved["ij"].numpy()
    return sp.csr_matrix((saved["values"].numpy(), (ij[0], ij[1])), shape=size)


def premiere_days(content: CatalogueContent | None, show_ids: list[str]) -> np.ndarray | None:
    """(n,) each show's premiere in days since 1970 (NaN: unknown, or not in the catalogue);
    None when no show has one. Catalogue metadata, known ahead of the premiere itself."""
    column = "show_metadata__premiered_days"
    if content is None or column not in content.features.columns:
        return None
    days = pd.to_numeric(content.features[column], errors="coerce").to_numpy(np.float64)
    days[days == UNKNOWN_DAY] = np.nan
    where = dict(zip(content.show_ids, days, strict=True))
    out = np.array([where.get(s, np.nan) for s in show_ids], np.float64)
    return out if np.isfinite(out).any() else None


def _attributes(tensors: ShowTensors) -> sp.csr_matrix:
    """(n, A) one block of columns per field (id 0, unknown, has none), unit-normalised."""
    blocks = []
    for name in FIELDS:
        ids = getattr(tensors, name).numpy().reshape(len(tensors.text), -1)  # (n, w)
        ids = np.where(ids > 0, ids, 0)
        show, slot = np.nonzero(ids)
        block = sp.csr_matrix(
            (np.ones(len(show), np.float32), (show, ids[show, slot])),
            shape=(ids.shape[0], int(ids.max(initial=0)) + 1),
        )
        block.sum_duplicates()
        block.data[:] = 1.0  # an id listed twice is still one attribute
        norm = np.sqrt(np.asarray(block.sum(1)).ravel())  # (n,) sqrt of the field's count
        blocks.append(sp.diags(1.0 / np.maximum(norm, 1.0)) @ block)
    return sp.hstack(blocks, format="csr")


def _text_scores(text: np.ndarray, taste: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(c, T) tastes against the candidates' text (n, T), (c, N): a request of a few users
    gathers its candidates' rows (N x T, not the catalogue's n x T), a batch multiplies the
    whole catalogue at once."""
    if len(rows) <= REQUEST_USERS:
        return np.einsum("ct,cnt->cn", taste, text[rows])
    return np.take_along_axis(taste @ text.T, rows, 1)  # (c, n) -> (c, N)
