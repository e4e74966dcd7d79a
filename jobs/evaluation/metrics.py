"""Top-k metrics of any model's top-k table against a split's test pairs.

`evaluate_topk(topk, split)`: HR@k, Recall@k, NDCG@k (with a bootstrap 95% interval over users)
and catalogue coverage, so peers and tvrec's own published recommendations are scored by the
same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from tvrec.jobs.evaluation.splitting import Split

TopK = pl.DataFrame | Mapping[str, list[str]]


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


__all__ = [
    "MetricConfig",
    "Metrics",
    "TopK",
    "bootstrap_ci",
    "evaluate_topk",
    "per_user_scores",
    "positions",
    "topk_frame",
]
