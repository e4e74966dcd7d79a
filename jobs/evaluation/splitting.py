"""Splitting a dataset like an outside benchmark does.

Timed data is cut at the 90% quantile of event time (train before, test at/after); untimed data
is split 80/20 per event at random (numpy default_rng(seed)). Either way test users must appear
in train, test pairs exclude shows the user saw in train, and duplicate (user, show) events
collapse to one pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import polars as pl

from tvrec.pipelines.contract import Dataset

SplitKind = Literal["temporal", "random"]
# The columns of a split's train and test frames.
PAIR_COLUMNS = ("user_id", "show_id", "weight", "event_timestamp")


@dataclass(frozen=True)
class SplitConfig:
    """How `split` cuts events: time quantile (timed data) or random share (untimed data)."""

    test_quantile: float = 0.9  # timed: test = events at/after this quantile of event time
    train_share: float = 0.8  # untimed: each event goes to train with this probability
    seed: int = 42


@dataclass
class Split:
    """Train and test (user, show) pairs, one row per pair (columns PAIR_COLUMNS).

    `cutoff` is the time boundary of a temporal split (None for a random one); `catalogue` is
    every show seen in train, the items a model ranks.
    """

    train: pl.DataFrame
    test: pl.DataFrame
    kind: SplitKind
    cutoff: datetime | None = None
    seed: int = 42

    @property
    def catalogue(self) -> list[str]:
        return self.train["show_id"].unique().sort().to_list()

    @property
    def test_users(self) -> list[str]:
        return self.test["user_id"].unique().sort().to_list()

    @property
    def cold_shows(self) -> list[str]:
        """Test shows with no training event at all: item cold start."""
        seen = self.train["show_id"].unique().implode()
        return self.test.filter(~pl.col("show_id").is_in(seen))["show_id"].unique().sort().to_list()

    def cold_slice(self) -> Split:
        """The same split with only test pairs of cold shows (and their users)."""
        cold = self.test.filter(pl.col("show_id").is_in(pl.Series(self.cold_shows).implode()))
        return Split(self.train, cold, self.kind, self.cutoff, self.seed)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "seed": self.seed if self.kind == "random" else None,
            "train_pairs": self.train.height,
            "test_pairs": self.test.height,
            "test_users": self.test["user_id"].n_unique(),
            "train_users": self.train["user_id"].n_unique(),
            "catalogue": self.train["show_id"].n_unique(),
        }


@dataclass
class FewShot:
    """The few-shot protocol's users: held out of training entirely; at serving time a model
    gets each one's first `k` pairs (`support`) and is scored on the rest (`query`)."""

    users: list[str]
    support: pl.DataFrame  # PAIR_COLUMNS
    query: pl.DataFrame  # PAIR_COLUMNS
    k: int

    def held_out(self, sp: Split) -> Split:
        """`sp` without these users, in train and test: what everything trains on."""
        gone = pl.Series(self.users).implode()
        keep = lambda f: f.filter(~pl.col("user_id").is_in(gone))  # noqa: E731
        return Split(keep(sp.train), keep(sp.test), sp.kind, sp.cutoff, sp.seed)

    def scored(self, sp: Split) -> Split:
        """A split to score few-shot top-k tables on: the support as these users' train (their
        support shows are dropped from the lists), the query as test."""
        return Split(pl.concat([sp.train, self.support]), self.query, sp.kind, sp.cutoff, sp.seed)

    def describe(self) -> dict[str, Any]:
        return {"users": len(self.users), "k": self.k, "query_pairs": self.query.height}


def few_shot(sp: Split, n_users: int, k: int = 5, seed: int = 42) -> FewShot:
    """Up to `n_users` users (seeded) with more than `k` pairs: their first `k` pairs in time
    (in a seeded random order when the split is random) as support, the rest of their pairs,
    train and test, as query."""
    pairs = pl.concat([sp.train, sp.test])
    counts = pairs.group_by("user_id").len()
    eligible = counts.filter(pl.col("len") > k)["user_id"].sort().to_list()
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(eligible, size=min(n_users, len(eligible)), replace=False).tolist())
    mine = pairs.filter(pl.col("user_id").is_in(pl.Series(chosen, dtype=pl.String).implode()))
    order = rng.random(mine.height) if sp.kind == "random" else np.zeros(mine.height)
    mine = mine.with_columns(pl.Series("_draw", order)).sort(
        "user_id", "event_timestamp", "_draw", "show_id"
    )
    position = pl.int_range(pl.len()).over("user_id")
    support = mine.filter(position < k).drop("_draw")
    query = mine.filter(position >= k).drop("_draw")
    return FewShot([str(u) for u in chosen], support, query, k)


def _collapse(events: pl.DataFrame) -> pl.DataFrame:
    """One row per (user, show): the first time it happened and its largest weight."""
    return (
        events.group_by("user_id", "show_id")
        .agg(pl.col("weight").max(), pl.col("event_timestamp").min())
        .sort("event_timestamp", "user_id", "show_id")
        .select(PAIR_COLUMNS)
    )


def _filter_test(train: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """Test pairs of users known to train, minus shows the user already saw in train."""
    test = test.filter(pl.col("user_id").is_in(train["user_id"].unique().implode()))
    return test.join(train.select("user_id", "show_id"), on=["user_id", "show_id"], how="anti")


def time_quantile(timestamps: pl.Series, q: float) -> datetime:
    """The q-quantile of event times (linear interpolation, floored to the microsecond)."""
    micros = timestamps.dt.epoch("us").to_numpy()
    cut = math.floor(float(np.quantile(micros, q)))
    return pl.Series([cut]).cast(pl.Datetime("us", "UTC"))[0]


def cut_events(events: pl.DataFrame, kind: SplitKind, test_share: float, seed: int = 42) -> Split:
    """Split raw events (PAIR_COLUMNS at least) into collapsed, filtered train/test pairs.

    temporal: cutoff at the (1 - test_share) quantile of event time, train strictly before;
    random: each event goes to test with probability test_share (numpy default_rng(seed)).
    """
    events = events.select(PAIR_COLUMNS)
    cutoff: datetime | None = None
    if kind == "temporal":
        cutoff = time_quantile(events["event_timestamp"], 1.0 - test_share)
        in_train = events["event_timestamp"] < cutoff
    else:
        # one uniform draw per event, in the events' given (canonical) order
        draws = np.random.default_rng(seed).random(events.height)
        in_train = pl.Series(draws >= test_share)
    train = _collapse(events.filter(in_train))
    test = _filter_test(train, _collapse(events.filter(~in_train)))
    return Split(train=train, test=test, kind=kind, cutoff=cutoff, seed=seed)


def split(ds: Dataset, seed: int = 42, config: SplitConfig | None = None) -> Split:
    """The benchmark split of `ds`: temporal when its events are timed, random otherwise."""
    cfg = config or SplitConfig(seed=seed)
    if ds.timed and ds.events["event_timestamp"].n_unique() > 1:
        return cut_events(ds.events, "temporal", 1.0 - cfg.test_quantile, cfg.seed)
    return cut_events(ds.events, "random", 1.0 - cfg.train_share, cfg.seed)


__all__ = [
    "PAIR_COLUMNS",
    "FewShot",
    "Split",
    "SplitConfig",
    "SplitKind",
    "cut_events",
    "few_shot",
    "split",
    "time_quantile",
]
