"""Top-k metrics of any model's top-k table against a split's test pairs.

`evaluate_topk(topk, split)`: HR@k, Recall@k, NDCG@k (with a bootstrap 95% interval over users)
and catalogue coverage, so peers and tvrec's own published recommendations are scored by the
same code. `evaluate_by_history(topk, split)`: HR@k and NDCG@k of the same per-user scores in
bands of the test user's history length (HISTORY_BANDS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from tvrec.jobs.evaluation.splitting import Split

TopK = pl.DataFrame | Mapping[str, list[str]]
# The by-history slice's bands: (fewest, most) training pairs of a test user, None = no bound.
HISTORY_BANDS: tuple[tuple[int, int | None], ...] = ((1, 3), (4, 10), (11, 40), (41, None))


@dataclass(frozen=True)
class MetricConfig:
    k: int = 10
    bootstrap: int = 1_000  # resamples of test users for the NDCG interval
    bootstrap_seed: int = 0
    ci: float = 0.95


@dataclass
class Metrics:
    """Top-k accuracy over the test users (each user weighs the same)."""

    k: int
    users: int
    hr: float
    recall: float
    ndcg: float
    ndcg_ci: tuple[float, float]
    coverage: float
    recommended_shows: int
    catalogue: int

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "users": self.users,
            f"hr@{self.k}": self.hr,
            f"recall@{self.k}": self.recall,
            f"ndcg@{self.k}": self.ndcg,
            f"ndcg@{self.k}_ci95": list(self.ndcg_ci),
            "coverage": self.coverage,
            "recommended_shows": self.recommended_shows,
            "catalogue": self.catalogue,
        }


@dataclass
class BandMetrics:
    """HR@k and NDCG@k of the test users whose history length is in [low, high] (high None: no
    upper bound); both None when the band has no users."""

    k: int
    low: int
    high: int | None
    users: int
    hr: float | None
    ndcg: float | None

    @property
    def label(self) -> str:
        return f"{self.low}+" if self.high is None else f"{self.low}-{self.high}"

    def to_json(self) -> dict[str, Any]:
        return {
            "band": self.label,
            "min_events": self.low,
            "max_events": self.high,
            "users": self.users,
            f"hr@{self.k}": self.hr,
            f"ndcg@{self.k}": self.ndcg,
        }


def topk_frame(topk: TopK) -> pl.DataFrame:
    """A {user: [show, ...]} dict or a (user_id, rank, show_id, ...) frame as a frame."""
    if isinstance(topk, pl.DataFrame):
        return topk.select(
            pl.col("user_id").cast(pl.String),
            pl.col("rank").cast(pl.Int64),
            pl.col("show_id").cast(pl.String),
        )
    rows = [(u, r, s) for u, shows in topk.items() for r, s in enumerate(shows, start=1)]
    return pl.DataFrame(
        rows, schema={"user_id": pl.String, "rank": pl.Int64, "show_id": pl.String}, orient="row"
    )


def positions(topk: pl.DataFrame, split: Split, k: int, keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """Each test user's first k distinct unseen shows, with 1-based positions (user, show, pos,
    and the columns of `keep`)."""
    train_pairs = split.train.select("user_id", "show_id")
    return (
        topk.filter(pl.col("user_id").is_in(split.test["user_id"].unique().implode()))
        .join(train_pairs, on=["user_id", "show_id"], how="anti")
        .sort("user_id", "rank", maintain_order=True)
        .unique(subset=["user_id", "show_id"], keep="first", maintain_order=True)
        .with_columns(pos=pl.int_range(1, pl.len() + 1).over("user_id"))
        .filter(pl.col("pos") <= k)
        .select("user_id", "show_id", "pos", *keep)
    )


def per_user_scores(recs: pl.DataFrame, split: Split, k: int = 10) -> pl.DataFrame:
    """One row per test user: n_test, hits, recall and ndcg at k (zero for users without recs).

    `recs` holds (user_id, show_id, pos) rows as `positions` returns them.
    """
    truth = split.test.select("user_id", "show_id", hit=pl.lit(1))
    gains = (
        recs.join(truth, on=["user_id", "show_id"], how="inner")
        .group_by("user_id")
        .agg(hits=pl.len(), dcg=(1.0 / (pl.col("pos") + 1).log(2)).sum())
    )
    # ideal DCG: all min(k, n_test) relevant shows at the top
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    idcg_table = np.concatenate([[0.0], np.cumsum(discounts)])
    users = split.test.group_by("user_id").agg(n_test=pl.len())
    out = users.join(gains, on="user_id", how="left").with_columns(
        pl.col("hits").fill_null(0), pl.col("dcg").fill_null(0.0)
    )
    denom = out["n_test"].clip(upper_bound=k)
    idcg = pl.Series(idcg_table[denom.to_numpy()])
    return out.with_columns(recall=pl.col("hits") / denom, ndcg=pl.col("dcg") / idcg).sort(
        "user_id"
    )


def bootstrap_ci(
    values: np.ndarray, resamples: int = 1_000, seed: int = 0, ci: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of `values` over `resamples` resamples with replacement."""
    if values.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(resamples, values.size))  # (resamples, users)
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return (float(lo), float(hi))


