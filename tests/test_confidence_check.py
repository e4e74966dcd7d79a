"""The evaluation's check of a published `confidence` against held-out hits: known answers on
hand-made lists (a confidence that knows the hits, one that only repeats the rank, one that is
noise) and the report's section, chart and JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tvrec.jobs.evaluation import Split
from tvrec.jobs.evaluation.confidence import auc, confidence_check
from tvrec.jobs.evaluation.metrics import MetricConfig, Metrics
from tvrec.jobs.evaluation.report import EvaluationReport, ModelResult, markdown, write_report

T0 = datetime(2024, 1, 1, tzinfo=UTC)
USERS, K = 400, 10
MEANS = "the chance the show is watched within 9 days"


def frame(rows: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "show_id": [s for _, s in rows],
            "weight": [1.0] * len(rows),
            "event_timestamp": [T0] * len(rows),
        },
        schema_overrides={"event_timestamp": pl.Datetime("us", "UTC")},
    )


@pytest.fixture(scope="module")
def world() -> tuple[Split, pl.DataFrame]:
    """Each user is offered shows r0..r9 at ranks 1..10 and watched r_j in the test part with
    chance 0.5 / rank (a hit is likelier near the top); each saw "seen" in training, listed
    first (dropped before scoring)."""
    rng = np.random.default_rng(0)
    train, test, offered = [], [], []
    for u in range(USERS):
        user = f"u{u}"
        train.append((user, "seen"))
        offered.append((user, 0, "seen", 1.0))
        for rank in range(1, K + 1):
            show = f"r{rank - 1}"
            offered.append((user, rank, show, 0.0))
            if rng.random() < 0.5 / rank:
                test.append((user, show))
    topk = pl.DataFrame(
        offered, schema=["user_id", "rank", "show_id", "confidence"], orient="row"
    ).with_columns(pl.col("rank") + 1)
    return Split(train=frame(train), test=frame(test), kind="random"), topk


def hits(sp: Split, topk: pl.DataFrame) -> pl.Series:
    truth = sp.test.select("user_id", "show_id").with_columns(hit=pl.lit(True))
    joined = topk.join(truth, on=["user_id", "show_id"], how="left")
    return joined["hit"].fill_null(False)


def test_auc_known_values() -> None:
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True])) == 1.0
    assert auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([False, False, True, True])) == 0.0
    assert auc(np.full(4, 0.5), np.array([False, True, False, True])) == 0.5  # ties: half
    assert auc(np.array([0.1, 0.2]), np.array([True, True])) is None  # no miss to compare


def test_a_confidence_that_knows_the_hits(world: tuple[Split, pl.DataFrame]) -> None:
    sp, topk = world
    knows = topk.with_columns(confidence=hits(sp, topk).cast(pl.Float64) * 0.95)
    check = confidence_check(knows, sp, K)
    scored = sp.test["user_id"].n_unique() * K  # test users only; "seen" dropped, ten each
    assert check.recommendations == scored
    assert check.auc == 1.0 and check.auc_within_rank == 1.0
    bands = check.bands.sort("band")
    assert bands["hit_rate"].to_list() == [0.0, 1.0]  # two values: two bands, never split
    assert bands["low"].to_list() == [0.0, 0.95] and bands["high"].to_list() == [0.0, 0.95]
    assert bands["recommendations"].sum() == scored


def test_a_confidence_that_repeats_the_rank_says_nothing_within_it(
    world: tuple[Split, pl.DataFrame],
) -> None:
    """Confidence falling with the rank orders hits overall (they are likelier at the top) but
    not among recommendations at the same rank: AUC within rank 0.5 exactly (all tied)."""
    sp, topk = world
    by_rank = topk.with_columns(confidence=1.0 - (pl.col("rank") - 2) / K)
    check = confidence_check(by_rank, sp, K)
    assert check.auc is not None and check.auc > 0.7  # measured 0.767
    assert check.auc_within_rank == 0.5
    bands = check.bands.sort("band")
    rates = bands["hit_rate"].to_list()
    assert rates[-1] > 2 * rates[0]  # the top band holds rank 1
    assert bands["mean_rank"].to_list() == sorted(bands["mean_rank"].to_list(), reverse=True)


def test_noise_scores_about_a_half(world: tuple[Split, pl.DataFrame]) -> None:
    sp, topk = world
    rng = np.random.default_rng(1)
    noisy = topk.with_columns(confidence=pl.Series(rng.random(topk.height)))
    check = confidence_check(noisy, sp, K)
    assert check.auc is not None and check.auc_within_rank is not None
    assert abs(check.auc - 0.5) < 0.05 and abs(check.auc_within_rank - 0.5) < 0.05
    counts = check.bands["recommendations"]
    assert check.bands.height == 10 and counts.max() - counts.min() <= 1  # deciles, no ties
    assert check.bands["low"].to_list() == sorted(check.bands["low"].to_list())


def test_the_report_shows_it(world: tuple[Split, pl.DataFrame], tmp_path: Path) -> None:
    sp, topk = world
    knows = topk.with_columns(confidence=hits(sp, topk).cast(pl.Float64))
    metrics = Metrics(K, USERS, 0.5, 0.2, 0.3, (0.2, 0.4), 0.1, 10, 11)
    report = EvaluationReport(
        "hand-made",
        {"kind": "random", "cutoff": None, "seed": 42, "train_pairs": USERS}
        | {"train_users": USERS, "catalogue": 11, "test_pairs": sp.test.height}
        | {"test_users": sp.test["user_id"].n_unique()},
        [ModelResult("tvrec (ensemble)", metrics, 1.0)],
        confidence={"tvrec (ensemble)": confidence_check(knows, sp, MetricConfig().k, means=MEANS)},
    )
    md = markdown(report)
    assert "Confidence of tvrec (ensemble)" in md and "1.000 over all" in md
    assert "| 1.000–1.000 | 1.000 |" in md and "| 0.000–0.000 | 0.000 |" in md
    written = {p.name for p in write_report(report, tmp_path)}
    assert "confidence.png" in written
    data = report.to_json()["confidence"]["tvrec (ensemble)"]
    assert data["auc_within_rank"] == 1.0 and len(data["bands"]) == 2  # only 0 and 1 occur
    assert f"The model says its confidence is {MEANS}." in md and data["means"] == MEANS
