"""Does a published `confidence` say which recommendations hit? Checked on the held-out part.

The ensemble publishes each recommendation's `confidence`: the chance it is watched, calibrated
on the fusion's window (models/calibration.py), or with `calibrate = false` the share of its
heads' noisy draws keeping the show in the user's top ten. The window's horizon is not the
test part's, so the check is first whether it orders recommendations by how often they hit:

- by band: the test users' first k unseen recommendations in ten bands of equal count by
  confidence (tied values share a band, so a band may hold more or be missing), each band's
  range, mean confidence, hit rate (the share whose show the user watched in the test part)
  and mean rank: a reliability diagram, readable when most confidences are small;
- the AUC of confidence for a hit, over every recommendation, and within each rank (pairs of
  recommendations at the same place in different users' lists, pooled over ranks): whether it
  says more than the place alone, which already orders hits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tvrec.jobs.evaluation.metrics import positions, topk_frame
from tvrec.jobs.evaluation.splitting import Split

BANDS = 10  # bands of equal count (deciles of the confidence)


@dataclass
class ConfidenceCheck:
    """One model's confidence against the held-out hits (see the module's docstring)."""

    bands: pl.DataFrame  # band, low, high, recommendations, hit_rate, mean_confidence, mean_rank
    auc: float | None  # None when every recommendation hit, or none did
    auc_within_rank: float | None
    recommendations: int
    means: str | None = None  # what the model says its confidence is the chance of

    def to_json(self) -> dict[str, Any]:
        return {
            "bands": self.bands.to_dicts(),
            "auc": self.auc,
            "auc_within_rank": self.auc_within_rank,
            "recommendations": self.recommendations,
            "means": self.means,
        }


def confidence_check(
    topk: pl.DataFrame, split: Split, k: int = 10, means: str | None = None
) -> ConfidenceCheck:
    """`topk`: (user_id, rank, show_id, confidence) as published; scored like `evaluate_topk`
    (each test user's first k shows not seen in training). `means`: the model's own words for
    what its confidence is the chance of, for the report."""
    frame = topk_frame(topk).with_columns(topk["confidence"].cast(pl.Float64))
    recs = positions(frame, split, k, keep=("confidence",)).drop_nulls("confidence")
    truth = split.test.select("user_id", "show_id").unique().with_columns(hit=pl.lit(True))
    scored = recs.join(truth, on=["user_id", "show_id"], how="left").with_columns(
        pl.col("hit").fill_null(False)
    )
    conf, hit = scored["confidence"].to_numpy(), scored["hit"].to_numpy()
    pos = scored["pos"].to_numpy()
    within = _auc_within(conf, hit, pos)
    return ConfidenceCheck(_bands(scored), auc(conf, hit), within, len(hit), means)


def _bands(scored: pl.DataFrame) -> pl.DataFrame:
    # Deciles by the lowest rank of each value, so that ties never straddle two bands.
    first = pl.col("confidence").rank("min") - 1
    band = (first * BANDS / pl.len()).floor().cast(pl.Int64)
    return (
        scored.with_columns(band=band)
        .group_by("band")
        .agg(
            low=pl.col("confidence").min(),
            high=pl.col("confidence").max(),
            recommendations=pl.len(),
            hit_rate=pl.col("hit").mean(),
            mean_confidence=pl.col("confidence").mean(),
            mean_rank=pl.col("pos").mean(),
        )
        .sort("band")
    )


def auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """The chance a random positive scores above a random negative (ties count half)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    return _rank_sum(score, positive) / (n_pos * n_neg)


def _rank_sum(score: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney U of the positives: their summed mid-ranks (ties share the mean of their
    ranks) less n_pos (n_pos + 1) / 2."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos = int(positive.sum())
    return float(ranks[positive].sum() - n_pos * (n_pos + 1) / 2)


def _auc_within(score: np.ndarray, positive: np.ndarray, pos: np.ndarray) -> float | None:
    """AUC over pairs of a hit and a miss at the same rank, pooled over the ranks."""
    u = pairs = 0.0
    for p in np.unique(pos):
        at = pos == p
        n_pos = int(positive[at].sum())
        n_neg = int(at.sum()) - n_pos
        if n_pos and n_neg:
            u += _rank_sum(score[at], positive[at])
            pairs += n_pos * n_neg
    return u / pairs if pairs else None


def confidence_lines(checks: dict[str, ConfidenceCheck], k: int) -> list[str]:
    """The report's section: per model, a row per confidence band and the two AUCs."""
    lines: list[str] = []
    for name, check in checks.items():
        lines += [
            "",
            f"Confidence of {name}: its first {k} recommendations per test user "
            f"({check.recommendations:,}), by their published `confidence`, against whether "
            "the user watched the show in the test part. AUC of confidence for a hit: "
            f"{_fmt(check.auc)} over all; {_fmt(check.auc_within_rank)} among recommendations "
            "at the same rank (0.5: it says nothing the rank does not).",
            *_means_lines(check.means),
            "",
            "| confidence | mean confidence | recommendations | hit rate | mean rank |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [_band_row(r) for r in check.bands.iter_rows(named=True)]
    return lines


def _means_lines(means: str | None) -> list[str]:
    """The model's horizon, beside the test part's: a hit rate above the diagonal of the
    chart is a test part longer than the model's horizon, not a wrong order."""
    if not means:
        return []
    return [
        "",
        f"The model says its confidence is {means}. The test part has a horizon of its own "
        "(the split's): read the bands' hit rates for their order more than their size.",
    ]


def _band_row(r: dict[str, Any]) -> str:
    return (
        f"| {r['low']:.3f}–{r['high']:.3f} | {r['mean_confidence']:.3f} "
        f"| {r['recommendations']:,} | {r['hit_rate']:.3f} | {r['mean_rank']:.1f} |"
    )


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def confidence_chart(checks: dict[str, ConfidenceCheck], title: str, path: Path) -> None:
    """A reliability diagram: each band's hit rate against its mean confidence, a line per
    model, and the diagonal a confidence on the test part's own horizon would follow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    top = 0.0
    for name, check in checks.items():
        x, y = check.bands["mean_confidence"].to_numpy(), check.bands["hit_rate"].to_numpy()
        ax.plot(x, y, marker="o", label=name)
        top = max(top, float(x.max(initial=0.0)), float(y.max(initial=0.0)))
    lim = min(1.0, top * 1.05 + 0.02)
    ax.plot(
        [0, lim], [0, lim], linestyle="--", color="grey", linewidth=1, label="hit rate = confidence"
    )
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_xlabel("mean confidence of each tenth of the recommendations")
    ax.set_ylabel("hit rate in the test part")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["ConfidenceCheck", "auc", "confidence_chart", "confidence_check", "confidence_lines"]
