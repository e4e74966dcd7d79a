"""Peer recommenders that tvrec is benchmarked against: MostPopular, RecentPopular (timed
data), ItemKNN, EASE and ALS.

Every peer fits on a frame of (user_id, show_id, ...) pairs, binarised into a CSR matrix X of
users x items, and ranks the whole catalogue (every show seen in train) for each user with
`recommend(users, k)` -> a (user_id, rank, show_id, score) frame. Scoring is vectorised and
batched (a few hundred users at a time) so that 5k users x 7.4k items stays small in memory.
Shows absent from train are unreachable for these collaborative models; users absent from train
get no rows. EASE tunes its lambda with the split and metric code of this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from tvrec.jobs.evaluation.metrics import MetricConfig, evaluate_topk
from tvrec.jobs.evaluation.splitting import cut_events
from tvrec.models.ease import cosine_knn, ease_weights

ValidationKind = Literal["auto", "temporal", "random"]
TOPK_SCHEMA = {"user_id": pl.String, "rank": pl.Int32, "show_id": pl.String, "score": pl.Float64}


# ---- shared helpers ------------------------------------------------------------------------
@dataclass
class Interactions:
    """Train pairs as a binary CSR matrix (users x items) plus the id <-> index maps."""

    users: np.ndarray  # (n_users,) str, sorted
    items: np.ndarray  # (n_items,) str, sorted
    X: sp.csr_matrix  # (n_users, n_items) float32, 1.0 where the user interacted

    @classmethod
    def from_frame(cls, train: pl.DataFrame) -> Interactions:
        pairs = train.select("user_id", "show_id").unique()
        users = pairs["user_id"].unique().sort()
        items = pairs["show_id"].unique().sort()
        rows = _index_of(pairs["user_id"], users)
        cols = _index_of(pairs["show_id"], items)
        data = np.ones(rows.size, dtype=np.float32)
        X = sp.csr_matrix((data, (rows, cols)), shape=(users.len(), items.len()))
        X.sort_indices()
        return cls(users.to_numpy(), items.to_numpy(), X)

    def rows_of(self, pairs: pl.DataFrame) -> tuple[np.ndarray, sp.csr_matrix]:
        """Users of (user_id, show_id) `pairs` (sorted) and their rows of X built from these
        pairs alone (shows absent from train dropped): new users' histories, to fold in."""
        users = pairs["user_id"].unique().sort()
        known = pairs.filter(pl.col("show_id").is_in(pl.Series(self.items).implode()))
        rows = _index_of(known["user_id"], users)
        cols = _index_of(known["show_id"], pl.Series(self.items))
        X = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)),
                          shape=(users.len(), self.items.size))  # fmt: skip
        X.sum_duplicates()
        X.data[:] = 1.0
        return users.to_numpy(), X

    def user_rows(self, users: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(row index, user id) of the given users that appear in train, in the given order."""
        lookup = {u: i for i, u in enumerate(self.users)}
        known = [(lookup[u], u) for u in dict.fromkeys(users) if u in lookup]
        rows = np.array([r for r, _ in known], dtype=np.int64)
        ids = np.array([u for _, u in known], dtype=object)
        return rows, ids


def _index_of(values: pl.Series, sorted_keys: pl.Series) -> np.ndarray:
    """Position of each value in `sorted_keys` (all values must be present)."""
    keys = pl.DataFrame({"key": sorted_keys, "idx": np.arange(sorted_keys.len())})
    df = pl.DataFrame({"key": values}).join(keys, on="key", how="left", maintain_order="left")
    return df["idx"].to_numpy()


def gram(X: sp.csr_matrix) -> np.ndarray:
    """X^T X as a dense float64 (items x items) matrix (co-occurrence counts for binary X)."""
    dense = X.astype(np.float32).toarray()  # (users, items); BLAS beats a sparse product here
    return (dense.T @ dense).astype(np.float64)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best column indexes and their scores, best first ((b, k) each)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def mask_seen(scores: np.ndarray, X_rows: sp.csr_matrix) -> None:
    """Set the scores of each row's train items to -inf, in place."""
    counts = np.diff(X_rows.indptr)
    scores[np.repeat(np.arange(X_rows.shape[0]), counts), X_rows.indices] = -np.inf


# ---- the base class --------------------------------------------------------------------------
class Peer:
    """fit(train) -> self; recommend(users, k) -> (user_id, rank, show_id, score)."""

    name = "peer"
    batch_size = 512

    def __init__(self) -> None:
        self.data: Interactions | None = None

    def fit(self, train: pl.DataFrame) -> Peer:
        self.data = Interactions.from_frame(train)
        self._fit(self.data.X)
        return self

    def _fit(self, X: sp.csr_matrix) -> None:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Hyper-parameters for the report (the config dataclass, if any)."""
        config = getattr(self, "config", None)
        return asdict(config) if config is not None else {}

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        """Dense float32 scores (len(rows), n_items) for the given user rows: by default their
        train histories through `_scores_of`."""
        assert self.data is not None
        return self._scores_of(self.data.X[rows])

    def recommend(
        self, users: Sequence[str], k: int = 10, exclude_seen: bool = True
    ) -> pl.DataFrame:
        if self.data is None:
            raise RuntimeError(f"{self.name}: call fit() first")
        rows, ids = self.data.user_rows(users)
        parts = [
            self._recommend_batch(
                rows[i : i + self.batch_size], ids[i : i + self.batch_size], k, exclude_seen
            )
            for i in range(0, rows.size, self.batch_size)
        ]
        if not parts:
            return pl.DataFrame(schema=TOPK_SCHEMA)
        return pl.concat(parts)

    def recommend_from(self, pairs: pl.DataFrame, k: int = 10) -> pl.DataFrame:
        """Top-k of users the peer never trained on, from their (user_id, show_id) `pairs`
        alone (fold-in: the few-shot protocol's first events); their shows excluded."""
        if self.data is None:
            raise RuntimeError(f"{self.name}: call fit() first")
        ids, X = self.data.rows_of(pairs)
        parts = []
        for i in range(0, ids.size, self.batch_size):
            X_b = X[i : i + self.batch_size]
            scores = np.asarray(self._scores_of(X_b), dtype=np.float32)  # (b, n_items)
            parts.append(self._frame(scores, X_b, ids[i : i + self.batch_size], k, True))
        return pl.concat(parts) if parts else pl.DataFrame(schema=TOPK_SCHEMA)

    def _scores_of(self, X_rows: sp.csr_matrix) -> np.ndarray:
        """Scores (b, n_items) of users given only their history rows `X_rows` (b, n_items)."""
        raise NotImplementedError

    def _recommend_batch(
        self, rows: np.ndarray, ids: np.ndarray, k: int, exclude_seen: bool
    ) -> pl.DataFrame:
        assert self.data is not None
        scores = np.asarray(self._scores(rows), dtype=np.float32)  # (b, n_items)
        return self._frame(scores, self.data.X[rows], ids, k, exclude_seen)

    def _frame(
        self, scores: np.ndarray, X_rows: sp.csr_matrix, ids: np.ndarray, k: int, exclude: bool
    ) -> pl.DataFrame:
        assert self.data is not None
        if exclude:
            mask_seen(scores, X_rows)
        idx, best = top_k(scores, k)  # (b, k)
        kk = idx.shape[1]
        frame = pl.DataFrame(
            {
                "user_id": np.repeat(ids, kk).astype(str),
                "rank": np.tile(np.arange(1, kk + 1, dtype=np.int32), len(ids)),
                "show_id": self.data.items[idx.ravel()],
                "score": best.ravel().astype(np.float64),
            },
            schema=TOPK_SCHEMA,
        )
        return frame.filter(pl.col("score").is_finite())  # drop padding past all-seen users


# ---- MostPopular ---------------------------------------------------------------------------
class MostPopular(Peer):
    """Every user gets the shows with the most distinct train users."""

    name = "MostPop"

    def _fit(self, X: sp.csr_matrix) -> None:
        self.popularity = np.asarray(X.sum(axis=0), dtype=np.float32).ravel()  # (n_items,)

    def _scores_of(self, X_rows: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.popularity, (X_rows.shape[0], self.popularity.size)).copy()


# ---- RecentPopular -------------------------------------------------------------------------
@dataclass(frozen=True)
class RecentPopConfig:
    windows: tuple[int, ...] = (7, 30, 90)  # days before the end of train; the best is kept
    days: int | None = None  # fixed window; None: chosen on a validation cut of train
    validation_share: float = 0.1
    k: int = 10


class RecentPopular(Peer):
    """Every user gets the shows most users started in the last N days before the end of
    train (ties: all-time popularity). N is chosen from `windows` by NDCG@k on a temporal
    validation cut inside train, so nothing at or after the test cutoff is seen."""

    name = "RecentPop"

    def __init__(self, config: RecentPopConfig | None = None) -> None:
        super().__init__()
        self.config = config or RecentPopConfig()
        self.days: int | None = self.config.days
        self.validation_ndcg: dict[int, float] = {}

    def fit(self, train: pl.DataFrame) -> RecentPopular:
        if self.days is None:
            self.days = self.tune(train)
        end = train["event_timestamp"].max()
        since = end - timedelta(days=self.days)  # type: ignore[operator]
        recent = train.filter(pl.col("event_timestamp") > since)
        self._recent = recent.group_by("show_id").agg(pl.col("user_id").n_unique().alias("n"))
        super().fit(train)
        return self

    def _fit(self, X: sp.csr_matrix) -> None:
        assert self.data is not None
        counts = dict(zip(self._recent["show_id"], self._recent["n"], strict=True))
        recent = np.array([counts.get(s, 0) for s in self.data.items], dtype=np.float64)
        overall = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()  # (n_items,)
        self.popularity = (recent + overall / (overall.max() + 1.0)).astype(np.float32)

    def _scores_of(self, X_rows: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.popularity, (X_rows.shape[0], self.popularity.size)).copy()

    def params(self) -> dict[str, Any]:
        ndcg = {str(k): round(v, 4) for k, v in self.validation_ndcg.items()}
        return {"days": self.days, "windows": list(self.config.windows), "validation_ndcg": ndcg}

    def tune(self, train: pl.DataFrame) -> int:
        """The window with the best NDCG@k on the last `validation_share` of train's time."""
        cut = cut_events(train, "temporal", self.config.validation_share)
        metric = MetricConfig(k=self.config.k, bootstrap=1)
        for days in self.config.windows:
            probe = RecentPopular(RecentPopConfig(days=days)).fit(cut.train)
            topk = probe.recommend(cut.test_users, self.config.k)
            self.validation_ndcg[days] = evaluate_topk(topk, cut, metric).ndcg
        return max(self.config.windows, key=lambda d: self.validation_ndcg[d])  # ties: first


# ---- ItemKNN -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemKNNConfig:
    neighbours: int = 100  # K most similar items kept per item
    shrink: float = 0.0  # added to the cosine denominator (0: plain cosine)
    # "target": a candidate is scored by its own K neighbours in the user's history (column-wise
    # pruning, as in Dacrema et al.'s ItemKNNCF); "history": each history item votes for its own
    # K neighbours (row-wise, as implicit's CosineRecommender). On anime, K=100: 0.374 vs 0.286.
    prune: Literal["target", "history"] = "target"


class ItemKNN(Peer):
    name = "ItemKNN"

    def __init__(self, config: ItemKNNConfig | None = None) -> None:
        super().__init__()
        self.config = config or ItemKNNConfig()

    def _fit(self, X: sp.csr_matrix) -> None:
        W = cosine_knn(gram(X), self.config.neighbours, self.config.shrink)
        self.W = (W if self.config.prune == "target" else W.T).tocsr()

    def _scores_of(self, X_rows: sp.csr_matrix) -> np.ndarray:
        return (X_rows @ self.W).toarray()


# ---- EASE ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EASEConfig:
    l2: float | None = None  # None: tune on a validation cut of train over `grid`
    grid: tuple[float, ...] = (50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)
    validation: ValidationKind = "auto"  # auto: temporal when train has more than one time
    validation_share: float = 0.1  # the last 10% by time, or a random 10% of train events
    seed: int = 42
    k: int = 10  # NDCG@k picks lambda


class EASE(Peer):
    """Embarrassingly shallow autoencoder (Steck 2019); lambda tuned on train only."""

    name = "EASE"

    def __init__(self, config: EASEConfig | None = None) -> None:
        super().__init__()
        self.config = config or EASEConfig()
        self.l2: float | None = self.config.l2
        self.validation_ndcg: dict[float, float] = {}

    def fit(self, train: pl.DataFrame) -> EASE:
        if self.config.l2 is None:
            self.l2 = self.tune(train)
        super().fit(train)
        return self

    def _fit(self, X: sp.csr_matrix) -> None:
        assert self.l2 is not None
        self.B = ease_weights(gram(X), self.l2, overwrite=True).astype(np.float32)

    def _scores_of(self, X_rows: sp.csr_matrix) -> np.ndarray:
        return X_rows @ self.B

    def params(self) -> dict[str, Any]:
        return {
            "l2": self.l2,
            "grid": list(self.config.grid),
            "validation": self.config.validation,
            "validation_ndcg": {k: round(v, 4) for k, v in self.validation_ndcg.items()},
        }

    def _validation_kind(self, train: pl.DataFrame) -> Literal["temporal", "random"]:
        if self.config.validation != "auto":
            return self.config.validation
        return "temporal" if train["event_timestamp"].n_unique() > 1 else "random"

    def tune(self, train: pl.DataFrame) -> float:
        """The grid's l2 with the best NDCG@k on a validation cut of `train`."""
        cut = cut_events(
            train, self._validation_kind(train), self.config.validation_share, self.config.seed
        )
        inner = Interactions.from_frame(cut.train)
        G = gram(inner.X)
        users = cut.test_users
        metric = MetricConfig(k=self.config.k, bootstrap=1)
        for l2 in self.config.grid:
            probe = EASE(EASEConfig(l2=l2))
            probe.data = inner
            probe.B = ease_weights(G, l2).astype(np.float32)
            topk = probe.recommend(users, self.config.k)
            self.validation_ndcg[l2] = evaluate_topk(topk, cut, metric).ndcg
        # ties go to the first lambda in grid order
        return max(self.config.grid, key=lambda l2: self.validation_ndcg[l2])


# ---- ALS -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ALSConfig:
    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 10.0  # confidence of a positive = alpha (binary interactions)
    random_state: int = 42
    num_threads: int = 2


class ALS(Peer):
    """implicit's CPU AlternatingLeastSquares (Hu, Koren & Volinsky 2008)."""

    name = "ALS"

    def __init__(self, config: ALSConfig | None = None) -> None:
        super().__init__()
        self.config = config or ALSConfig()

    def _fit(self, X: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        cfg = self.config
        # implicit parallelises itself; BLAS threads inside it only slow it down
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=cfg.factors,
                regularization=cfg.regularization,
                iterations=cfg.iterations,
                alpha=cfg.alpha,
                random_state=cfg.random_state,
                num_threads=cfg.num_threads,
            )
            model.fit(X.astype(np.float32), show_progress=False)
        self.model = model  # kept for fold-in (`recalculate_user`)
        self.user_factors = np.asarray(model.user_factors)  # (users, factors)
        self.item_factors = np.asarray(model.item_factors)  # (items, factors)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors[rows] @ self.item_factors.T

    def _scores_of(self, X_rows: sp.csr_matrix) -> np.ndarray:
        """Fold-in: implicit's own user step (least squares with the items' factors fixed)."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            users = self.model.recalculate_user(np.arange(X_rows.shape[0]), X_rows)
        return np.asarray(users) @ self.item_factors.T


def default_peers(kind: Literal["temporal", "random"] = "temporal") -> dict[str, Peer]:
    """The benchmark's peers, EASE validated the same way (`kind`) as the outer split."""
    recent = {"RecentPop": RecentPopular()} if kind == "temporal" else {}
    return {
        "MostPop": MostPopular(),
        **recent,
        "ItemKNN": ItemKNN(),
        "EASE": EASE(EASEConfig(validation=kind)),
        "ALS": ALS(),
    }


__all__ = [
    "ALS",
    "EASE",
    "ALSConfig",
    "EASEConfig",
    "Interactions",
    "ItemKNN",
    "ItemKNNConfig",
    "MostPopular",
    "Peer",
    "RecentPopConfig",
    "RecentPopular",
    "cosine_knn",
    "default_peers",
    "ease_weights",
    "gram",
]