def evaluate_topk(topk: TopK, split: Split, config: MetricConfig | None = None) -> Metrics:
    """Score a top-k table against `split.test` (train shows are dropped from each list first)."""
    cfg = config or MetricConfig()
    recs = positions(topk_frame(topk), split, cfg.k)
    users = per_user_scores(recs, split, cfg.k)
    catalogue = split.train["show_id"].n_unique()
    ndcg = users["ndcg"].to_numpy()
    n = users.height
    return Metrics(
        k=cfg.k,
        users=n,
        hr=float((users["hits"] > 0).mean()) if n else 0.0,
        recall=float(users["recall"].mean()) if n else 0.0,
        ndcg=float(ndcg.mean()) if n else 0.0,
        ndcg_ci=bootstrap_ci(ndcg, cfg.bootstrap, cfg.bootstrap_seed, cfg.ci),
        coverage=recs["show_id"].n_unique() / catalogue if catalogue else 0.0,
        recommended_shows=recs["show_id"].n_unique(),
        catalogue=catalogue,
    )


def history_lengths(split: Split) -> pl.DataFrame:
    """Each training user's history length: their number of training pairs (user_id, events)."""
    return split.train.group_by("user_id").agg(events=pl.col("show_id").n_unique())


def evaluate_by_history(
    topk: TopK, split: Split, config: MetricConfig | None = None
) -> list[BandMetrics]:
    """HR@k and NDCG@k per band of HISTORY_BANDS, from the per-user scores `evaluate_topk`
    averages: the test users grouped by their number of training pairs in `split.train`."""
    cfg = config or MetricConfig()
    users = per_user_scores(positions(topk_frame(topk), split, cfg.k), split, cfg.k)
    users = users.join(history_lengths(split), on="user_id", how="left")  # no train pairs: null
    return [_band(users, low, high, cfg.k) for low, high in HISTORY_BANDS]


def _band(users: pl.DataFrame, low: int, high: int | None, k: int) -> BandMetrics:
    """The band's mean HR and NDCG over its users (None, not a division by zero, when empty)."""
    events = pl.col("events")
    band = users.filter(events >= low if high is None else events.is_between(low, high))
    if band.is_empty():
        return BandMetrics(k, low, high, 0, None, None)
    hr = float(np.mean(band["hits"].to_numpy() > 0))
    return BandMetrics(k, low, high, band.height, hr, float(band["ndcg"].to_numpy().mean()))


__all__ = [
    "HISTORY_BANDS",
    "BandMetrics",
    "MetricConfig",
    "Metrics",
    "TopK",
    "bootstrap_ci",
    "evaluate_by_history",
    "evaluate_topk",
    "history_lengths",
    "per_user_scores",
    "positions",
    "topk_frame",
]
