"""TAT-TV: a temporal/seasonal attention model over each user's watch sequence, with forecasts.

One network (`TemporalNet`), two parts, trained in two phases on the shared trainer:

    seasonal   SeasonalDecomposition: a show's expected views on a day k days after an
               origin, from its popularity (views in the trailing 7/30/365 days, as
               `show_popularity`) and its profiles (its views by weekday and by month, as
               `show_seasonality`):

                   log λ_s = level_s + decay_s * log1p(k)
                             + weekly_s(weekday) + monthly(30-day phase) + yearly_s(month)

               weekly_s  = a learned weekday effect + a * log(the show's weekday shares over
                           the catalogue's),
               monthly   = a learned 30-day cycle (sin/cos),
               yearly_s  = c * log(the catalogue's views per show-day by month over its mean)
                           + log(the show's views in a month over what its rate and the
                           catalogue's pattern predict for its days on air that month), months
                           it was never on air saying nothing,
               level_s   = log of the show's deseasonalised recent rate: each trailing window's
                           views over the seasonal exposure of its days on air in it, the
                           three mixed by weights from its features (a busy show trusts its
                           week, a quiet one its year), plus a learned correction; decay_s
                           its drift after the origin.
               Phase "seasonal": Poisson likelihood of daily views after origins drawn from the
               training days, each show weighing about the same.
    sequence   a time-causal transformer over the user's first watches:
                   event token  = show vector + seasonal encoding of its timestamp
                                  (7-, 30- and 365-day phases as sin/cos)
                   time_causal  = blocks of multi-head temporal attention: an event attends to
                                  the events at or before its own time, with a learned bias per
                                  head for the bucketed gap between them
                   read_out     = a query at time T (its own seasonal encoding) attends to the
                                  events strictly before T (gap bias again), scaled by a learned
                                  confidence for the time since the user's last event: the user
               Phase "train": next show, sampled softmax over the catalogue (uniform negatives
               shared by the batch, shows watched before T left out), with

                   score(u, s, T) = <user_T, show_s> + beta * log λ_s(day of T) + w . x_s + b_s

               x_s the show's popularity features that day; show vectors are shared by the
               input tokens and the output layer; log λ comes from the frozen seasonal part
               (`_signals`: one row per training day).

Point in time: a training query at time T reads only events strictly before T (ties
excluded), its log λ and x only views before the start of T's day; the popularity and profiles
at an origin count only views before it. On an untimed log (every event at one instant, the
anime export) no event precedes another: every query is empty, the model learns the show prior
alone and serves every user by it (`context_trained` False).

Serving: show = [show vector, its prior on the first day after the as-of], user = [user at the
as-of, 1] (no history: [0, 1], the trending prior), so the index's inner product is the score.
Forecasts (`forecast`, `forecast_daily`), the learned components (`seasonal_components`) and
the release-timing table (`release_timing`) read the seasonal part at the as-of, whose
popularity and profiles are Feast's `temporal_v1` rows as of the as-of when the job hands them
in (`needs_content`; the calendar counts the same from the events, to the float). The GPU
profile multiplies the sequence batch and runs under bf16 autocast; losses stay float32.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from .base import ModelConfig, Recommender, TrainingData, UserTable
from .layers import FastDropout, bucket_lookup
from .losses import fp32, masked_info_nce
from .trainer import Rngs, StepResult, TrainTask

DAY_US = 86_400_000_000  # microseconds per day
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BACK_DAYS = 365  # how far before an origin its trailing windows reach
WINDOWS = (7, 30, 365)  # trailing popularity windows, days (show_popularity's)
N_CELLS = 12 * 7  # (month, weekday) calendar cells, month-major
N_FEATURES = 8  # per (origin, show) features of the level correction (`ShowState.x`)
PERIODS_DAYS = (7, 30, 365)  # seasonal encodings of timestamps
HARMONICS = (1, 2)
# gap buckets between two events, seconds: < 1 min (ties), 10 min, 1 h, 6 h, 1 d, 3 d, 7 d, 30 d,
# 90 d, 1 y, longer
GAP_EDGES_S = (60, 600, 3_600, 21_600, 86_400, 259_200, 604_800, 2_592_000, 7_776_000, 31_536_000)
N_GAPS = len(GAP_EDGES_S) + 1  # bucket ids 0..N_GAPS-1; the read-out's sink key uses N_GAPS
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class TemporalConfig(ModelConfig):
    dim: int = Field(64, ge=4, description="show / user vector size")
    heads: int = Field(2, ge=1)
    layers: int = Field(2, ge=1, description="time-causal attention blocks over the events")
    ffn_mult: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    history_len: int = Field(50, ge=2, description="events in a training window / served user")
    targets_per_window: int = Field(25, ge=1, description="the window's last events as targets")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1, description="windows per step; the GPU profile multiplies it")
    windows_per_epoch: int | None = Field(
        4096, ge=1, description="windows an epoch draws (without replacement) when there are "
        "more; None: all. Bounds an epoch's cost on a big log (MovieLens-100k has ~4,000)",
    )  # fmt: skip
    advance_epochs: int = Field(
        5, ge=0, description="when advanced to a later as-of (`[models.ensemble] advance`): "
        "epochs of fine-tuning on the windows whose newest target the weights never saw; 0: "
        "the weights as trained. Measured (MovieLens, advanced): alone among the ensemble's "
        "candidates 0.228 with 0, 0.252 with 2, 0.257 with 5; the ensemble 0.257, 0.263, 0.266",
    )  # fmt: skip
    negatives: int = Field(512, ge=1, description="uniform negatives shared by a step")
    lr: float = Field(5e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    # the seasonal decomposition
    horizon_days: int = Field(30, ge=1, description="days after an origin the Poisson fit sees")
    history_days: int = Field(1095, ge=7, description="training window: days before the as-of")
    min_history_days: int = Field(14, ge=1, description="shorter logs: no seasonal fit")
    seasonal_epochs: int = Field(5, ge=0)
    seasonal_steps: int = Field(30, ge=1, description="steps per seasonal epoch")
    origins_per_step: int = Field(8, ge=1)
    seasonal_lr: float = Field(2e-2, gt=0)
    rate_floor: float = Field(
        0.1, gt=0, description="Poisson weights: 1 / (the show's yearly daily views + this)"
    )
    profile_prior: float = Field(
        20.0, gt=0, description="pseudo-views shrinking a show's shares to the catalogue's"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TemporalConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if self.targets_per_window > self.history_len:
            raise ValueError(
                f"targets_per_window ({self.targets_per_window}) must be at most history_len "
                f"({self.history_len})"
            )
        return self


# ---- calendar ---------------------------------------------------------------------------------
def to_us(moment: datetime) -> int:
    """Microseconds since 1970-01-01 UTC (naive datetimes are UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return (moment - EPOCH) // timedelta(microseconds=1)


def weekday_month(ts_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTC weekday (Monday 0) and month (January 0) of int64 microsecond times, (n,) each."""
    days = np.floor_divide(ts_us, DAY_US)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    month = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    return weekday.astype(np.int64), month.astype(np.int64)


def day_cells(start_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calendar of day bins starting at `start_us` (any shape), taken at each bin's midpoint:
    the (month, weekday) cell id month * 7 + weekday (long) and the 30-day phase in [0, 1)."""
    mid = np.asarray(start_us, dtype=np.int64) + DAY_US // 2
    weekday, month = weekday_month(mid.ravel())
    phase = np.mod(mid, 30 * DAY_US) / (30 * DAY_US)
    return (month * 7 + weekday).reshape(mid.shape), phase.astype(np.float32)


@dataclass
class ShowState:
    """Every show as seen from o origins: what the seasonal decomposition reads."""

    views: torch.Tensor  # (o, n, 3) float: views in the trailing 7/30/365 days
    age: torch.Tensor  # (o, n) long: days on air before the origin (0 = no view yet), <= 365
    x: torch.Tensor  # (o, n, N_FEATURES) float: the level correction's inputs
    week_ratio: torch.Tensor  # (o, n, 7) float: log of the show's weekday shares / catalogue's
    month_ratio: torch.Tensor  # (o, n, 12) float: its month rates / what the catalogue predicts
    season: torch.Tensor  # (o, 1, 12) float: log of the catalogue's relative rate by month

    def to(self, device: torch.device) -> ShowState:
        return ShowState(*(getattr(self, f.name).to(device) for f in fields(self)))

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name).cpu() for f in fields(self)}


@dataclass
class Days:
    """Day bins relative to o origins: their calendar cells and 30-day phases, and for future
    days their distance from the origin."""

    cells: torch.Tensor  # (o, m) long: month * 7 + weekday
    phase: torch.Tensor  # (o, m) float in [0, 1)
    steps: torch.Tensor  # (o, m) float: days after the origin (0 = the origin's own day)

    def to(self, device: torch.device) -> Days:
        return Days(self.cells.to(device), self.phase.to(device), self.steps.to(device))


def days_after(origin_us: np.ndarray, count: int) -> Days:
    """The `count` day bins starting at each origin (o,): (o, count)."""
    steps = np.arange(count, dtype=np.int64)
    cells, phase = day_cells(origin_us[:, None] + steps[None, :] * DAY_US)
    return Days(
        torch.as_tensor(cells),
        torch.as_tensor(phase),
        torch.as_tensor(steps, dtype=torch.float32).expand(len(origin_us), count),
    )


def days_before(origin_us: np.ndarray) -> Days:
    """The BACK_DAYS day bins before each origin (o,), most recent first: (o, BACK_DAYS)."""
    back = np.arange(1, BACK_DAYS + 1, dtype=np.int64)
    cells, phase = day_cells(origin_us[:, None] - back[None, :] * DAY_US)
    steps = torch.as_tensor(-back, dtype=torch.float32).expand(len(origin_us), BACK_DAYS)
    return Days(torch.as_tensor(cells), torch.as_tensor(phase), steps)


def state_from_counts(
    views: np.ndarray,
    total: np.ndarray,
    age: np.ndarray,
    weekday_counts: np.ndarray,
    month_counts: np.ndarray,
    month_days: np.ndarray,
    prior: float,
) -> ShowState:
    """A ShowState from per (origin, show) counts: views (o, n, 3), total (o, n), age (o, n)
    days on air, weekday (o, n, 7) and month (o, n, 12) view counts before the origin, and
    the days of each month the show was on air before it (o, n, 12)."""
    rates = views / np.asarray(WINDOWS, dtype=np.float64)  # (o, n, 3) per day
    trend = views[..., 0] / np.maximum(1.0, views[..., 1] * 7.0 / 30.0)  # show_popularity's
    busy = rates[..., :2].sum(1, keepdims=True)  # (o, 1, 2) the catalogue's 7- and 30-day rates
    momentum = np.log((busy[..., 0] + 1.0) / (busy[..., 1] + 1.0))  # (o, 1) busier than usual
    x = np.stack(
        [
            *np.log1p(rates).transpose(2, 0, 1),
            np.log1p(total) / 5.0,
            trend / 2.0,
            np.log1p(age) / 5.0,
            (age > 0).astype(np.float64),
            np.broadcast_to(momentum, total.shape),
        ],
        axis=-1,
    )  # (o, n, N_FEATURES)
    return ShowState(
        views=torch.as_tensor(views, dtype=torch.float32),
        age=torch.as_tensor(age, dtype=torch.long),
        x=torch.as_tensor(x, dtype=torch.float32),
        week_ratio=_share_ratio(weekday_counts, prior),
        month_ratio=_month_ratio(month_counts, month_days, prior),
        season=_catalogue_season(month_counts, month_days),
    )


def _share_ratio(counts: np.ndarray, prior: float) -> torch.Tensor:
    """log(show share / catalogue share) per category, the show's shares shrunk towards the
    catalogue's by `prior` pseudo-views: counts (o, n, c) -> (o, n, c) float32; a show
    without views gets 0 everywhere."""
    catalogue = counts.sum(axis=1, keepdims=True) + 1.0  # (o, 1, c), +1: no empty category
    catalogue = catalogue / catalogue.sum(axis=-1, keepdims=True)
    shows = counts.sum(axis=-1, keepdims=True)  # (o, n, 1)
    shrunk = (counts + prior * catalogue) / (shows + prior)
    return torch.as_tensor(np.log(shrunk / catalogue), dtype=torch.float32)


def _month_pattern(counts: np.ndarray, days: np.ndarray) -> np.ndarray:
    """The catalogue's views per show-day in each month over its mean (o, 1, 12): 1 where a
    month was never on air (nothing known), pulled to 1 by a month's worth of pseudo-days."""
    views, exposure = counts.sum(1, keepdims=True), days.sum(1, keepdims=True)  # (o, 1, 12)
    mean = views.sum(-1, keepdims=True) / np.maximum(exposure.sum(-1, keepdims=True), 1.0)
    pseudo = 30.0 * np.maximum(exposure.sum(-1, keepdims=True), 1.0) / 365.0  # (o, 1, 1)
    expected = (exposure + pseudo) * mean  # (o, 1, 12)
    return np.where(expected > 0, (views + pseudo * mean) / np.maximum(expected, 1e-12), 1.0)


def _catalogue_season(counts: np.ndarray, days: np.ndarray) -> torch.Tensor:
    """log `_month_pattern`: (o, 1, 12) float32."""
    return torch.as_tensor(np.log(_month_pattern(counts, days)), dtype=torch.float32)


def _month_ratio(counts: np.ndarray, days: np.ndarray, prior: float) -> torch.Tensor:
    """log of a show's views in each month against what its overall daily rate and the
    catalogue's month pattern predict for the days it was on air that month, both sides
    given `prior` pseudo-views spread over its days: (o, n, 12) float32. A month the show was
    never on air in says nothing (0), nor does a show without views: a single December in
    the log is not yet a yearly pattern of a show seen only since January."""
    on_air = days.sum(-1, keepdims=True)  # (o, n, 1)
    rate = counts.sum(-1, keepdims=True) / np.maximum(on_air, 1.0)  # (o, n, 1) daily views
    expected = days * rate * _month_pattern(counts, days)  # (o, n, 12)
    pseudo = prior * days / np.maximum(on_air, 1.0)  # (o, n, 12)
    ratio = np.log((counts + pseudo + 1e-9) / (expected + pseudo + 1e-9))
    return torch.as_tensor(ratio, dtype=torch.float32)


@dataclass
class ShowCalendar:
    """Every show's daily views on a grid of day bins that ends at the as-of: bin j covers
    [as_of - (J - j) days, as_of - (J - j - 1) days), j = -BACK_DAYS .. J - 1, and grid point
    j (the instant the bin starts) is an origin. Counting is strictly before each origin, as
    the feature builders count (pipelines/features/temporal.py)."""

    as_of_us: int
    days: int  # J: training bins 0..J-1 (origins and targets)
    counts: np.ndarray  # (n, BACK_DAYS + J) int32: views per bin from bin -BACK_DAYS on
    cum: np.ndarray  # (n, BACK_DAYS + J + 1) int64: views before each grid point (all earlier)
    first_bin: np.ndarray  # (n,) int64: bin of the show's first view; J + BACK_DAYS: none
    points: np.ndarray  # (Q,) int64 ascending grid points of profile snapshots (every 7 days to J)
    profiles: np.ndarray  # (Q, n, 19) float32: weekday (7) and month (12) views before each point
    first_day: int  # the earliest bin with a view (<= -BACK_DAYS)
    month_days: np.ndarray  # (J - first_day + 1, 12) int64: bins per month from first_day on

    @classmethod
    def build(
        cls, shows: np.ndarray, ts_us: np.ndarray, n_shows: int, as_of_us: int, history_days: int
    ) -> ShowCalendar:
        """From the views (show row (m,), time (m,) int64 us, all before the as-of)."""
        first = int(ts_us.min()) if len(ts_us) else as_of_us - DAY_US
        span = -(-(as_of_us - first) // DAY_US)  # ceil: days from the first view to the as-of
        days = int(max(1, min(history_days, span)))
        start = as_of_us - (days + BACK_DAYS) * DAY_US  # grid point -BACK_DAYS
        width = BACK_DAYS + days
        bins = np.floor_divide(ts_us - start, DAY_US)  # (m,) may be < 0: before the grid
        on_grid = bins >= 0
        flat = shows[on_grid] * width + bins[on_grid]
        counts = np.bincount(flat, minlength=n_shows * width).reshape(n_shows, width)
        earlier = np.bincount(shows[~on_grid], minlength=n_shows)  # (n,) views before the grid
        cum = np.zeros((n_shows, width + 1), dtype=np.int64)
        cum[:, 0] = earlier
        cum[:, 1:] = earlier[:, None] + np.cumsum(counts, axis=1)
        first_bin = np.full(n_shows, days + BACK_DAYS, dtype=np.int64)
        np.minimum.at(first_bin, shows, bins - BACK_DAYS)  # grid bin index (j), may be < -BACK
        back = 7 * np.arange(-(-days // 7) + 1, dtype=np.int64)[::-1]
        points = days - back  # ascending, every 7 days, the first <= 0 and the last J
        profiles = _profiles(shows, ts_us, n_shows, as_of_us - (days - points) * DAY_US)
        first_day = int(min(first_bin.min(), -BACK_DAYS))
        starts = as_of_us - (days - np.arange(first_day, days, dtype=np.int64)) * DAY_US
        month = day_cells(starts)[0] // 7  # (J - first_day,) month of every bin
        month_days = np.zeros((days - first_day + 1, 12), dtype=np.int64)
        month_days[1:] = np.cumsum(np.eye(12, dtype=np.int64)[month], axis=0)
        return cls(
            as_of_us, days, counts.astype(np.int32), cum, first_bin, points, profiles,
            first_day, month_days,
        )  # fmt: skip

    @property
    def n_shows(self) -> int:
        return self.counts.shape[0]

    def origin_us(self, origins: np.ndarray) -> np.ndarray:
        """The instants of grid points `origins` (o,): (o,) int64 us."""
        return self.as_of_us - (self.days - np.asarray(origins, dtype=np.int64)) * DAY_US

    def bin_of(self, ts_us: np.ndarray) -> np.ndarray:
        """The grid bin holding each instant (any shape), int64."""
        return self.days + np.floor_divide(ts_us - self.as_of_us, DAY_US)

    def state(self, origins: np.ndarray, prior: float) -> ShowState:
        """Every show as seen from grid points `origins` (o,) in 0..J."""
        j = np.asarray(origins, dtype=np.int64)
        at = self.cum[:, BACK_DAYS + j]  # (n, o) views before each origin
        views = np.stack([at - self.cum[:, BACK_DAYS + j - w] for w in WINDOWS], -1)  # (n, o, 3)
        age = np.clip(j[None, :] - self.first_bin[:, None], 0, BACK_DAYS)  # (n, o)
        point = np.searchsorted(self.points, j, side="right") - 1  # (o,) latest snapshot
        snapshot = self.profiles[point]  # (o, n, 19)
        return state_from_counts(
            views.transpose(1, 0, 2).astype(np.float64),
            at.T.astype(np.float64),
            age.T,
            snapshot[..., :7].astype(np.float64),
            snapshot[..., 7:].astype(np.float64),
            self.days_on_air(self.points[point]).astype(np.float64),
            prior,
        )

    def days_on_air(self, origins: np.ndarray) -> np.ndarray:
        """Days of each month every show was on air (from its first view) before each origin:
        (o, n, 12) int64."""
        j = np.asarray(origins, dtype=np.int64)
        first = np.clip(self.first_bin[None, :], self.first_day, j[:, None])  # (o, n)
        return (
            self.month_days[j - self.first_day][:, None, :]
            - self.month_days[first - self.first_day]
        )

    def targets(self, origins: np.ndarray, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views in the `horizon` bins from each origin, (o, n, horizon) float, and which of
        those bins lie before the as-of, (o, 1, horizon) bool."""
        j = np.asarray(origins, dtype=np.int64)[:, None] + np.arange(horizon)[None, :]  # (o, h)
        known = j < self.days
        views = self.counts[:, BACK_DAYS + np.minimum(j, self.days - 1)]  # (n, o, h)
        return (
            torch.as_tensor(views.transpose(1, 0, 2), dtype=torch.float32),
            torch.as_tensor(known[:, None, :]),
        )

    def first_weeks(self) -> tuple[np.ndarray, np.ndarray]:
        """The premieres in the log: each show's views on its first 7 days on air (n, 7)
        float64 and the weekday of its first day (n,) int64. NaN and -1 for shows that were
        not new: first seen within 30 days of the log's first view (on air before the log
        began, for all one knows) or before the grid, or less than a week before the as-of."""
        views, weekday = np.full((self.n_shows, 7), np.nan), np.full(self.n_shows, -1)
        first = self.first_bin
        new = (first >= max(-BACK_DAYS, int(first.min()) + 30)) & (first + 7 <= self.days)
        rows = np.flatnonzero(new)
        at = BACK_DAYS + first[rows]
        views[rows] = self.counts[rows[:, None], at[:, None] + np.arange(7)[None, :]]
        cells, _ = day_cells(self.origin_us(first[rows]))
        weekday[rows] = cells % 7
        return views, weekday


def _profiles(
    shows: np.ndarray, ts_us: np.ndarray, n_shows: int, point_us: np.ndarray
) -> np.ndarray:
    """Weekday and month view counts of every show before each of the instants `point_us`
    (Q,) ascending: (Q, n_shows, 19) float32."""
    q = np.searchsorted(point_us, ts_us, side="right")  # first point strictly after each view
    keep = q < len(point_us)
    weekday, month = weekday_month(ts_us[keep])
    base = (q[keep] * n_shows + shows[keep]) * 19
    size = len(point_us) * n_shows * 19
    counts = np.bincount(base + weekday, minlength=size)
    counts += np.bincount(base + 7 + month, minlength=size)
    return np.cumsum(counts.reshape(len(point_us), n_shows, 19), axis=0).astype(np.float32)


# ---- the seasonal decomposition ---------------------------------------------------------------
class SeasonalDecomposition(nn.Module):
    """log λ_s(day) = level + decay * log1p(k) + weekly + monthly + yearly (module docstring):
    (ShowState of o origins, the 365 days before each, the days to predict) -> (o, n, m)."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.window_mix = nn.Parameter(torch.zeros(len(WINDOWS)))  # softmax logits of 7/30/365
        self.log_floor = nn.Parameter(torch.tensor(math.log(1e-3)))  # rate of a show never seen
        self.correction = nn.Sequential(
            nn.Linear(N_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, 2 + len(WINDOWS))
        )  # -> level correction, decay, the show's own window-mix logits
        nn.init.zeros_(self.correction[-1].weight)
        nn.init.zeros_(self.correction[-1].bias)
        self.weekday = nn.Parameter(torch.zeros(7))  # global weekday effect (log)
        self.weekday_profile = nn.Parameter(torch.tensor(1.0))  # weight of the show's own
        self.season_weight = nn.Parameter(torch.tensor(1.0))  # of the catalogue's month pattern
        self.cycle = nn.Parameter(torch.zeros(4))  # 30-day cycle: sin/cos of 1x and 2x the phase

    # the components, each in log space
    def weekly(self, state: ShowState) -> torch.Tensor:
        """(o, n, 7): the global weekday effect (centred) plus the show's own profile."""
        return self.weekday - self.weekday.mean() + self.weekday_profile * state.week_ratio

    def yearly(self, state: ShowState) -> torch.Tensor:
        """(o, n, 12): the catalogue's month pattern (what the history shows, nothing where a
        month was never seen), learned weight, plus the show's own departure from it at
        weight 1, its evidence weighed by the `profile_prior` shrinkage alone. A fit cannot
        learn how far a show's yearly pattern recurs from a log of a year or two: a month's
        profile only says something once that month has been seen, so no training target
        tests it before the second year (the small world fitted that weight at 0.1 and
        forecast its December shows' second December 10x short)."""
        return self.season_weight * state.season + state.month_ratio

    def monthly(self, phase: torch.Tensor) -> torch.Tensor:
        """The global 30-day cycle at `phase` (any shape) in [0, 1)."""
        angle = 2 * math.pi * phase
        waves = torch.stack([angle.sin(), angle.cos(), (2 * angle).sin(), (2 * angle).cos()], -1)
        return waves @ self.cycle

    def seasonal(self, weekly: torch.Tensor, yearly: torch.Tensor, days: Days) -> torch.Tensor:
        """weekly (o, n, 7) + yearly (o, n, 12) + the 30-day cycle on `days` (o, m): (o, n, m)."""
        o, n, m = weekly.shape[0], weekly.shape[1], days.cells.shape[1]
        index = lambda t: t[:, None, :].expand(o, n, m)  # noqa: E731  (o, m) -> (o, n, m)
        week = weekly.gather(2, index(days.cells % 7))
        year = yearly.gather(2, index(days.cells // 7))
        return week + year + self.monthly(days.phase)[:, None, :]

    def level(
        self,
        state: ShowState,
        past: Days,
        weekly: torch.Tensor,
        yearly: torch.Tensor,
        mix: torch.Tensor,
    ) -> torch.Tensor:
        """(o, n): log of the deseasonalised recent daily rate. Each trailing window's views
        are divided by its seasonal exposure, the sum over the days the show was on air in it
        of exp(weekly + yearly + monthly); the three rates are mixed by `mix` (o, n, 3), each
        show's weights (a busy show can trust its last week, a quiet one needs the year)."""
        o, n = state.age.shape
        weight = torch.exp(self.monthly(past.phase).clamp(-10, 10))  # (o, 365) recent first
        cells = F.one_hot(past.cells, N_CELLS).to(weight.dtype) * weight[..., None]  # (o, 365, 84)
        exposure = torch.cat([cells.new_zeros(o, 1, N_CELLS), cells.cumsum(1)], 1)  # (o, 366, 84)
        year, week = yearly.clamp(-10, 10).exp(), weekly.clamp(-10, 10).exp()
        rate = state.views.new_zeros(o, n)
        for i, window in enumerate(WINDOWS):
            days = seasonal_exposure(exposure, state.age.clamp(max=window), year, week)
            rate = rate + mix[..., i] * state.views[..., i] / days.clamp(min=0.25)
        return torch.log(rate + self.log_floor.exp())

    def heads(self, state: ShowState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From each show's features: its level correction and decay (o, n) and its window
        mix (o, n, 3)."""
        out = self.correction(state.x)  # (o, n, 5)
        return out[..., 0], out[..., 1], torch.softmax(self.window_mix + out[..., 2:], -1)

    def forward(self, state: ShowState, past: Days, future: Days) -> torch.Tensor:
        """log λ (o, n, m) of every show on the `future` days of each origin."""
        weekly, yearly = self.weekly(state), self.yearly(state)  # (o, n, 7), (o, n, 12)
        correction, decay, mix = self.heads(state)  # (o, n), (o, n), (o, n, 3)
        level = self.level(state, past, weekly, yearly, mix)  # (o, n)
        drift = torch.tanh(decay)[..., None] * torch.log1p(future.steps)[:, None, :]  # (o, n, m)
        log_rate = (level + correction)[..., None] + drift + self.seasonal(weekly, yearly, future)
        return log_rate.clamp(max=20.0)


def seasonal_exposure(
    exposure: torch.Tensor, on_air: torch.Tensor, year: torch.Tensor, week: torch.Tensor
) -> torch.Tensor:
    """(o, n): each show's seasonal exposure over its `on_air` (o, n) most recent days, the
    sum over (month, weekday) cells of exposure[o, on_air, cell] * year[month] * week[weekday];
    `exposure` (o, days + 1, 84) cumulative, month-major; year (o, n, 12), week (o, n, 7).

    Most shows aired through the whole window, so they read one row of `exposure` per origin:
    that is one small batched product per origin. Only the shows that premiered inside it
    (on_air below the longest) read their own row. (Gathering an (o, n, 84) row for every show
    and multiplying it by the (o, n, 84) outer product of year and week took 3x as long at
    o 32, n 1,500, forward and backward: bench/bench_step_overheads.py.)"""
    o, rows = exposure.shape[0], exposure.shape[1]
    cells = exposure.reshape(o, rows, 12, 7)  # (o, days + 1, month, weekday)
    longest = on_air.amax(1)  # (o,) most shows' row
    common = cells[torch.arange(o, device=cells.device), longest]  # (o, 12, 7)
    days = (torch.bmm(week, common.transpose(1, 2)) * year).sum(-1)  # (o, n)
    short = on_air < longest[:, None]  # (o, n) premiered inside the window
    if bool(short.any()):
        at_o, at_n = short.nonzero(as_tuple=True)  # (k,) each
        own = cells[at_o, on_air[at_o, at_n]]  # (k, 12, 7)
        inner = (own * week[at_o, at_n][:, None, :]).sum(-1)  # (k, 12)
        days = days.index_put((at_o, at_n), (inner * year[at_o, at_n]).sum(-1))
    return days


def rows_at(table: torch.Tensor, days: torch.Tensor, shows: torch.Tensor) -> torch.Tensor:
    """table[days[:, None], shows]: (U, K, f) of a contiguous (J, n, f) table, as one
    `index_select` of flat rows (2.4x faster than advanced indexing at U 646, K 512, f 9:
    bench/bench_step_overheads.py)."""
    flat = table.reshape(-1, table.shape[-1])  # (J * n, f), a view
    at = (days[:, None] * table.shape[1] + shows[None, :]).reshape(-1)  # (U * K,)
    return flat.index_select(0, at).view(len(days), len(shows), table.shape[-1])


@fp32
def poisson_nll(
    log_rate: torch.Tensor, views: torch.Tensor, known: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Poisson negative log-likelihood (up to a constant) of `views` under rates exp(log_rate),
    each entry weighted by `weight`, averaged over the `known` entries (masks and weights
    broadcast against the (o, n, m) rates)."""
    nll = (log_rate.exp() - views * log_rate) * (known * weight)
    return nll.sum() / (known.expand_as(nll).sum() * 1.0).clamp(min=1.0)


# ---- the sequence encoder ---------------------------------------------------------------------
class SeasonalTimeEncoding(nn.Module):
    """Timestamps (int64 us, any shape) -> (..., dim): sin/cos of their 7-, 30- and 365-day
    phases (and twice those), projected."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * len(PERIODS_DAYS) * len(HARMONICS), dim)

    @staticmethod
    def phases(ts_us: torch.Tensor) -> torch.Tensor:
        """(..., 12) float32: the phase angles' sin and cos, exact for any era (int64 mod)."""
        waves = []
        for period in PERIODS_DAYS:
            span = period * DAY_US
            frac = torch.remainder(ts_us, span).double() / span  # (...,) in [0, 1)
            for h in HARMONICS:
                angle = 2 * math.pi * h * frac
                waves += [angle.sin(), angle.cos()]
        return torch.stack(waves, -1).float()

    def forward(self, ts_us: torch.Tensor) -> torch.Tensor:
        return self.proj(self.phases(ts_us))


def gap_buckets(later_us: torch.Tensor, earlier_us: torch.Tensor) -> torch.Tensor:
    """Bucket ids (long) of the gaps later - earlier (broadcast), by GAP_EDGES_S; a gap under a
    minute (ties included, and negative gaps, which masks hide) is bucket 0."""
    edges = torch.tensor(GAP_EDGES_S, dtype=torch.long, device=later_us.device) * 1_000_000
    return torch.bucketize(later_us - earlier_us, edges, right=True)


class TemporalAttention(nn.Module):
    """Multi-head attention whose logits get a learned bias per head and gap bucket; keys a
    query may not see are masked out (each query must be allowed at least one key)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.gap_bias = nn.Parameter(torch.zeros(N_GAPS + 1, heads))  # + the read-out's sink

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, allowed: torch.Tensor, gaps: torch.Tensor
    ) -> torch.Tensor:
        """queries (b, q, d), keys (b, k, d), allowed (b, q, k) bool, gaps (b, q, k) long
        bucket ids (`gap_buckets`; N_GAPS: the sink) -> (b, q, d)."""
        b, nq, d = queries.shape
        split = lambda t: t.view(b, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q = split(self.to_q(queries))  # (b, h, q, d_h)
        k, v = (split(t) for t in self.to_kv(keys).chunk(2, -1))  # (b, h, k, d_h) each
        bias = bucket_lookup(self.gap_bias, gaps).permute(0, 3, 1, 2)  # (b, h, q, k)
        mask = bias.masked_fill(~allowed[:, None], float("-inf")).to(q.dtype)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(attended.transpose(1, 2).reshape(b, nq, d))  # (b, q, d)


class TemporalBlock(nn.Module):
    """Pre-norm temporal attention (self, or to a memory) and a feed-forward layer."""

    def __init__(self, dim: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = TemporalAttention(dim, heads, dropout)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim)
        )
        self.drop = FastDropout(dropout)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor, gaps: torch.Tensor
    ) -> torch.Tensor:
        """x (b, q, d) attends to memory (b, k, d) -> (b, q, d)."""
        x = x + self.drop(self.attention(self.norm_q(x), self.norm_kv(memory), allowed, gaps))
        return x + self.drop(self.ffn(self.norm_ffn(x)))


@dataclass
class EventBatch:
    """Users' events as padded rows, oldest first: show row + 1 (0 = padding), time, validity."""

    shows: torch.Tensor  # (b, L) long
    times: torch.Tensor  # (b, L) int64 us
    valid: torch.Tensor  # (b, L) bool

    def to(self, device: torch.device) -> EventBatch:
        return EventBatch(self.shows.to(device), self.times.to(device), self.valid.to(device))


class TemporalNet(nn.Module):
    def __init__(self, n_shows: int, cfg: TemporalConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.show_vectors = nn.Embedding(n_shows + 1, dim, padding_idx=0)  # tokens and outputs
        nn.init.normal_(self.show_vectors.weight, std=0.1)
        with torch.no_grad():
            self.show_vectors.weight[0].zero_()
        self.show_bias = nn.Embedding(n_shows + 1, 1)  # b_s
        nn.init.zeros_(self.show_bias.weight)
        self.trend_weight = nn.Parameter(torch.tensor(1.0))  # beta, on log λ_s(day of T)
        self.popularity_weights = nn.Parameter(torch.zeros(N_FEATURES))  # w, on x_s(day of T)
        self.time_arch = SeasonalTimeEncoding(dim)
        self.token_drop = FastDropout(cfg.dropout)
        self.time_causal = nn.ModuleList(
            TemporalBlock(dim, cfg.heads, cfg.ffn_mult, cfg.dropout) for _ in range(cfg.layers)
        )
        self.query = nn.Parameter(torch.randn(dim) * 0.02)
        self.sink = nn.Parameter(torch.randn(dim) * 0.02)  # a key every read-out may attend to
        self.read_out = TemporalBlock(dim, cfg.heads, cfg.ffn_mult, cfg.dropout)
        self.user_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        # how much the user's own taste counts against the prior, by the time since their last
        # event (log scale per gap bucket): a user back after weeks is less predictable than
        # one in the middle of a session
        self.confidence = nn.Parameter(torch.zeros(N_GAPS))
        self.seasonal = SeasonalDecomposition()

    def sequence_parameters(self) -> list[nn.Parameter]:
        """What the next-show phase trains: everything but the seasonal decomposition."""
        return [p for name, p in self.named_parameters() if not name.startswith("seasonal.")]

    def event_tokens(self, events: EventBatch) -> torch.Tensor:
        """(b, L, d): show vector + seasonal encoding of the event's time."""
        return self.token_drop(self.show_vectors(events.shows) + self.time_arch(events.times))

    def attend_in_time(self, tokens: torch.Tensor, events: EventBatch) -> torch.Tensor:
        """Each event attends to the events at or before its own time: (b, L, d)."""
        t = events.times
        allowed = (t[:, None, :] <= t[:, :, None]) & events.valid[:, None, :]  # (b, L, L)
        allowed |= torch.eye(t.shape[1], dtype=torch.bool, device=t.device)  # padding: itself
        gaps = gap_buckets(t[:, :, None], t[:, None, :])  # (b, L, L)
        for block in self.time_causal:
            tokens = block(tokens, tokens, allowed, gaps)
        return tokens

    def read_at(
        self, history: torch.Tensor, events: EventBatch, at: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A query at each time `at` (b, q) reads the events strictly before it: the users
        (b, q, d), zero where no event precedes, and that flag (b, q)."""
        b, nq = at.shape
        before = (events.times[:, None, :] < at[:, :, None]) & events.valid[:, None, :]  # (b,q,L)
        queries = self.query + self.time_arch(at)  # (b, q, d)
        keys = torch.cat([self.sink.expand(b, 1, -1).to(history.dtype), history], 1)  # (b,1+L,d)
        allowed = torch.cat([before.new_ones(b, nq, 1), before], -1)  # (b, q, 1 + L)
        gaps = gap_buckets(at[:, :, None], events.times[:, None, :])  # (b, q, L)
        gaps = torch.cat([gaps.new_full((b, nq, 1), N_GAPS), gaps], -1)  # (b, q, 1 + L) sink first
        users = self.user_head(self.read_out(queries, keys, allowed, gaps))  # (b, q, d)
        has = before.any(-1)  # (b, q)
        last = torch.where(before, events.times[:, None, :], torch.iinfo(torch.long).min)
        away = gap_buckets(at, last.max(-1).values)  # (b, q) time since the last event
        scale = self.confidence[away].exp() * has  # (b, q), 0 without any event before
        return users * scale[..., None].to(users.dtype), has

    def users_at(self, events: EventBatch, at: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Users at times `at` (b, q) from their events: (b, q, d) and whether any event
        precedes each query (b, q)."""
        tokens = self.event_tokens(events)  # (b, L, d)
        history = self.attend_in_time(tokens, events)  # (b, L, d)
        return self.read_at(history, events, at)

    def show_prior(self, signals: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The prior of shows on a day, beta * log λ + w . x + b_s, from their `signals`
        (..., n, 1 + N_FEATURES) that day: log λ, then the popularity features x. (..., n).
        The shows are every show, or the catalogue `rows` (n,) the signals were taken at."""
        weights = torch.cat([self.trend_weight[None], self.popularity_weights])  # (1 + F,)
        bias = self.show_bias.weight[1:, 0] if rows is None else self.show_bias.weight[rows + 1, 0]
        return signals @ weights.to(signals.dtype) + bias


# ---- users' sequences --------------------------------------------------------------------------
@dataclass
class Sequences:
    """Users' first watches in time order, flat: user i's are [offsets[i], offsets[i + 1])."""

    users: list[str]
    offsets: np.ndarray  # (n_users + 1,) int64
    shows: np.ndarray  # (m,) int64 show rows
    times: np.ndarray  # (m,) int64 us

    @classmethod
    def of(cls, positives: pd.DataFrame, rows: Mapping[str, int]) -> Sequences:
        """From (user_id, show_id, event_timestamp) first watches; unknown shows dropped."""
        pos = positives[positives["show_id"].isin(rows)]
        times = _timestamps_us(pos["event_timestamp"])
        order = np.lexsort((times, pos["user_id"].to_numpy()))
        users = pos["user_id"].to_numpy()[order]
        names, starts = np.unique(users, return_index=True)
        offsets = np.append(starts, len(users)).astype(np.int64)
        shows = pos["show_id"].map(rows).to_numpy(np.int64)[order]
        return cls([str(u) for u in names], offsets, shows, times[order])

    def windows(self, length: int, targets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Training windows (start, end, first target), flat positions (w,) each: every event
        is a target exactly once, with up to `length - targets` earlier events as context."""
        starts, ends, firsts = [], [], []
        for lo, hi in zip(self.offsets[:-1], self.offsets[1:], strict=True):
            end = np.arange(hi, lo, -targets)  # (k,) window ends, newest first
            starts.append(np.maximum(lo, end - length))
            ends.append(end)
            firsts.append(np.maximum(lo, end - targets))
        return _flat(starts), _flat(ends), _flat(firsts)

    def last(self, i: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """User i's last `length` first watches: show rows and times."""
        lo = max(self.offsets[i], self.offsets[i + 1] - length)
        return self.shows[lo : self.offsets[i + 1]], self.times[lo : self.offsets[i + 1]]


def _flat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def _timestamps_us(values: pd.Series) -> np.ndarray:
    """A pandas datetime column (any unit, aware or naive = UTC) as int64 microseconds."""
    ts = pd.to_datetime(values, utc=True)
    return ts.dt.as_unit("us").astype("int64").to_numpy()


def event_rows(histories: Sequence[tuple[np.ndarray, np.ndarray]], length: int) -> EventBatch:
    """(show rows, times) per user -> an EventBatch (b, L), oldest first, padding at the end."""
    width = max(1, min(length, max((len(s) for s, _ in histories), default=1)))
    shows = torch.zeros(len(histories), width, dtype=torch.long)
    times = torch.zeros(len(histories), width, dtype=torch.long)
    valid = torch.zeros(len(histories), width, dtype=torch.bool)
    for i, (s, t) in enumerate(histories):
        s, t = s[-width:], t[-width:]
        shows[i, : len(s)] = torch.as_tensor(s, dtype=torch.long) + 1
        times[i, : len(t)] = torch.as_tensor(t, dtype=torch.long)
        valid[i, : len(s)] = True
    return EventBatch(shows, times, valid)


# ---- training tasks ---------------------------------------------------------------------------
class _SeasonalTask(TrainTask):
    """Poisson fit of the decomposition on daily views after randomly drawn origins."""

    def __init__(self, model: TemporalModel, calendar: ShowCalendar) -> None:
        self.model, self.calendar, self.cfg = model, calendar, model.config
        self.net = model._net().seasonal
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=self.cfg.seasonal_lr, fused=True
        )

    def plan(self, epoch: int, rngs: Rngs) -> list[np.ndarray]:
        shape = (self.cfg.seasonal_steps, self.cfg.origins_per_step)
        return list(rngs.numpy.integers(0, self.calendar.days, shape))

    def loss(self, origins: np.ndarray, rngs: Rngs) -> StepResult:
        device, cal, horizon = self.model.runtime.device, self.calendar, self.cfg.horizon_days
        state = cal.state(origins, self.cfg.profile_prior).to(device)
        start = cal.origin_us(origins)
        past, future = days_before(start).to(device), days_after(start, horizon).to(device)
        log_rate = self.net(state, past, future)  # (o, n, horizon)
        views, known = (t.to(device) for t in cal.targets(origins, horizon))
        # every show weighs about the same: its loss over its yearly daily rate, so a few hits
        # do not decide the components all shows share
        yearly = state.views[..., 2:3] / 365.0  # (o, n, 1) known at the origin
        weight = 1.0 / (yearly + self.cfg.rate_floor)
        loss = poisson_nll(log_rate, views, known, weight / weight.mean())
        return StepResult(loss, {"seasonal_loss": float(loss.detach())}, weight=len(origins))


@dataclass
class _Targets:
    """The targets of a batch of windows, (b, T) each."""

    shows: torch.Tensor  # long show rows
    times: torch.Tensor  # int64 us
    mask: torch.Tensor  # bool: a target (inside its window and the training days)


class _NextShowTask(TrainTask):
    """Windows of users' sequences; every target event is predicted from the events strictly
    before it, by a sampled softmax over the catalogue with the seasonal prior."""

    def __init__(self, model: TemporalModel, seq: Sequences, signals: torch.Tensor) -> None:
        cfg, self.model, self.seq = model.config, model, seq
        self.net = model._net()
        self.signals = signals  # (J, n, 1 + N_FEATURES) log λ and x of every show, every day
        self.calendar = model._calendar()
        starts, ends, firsts = seq.windows(cfg.history_len, cfg.targets_per_window)
        grid_start = self.calendar.origin_us(np.zeros(1, dtype=np.int64))[0]
        inside = seq.times[np.maximum(ends - 1, 0)] >= grid_start  # the newest target is in it
        self.starts, self.ends, self.firsts = starts[inside], ends[inside], firsts[inside]
        # windows whose events are not all at one instant: only they can give a query context
        self.timed = self.newest_times() > seq.times[self.starts]
        self.batch = cfg.batch_size * model.runtime.batch_multiplier
        self.optimizer = torch.optim.AdamW(
            self.net.sequence_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
        )  # fused: several times faster per step on the CPU, and fine on CUDA

    def newest_times(self) -> np.ndarray:
        """(windows,) int64 us: each window's newest target event's time."""
        return self.seq.times[np.maximum(self.ends - 1, 0)]

    def keep_after(self, after_us: int) -> int:
        """Train only on the windows whose newest target is after `after_us`; how many."""
        mask = self.newest_times() > after_us
        self.starts, self.ends = self.starts[mask], self.ends[mask]
        self.firsts, self.timed = self.firsts[mask], self.timed[mask]
        return int(mask.sum())

    def plan(self, epoch: int, rngs: Rngs) -> list[np.ndarray]:
        """The epoch's batches of window ids: a random order, cut to `windows_per_epoch`."""
        order = torch.randperm(len(self.starts), generator=rngs.torch).numpy()
        order = order[: self.model.config.windows_per_epoch or len(order)]
        return [order[s : s + self.batch] for s in range(0, len(order), self.batch)]

    def _events(self, ids: np.ndarray) -> tuple[EventBatch, _Targets]:
        """The windows `ids` as an EventBatch (b, L) and their targets (b, T): each window's
        last events, T = targets_per_window (only they are read out)."""
        length = int((self.ends[ids] - self.starts[ids]).max())  # the batch's longest window
        pos = self.starts[ids, None] + np.arange(length)[None, :]  # (b, L) flat positions
        valid = pos < self.ends[ids, None]
        pos = np.minimum(pos, len(self.seq.shows) - 1)
        times = np.where(valid, self.seq.times[pos], 0)
        events = EventBatch(
            torch.as_tensor(np.where(valid, self.seq.shows[pos] + 1, 0)),
            torch.as_tensor(times),
            torch.as_tensor(valid),
        )
        first = self.firsts[ids, None] + np.arange(self.model.config.targets_per_window)  # (b, T)
        inside = first < self.ends[ids, None]
        flat = np.minimum(first, self.ends[ids, None] - 1)  # (b, T) flat positions
        grid_start = self.calendar.origin_us(np.zeros(1, dtype=np.int64))[0]
        mask = inside & (self.seq.times[flat] >= grid_start)
        targets = _Targets(
            torch.as_tensor(self.seq.shows[flat]),
            torch.as_tensor(self.seq.times[flat]),
            torch.as_tensor(mask),
        )
        return events, targets

    def loss(self, ids: np.ndarray, rngs: Rngs) -> StepResult:
        net, device, n = self.net, self.model.runtime.device, self.signals.shape[1]
        events, targets = self._events(ids)
        at = targets.times.to(device)  # (b, T) each target's user is read at its time
        events, target = events.to(device), targets.mask.to(device)
        if self.timed[ids].any():
            users, _ = net.users_at(events, at)  # (b, T, d)
        else:  # untimed: no query has context, every user is the zero vector
            users = torch.zeros(*at.shape, net.query.shape[0], device=device)
        users = users[target].float()  # (N, d)
        shows = targets.shows.to(device)[target]  # (N,) targets' rows
        if len(shows) == 0:  # no target inside the training window: nothing to learn
            return StepResult(net.trend_weight * 0.0, {"train_loss": 0.0}, weight=0.0)
        day = self._days(at[target])  # (N,) the query's day: its prior is that day's
        negatives = self._negatives(n, rngs).to(device)  # (K,)
        # priors only where the loss reads them: each target on its day, the negatives on
        # the batch's days (every show on every day was (U, n), most of it never read)
        positive_prior = net.show_prior(self.signals[day, shows], shows)  # (N,)
        days, day_of = torch.unique(day, return_inverse=True)  # batch's days (U,), each's (N,)
        signals = rows_at(self.signals, days, negatives)  # (U, K, 1 + F), not (U, n, 1 + F)
        negative_prior = net.show_prior(signals, negatives)  # (U, K)
        vectors = net.show_vectors.weight
        positive = (users * vectors[shows + 1]).sum(-1) + positive_prior  # (N,)
        negative = users @ vectors[negatives + 1].T + negative_prior[day_of]  # (N, K)
        negative = negative + math.log(n / len(negatives))  # (N, K), sampled-softmax correction
        seen = self._seen(events, at, negatives)[target]  # (N, K) watched before the query
        exclude = seen | (negatives[None, :] == shows[:, None])
        logits = torch.cat([positive[:, None], negative], 1)  # (N, 1 + K)
        exclude = torch.cat([exclude.new_zeros(len(shows), 1), exclude], 1)
        loss = masked_info_nce(logits, torch.zeros_like(shows), exclude, 1.0)
        return StepResult(loss, {"train_loss": float(loss.detach())}, weight=len(shows))

    def _days(self, at: torch.Tensor) -> torch.Tensor:
        """Training-day rows (N,) of query times (N,): their bin, 0 for earlier ones."""
        days = self.calendar.bin_of(at.cpu().numpy())
        return torch.as_tensor(np.clip(days, 0, self.calendar.days - 1)).to(at.device)

    def _negatives(self, n: int, rngs: Rngs) -> torch.Tensor:
        """K distinct shows drawn uniformly (the whole catalogue when K >= n)."""
        k = self.model.config.negatives
        if k >= n:
            return torch.arange(n)
        return torch.randperm(n, generator=rngs.torch)[:k]

    @staticmethod
    def _seen(events: EventBatch, at: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """(b, q, K): which negatives each query's user watched strictly before the query
        time `at` (b, q) (a show is at most once in a window of first watches: look its
        position up)."""
        b, length = events.shows.shape
        place = torch.full((b, int(events.shows.max()) + 2), length, device=at.device)
        place.scatter_(1, events.shows, torch.arange(length, device=at.device).expand(b, -1))
        place[:, 0] = length  # padding is nowhere
        where = place[:, (negatives + 1).clamp(max=place.shape[1] - 1)]  # (b, K) position or L
        where = torch.where(negatives[None, :] + 1 < place.shape[1], where, length)
        before = (events.times[:, None, :] < at[:, :, None]) & events.valid[:, None, :]  # (b,q,L)
        before = torch.cat([before, before.new_zeros(b, at.shape[1], 1)], 2)  # slot L: never
        return before.gather(2, where[:, None, :].expand(-1, at.shape[1], -1))  # (b, q, K)


# ---- the model --------------------------------------------------------------------------------
class TemporalModel(Recommender, name="temporal", config=TemporalConfig):
    needs_content = prior_column = True
    # alone on new shows: MovieLens 0.084 against a random order's 0.131, anime 0.018 / 0.016
    ranks_new_shows = False
    net: TemporalNet | None = None
    as_of_state: ShowState | None = None  # every show at the as-of (o = 1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history_times: dict[str, list[int]] = {}  # user -> us of each history entry
        self.as_of_us = 0
        self.days = 0  # J of the training calendar
        self.context_trained = False
        self.first_week: np.ndarray = np.zeros((0, 7))  # premieres' first 7 days (NaN: none)
        self.first_weekday: np.ndarray = np.zeros(0, dtype=np.int64)  # their first weekday
        self._cal: ShowCalendar | None = None
        self._served: np.ndarray | None = None
        self._user_table = UserTable()  # user -> served vector (dim + 1,)

    # ---- training ---------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> dict[str, Any]:
        cfg, started = self.config, time.perf_counter()
        torch.manual_seed(cfg.seed)
        self._user_table = UserTable()
        self.show_ids = list(data.show_ids)
        seq, feast_gap = self._read_events(data)
        self.net = TemporalNet(len(self.show_ids), cfg).to(self.runtime.device)
        seasonal = self._fit_seasonal(data)
        task = _NextShowTask(self, seq, self._signals())  # (J, n, 1 + N_FEATURES)
        self.context_trained = bool(task.timed.any())
        history = self.trainer(data).fit(task)
        self._net().eval()
        self._served, self._cal = None, None
        metrics = history.metrics() | {
            "n_users": len(seq.users),
            "n_first_watches": len(seq.shows),
            "n_windows": len(task.starts),
            "calendar_days": self.days,
            "context_trained": self.context_trained,
            "feast_feature_max_diff": feast_gap,
            "train_seconds": round(time.perf_counter() - started, 2),
            "profile": self.runtime.profile,
        }
        metrics |= seasonal
        self.make_manifest(data, cfg.dim + 1, metrics)
        return metrics

    def advance(self, data: TrainingData) -> bool:
        """To `data`'s as-of: its calendar, show state and user histories from `data`'s
        events; the weights as trained, then (`advance_epochs`) fine-tuned on the windows
        whose newest target falls after the as-of they were trained to."""
        if list(data.show_ids) != self.show_ids:
            return False  # another catalogue: its show vectors would not line up
        trained_to_us = self.as_of_us
        seq, _ = self._read_events(data)
        tuned = self._fine_tune(data, seq, trained_to_us)
        self._served, self._cal, self._user_table = None, None, UserTable()
        self.restamp(data)
        self.fitted(self.manifest).metrics.update(tuned)
        return True

    def _fine_tune(self, data: TrainingData, seq: Sequences, after_us: int) -> dict[str, Any]:
        """`advance_epochs` epochs on the windows whose newest target is after `after_us`
        (the events the weights never saw), from the weights as they are; its figures."""
        epochs = self.config.advance_epochs
        if not epochs or not (seq.times > after_us).any():  # nothing new: no task to build
            return {"advance_windows": 0}
        task = _NextShowTask(self, seq, self._signals())
        if not task.keep_after(after_us):
            return {"advance_windows": 0}
        started = time.perf_counter()
        self._net().train()
        history = self.trainer(data, "advance", epochs=epochs).fit(task)
        self._net().eval()
        return {
            "advance_windows": len(task.starts),
            "advance_loss": (history.curves.get("train_loss") or [None])[-1],
            "advance_seconds": round(time.perf_counter() - started, 2),
        }

    def _read_events(self, data: TrainingData) -> tuple[Sequences, float | None]:
        """What `fit` and `advance` both read from `data`: the as-of, the calendar, each
        user's history and every show's state at the as-of; (the users' sequences, the
        largest difference between Feast's rows and the counted state)."""
        rows = self.show_rows()
        self.as_of_us = to_us(data.as_of)
        self._cal = self._build_calendar(data.frame, rows)
        self.days = self._cal.days
        self.first_week, self.first_weekday = self._cal.first_weeks()
        seq = Sequences.of(data.positives(), rows)
        self._keep_histories(seq)
        return seq, self._set_as_of_state(data)

    def _build_calendar(self, frame: pd.DataFrame, rows: Mapping[str, int]) -> ShowCalendar:
        """Daily views of every show from the training set's events (all of them, re-watches
        included, as show_popularity counts)."""
        known = frame[frame["show_id"].isin(rows)]
        shows = known["show_id"].map(rows).to_numpy(np.int64)
        times = _timestamps_us(known["event_timestamp"])
        return ShowCalendar.build(shows, times, len(rows), self.as_of_us, self.config.history_days)

    def _keep_histories(self, seq: Sequences) -> None:
        """Each user's last `history_len` first watches, for serving."""
        self.histories, self.history_times = {}, {}
        for i, user in enumerate(seq.users):
            shows, times = seq.last(i, self.config.history_len)
            self.histories[user] = [self.show_ids[r] for r in shows]
            self.history_times[user] = times.tolist()

    def _fit_seasonal(self, data: TrainingData) -> dict[str, list[float]]:
        """Phase "seasonal": the decomposition's Poisson fit, its curves as `seasonal_*`;
        skipped on logs shorter than `min_history_days` (its components stay neutral: recent
        rates, flat seasons)."""
        cfg, cal = self.config, self._calendar()
        if cfg.seasonal_epochs == 0 or cal.days < cfg.min_history_days:
            return {"seasonal_loss": []}
        trainer = self.trainer(data, "seasonal", epochs=cfg.seasonal_epochs, seed=cfg.seed + 1)
        curves = trainer.fit(_SeasonalTask(self, cal)).curves
        return {
            "seasonal_loss": curves.get("seasonal_loss", []),
            "seasonal_epoch_seconds": curves.get("epoch_seconds", []),
        }

    def _set_as_of_state(self, data: TrainingData) -> float | None:
        """Every show at the as-of: from Feast's `temporal_v1` rows as of the as-of when the
        job handed them in, else from the events; returns the largest difference between the
        two (None without Feast rows)."""
        cal = self._calendar()
        counted = cal.state(np.array([cal.days]), self.config.profile_prior)
        self.as_of_state = counted
        if data.content is None:
            return None
        feast = feast_state(data.content.features, self.show_ids, cal, self.config.profile_prior)
        self.as_of_state = feast
        parts = ("views", "week_ratio", "month_ratio")
        return max(float((getattr(feast, f) - getattr(counted, f)).abs().max()) for f in parts)

    @torch.no_grad()
    def _signals(self, chunk: int = 32) -> torch.Tensor:
        """Every show on each training day, seen from that day's start: log λ and the
        popularity features x, (J, n, 1 + N_FEATURES)."""
        cal, net, device = self._calendar(), self._net().seasonal, self.runtime.device
        rows = []
        for lo in range(0, cal.days, chunk):
            origins = np.arange(lo, min(cal.days, lo + chunk))
            start = cal.origin_us(origins)
            state = cal.state(origins, self.config.profile_prior).to(device)
            past, today = days_before(start).to(device), days_after(start, 1).to(device)
            with self.runtime.autocast():
                log_rate = net(state, past, today)  # (o, n, 1)
            rows.append(torch.cat([log_rate.float(), state.x], -1))  # (o, n, 1 + F)
        return torch.cat(rows)

    # ---- forecasts --------------------------------------------------------------------------
    @torch.no_grad()
    def daily_rates(self, days: int) -> np.ndarray:
        """Expected views of every show on each of the `days` days after the as-of: (n, days)."""
        net, device = self._net().seasonal, self._device()
        origin = np.array([self.as_of_us])
        state = self._as_of().to(device)
        past, future = days_before(origin).to(device), days_after(origin, days).to(device)
        log_rate = net(state, past, future)  # (1, n, days)
        return log_rate[0].float().exp().cpu().numpy().astype(np.float64)

    def forecast_daily(self, days: int = 30) -> pl.DataFrame:
        """Expected views per show and day after the as-of: show_id, day (the date the day
        starts on, UTC), day_start (its instant), views."""
        rates = self.daily_rates(days)  # (n, days)
        first = self._as_of_datetime()
        starts = pl.datetime_range(
            first, first + timedelta(days=days - 1), "1d", time_unit="us", eager=True
        )
        n = len(self.show_ids)
        return pl.DataFrame(
            {
                "show_id": np.repeat(np.asarray(self.show_ids, dtype=object), days),
                "day_start": pl.concat([starts] * n) if n else starts[:0],
                "views": rates.reshape(-1),
            }
        ).select("show_id", pl.col("day_start").dt.date().alias("day"), "day_start", "views")

    def forecast(self, horizons: Sequence[int] = (7, 30)) -> pl.DataFrame:
        """Predicted views per show in the `h` days after the as-of, for each horizon h, with
        the views of the `h` days before it and the growth between the two.

        Columns: show_id, as_of, then per h: views_{h}d (predicted), recent_{h}d (observed in
        the h days before the as-of; 365 days at most), growth_{h}d = (views + 1) /
        (recent + 1) - 1, the relative change (smoothed for shows with few views)."""
        horizons = sorted({int(h) for h in horizons})
        if not horizons or horizons[0] < 1:
            raise ValueError(f"horizons must be whole days >= 1, got {horizons}")
        rates = self.daily_rates(horizons[-1])  # (n, H)
        state = self._as_of()
        columns: dict[str, Any] = {"show_id": self.show_ids}
        for h in horizons:
            predicted = rates[:, :h].sum(1)
            recent = _recent_views(state, h)
            columns[f"views_{h}d"] = predicted
            columns[f"recent_{h}d"] = recent
            columns[f"growth_{h}d"] = (predicted + 1.0) / (recent + 1.0) - 1.0
        frame = pl.DataFrame(columns)
        return frame.with_columns(pl.lit(self._as_of_datetime()).alias("as_of")).select(
            "show_id", "as_of", *[c for c in frame.columns if c != "show_id"]
        )

    def seasonal_components(self) -> dict[str, pl.DataFrame]:
        """The learned components at the as-of, as multiplicative factors on expected views:
        "weekday" (the catalogue's: weekday 0 = Monday, name, factor), "month" (the
        catalogue's month pattern at its learned weight: month 1-12, factor), "cycle" (the
        30-day cycle: day 0-29, factor), and "shows" (per show: level = deseasonalised daily
        views, weekday_factors (7, Monday first) and month_factors (12, January first), the
        catalogue's and its own together)."""
        net, device = self._net().seasonal, self._device()
        cpu = lambda t: t.detach().float().cpu().numpy().astype(np.float64)  # noqa: E731
        with torch.no_grad():
            weekday = cpu((net.weekday - net.weekday.mean()).exp())
            month = cpu((net.season_weight * self._as_of().season[0, 0].to(device)).exp())
            cycle = cpu(net.monthly(torch.arange(30, device=device) / 30.0).exp())
            state = self._as_of().to(device)
            weekly, yearly = net.weekly(state), net.yearly(state)  # (1, n, 7), (1, n, 12)
            past = days_before(np.array([self.as_of_us])).to(device)
            level = net.level(state, past, weekly, yearly, net.heads(state)[2])[0].exp()  # (n,)
        return {
            "weekday": pl.DataFrame({"weekday": range(7), "name": WEEKDAYS, "factor": weekday}),
            "month": pl.DataFrame({"month": range(1, 13), "factor": month}),
            "cycle": pl.DataFrame({"day": range(30), "factor": cycle}),
            "shows": pl.DataFrame(
                {
                    "show_id": self.show_ids,
                    "level": cpu(level),
                    "weekday_factors": cpu(weekly[0].exp()),
                    "month_factors": cpu(yearly[0].exp()),
                }
            ),
        }

    # ---- embeddings -------------------------------------------------------------------------
    def show_embeddings(self) -> tuple[list[str], np.ndarray]:
        """Served show vectors (n, dim + 1): [show vector, beta * log λ(as-of day) + b_s]."""
        if self._served is None:
            net, device = self._net(), self._device()
            with torch.no_grad():
                log_rate = np.log(self.daily_rates(1)[:, 0])  # (n,) first day after the as-of
                rate = torch.as_tensor(log_rate, dtype=torch.float32).to(device)
                signals = torch.cat([rate[:, None], self._as_of().x[0].to(device)], -1)
                prior = net.show_prior(signals).float().cpu()  # (n,)
                vectors = net.show_vectors.weight[1:].float().cpu()  # (n, dim)
            served = torch.cat([vectors, prior[:, None]], 1).detach()  # (n, dim + 1)
            self._served = served.numpy().astype(np.float32)
        return list(self.show_ids), self._served

    def user_embeddings(self, user_ids: list[str]) -> np.ndarray:
        """Served user vectors (n_users, dim + 1): [user at the as-of, 1]; a user without
        history (and every user of a model trained on an untimed log) gets [0, 1]. Users in
        the table (`precompute_users`) are read from it, the others read their history."""
        return self._user_table.read(user_ids, self._user_vectors)

    def precompute_users(self, user_ids: list[str]) -> int:
        """Each user's vector at the as-of, read through the attention once (in batches) and
        kept until the next fit, load or fold-in of that user."""
        return self._user_table.fill(user_ids, self._user_vectors)

    @torch.no_grad()
    def _user_vectors(self, user_ids: list[str]) -> np.ndarray:
        """(n_users, dim + 1) read from each user's history through the attention."""
        net, device = self._net(), self.runtime.device
        out = np.zeros((len(user_ids), self.config.dim + 1), dtype=np.float32)
        out[:, -1] = 1.0
        known = [i for i, u in enumerate(user_ids) if self.histories.get(u)]
        if not self.context_trained:
            return out
        if net.training:  # eval() walks every module: not on each request
            net.eval()
        rows = self.show_rows()
        for lo in range(0, len(known), 512):
            chunk = known[lo : lo + 512]
            histories = [self._history(user_ids[i], rows) for i in chunk]
            events = event_rows(histories, self.config.history_len).to(device)
            at = torch.full((len(chunk), 1), self.as_of_us, dtype=torch.long, device=device)
            with self.runtime.autocast():
                users, _ = net.users_at(events, at)  # (b, 1, d)
            out[chunk, :-1] = users[:, 0].float().cpu().numpy()
        return out

    def fold_in(self, events: pd.DataFrame) -> bool:
        """New users read at the as-of from their own events, like any other."""
        known = events[events["show_id"].isin(set(self.show_ids))]
        known = known.assign(_us=_timestamps_us(known["event_timestamp"]))
        known = known.sort_values("_us", kind="stable").drop_duplicates(["user_id", "show_id"])
        self._user_table.drop(events["user_id"].astype(str).unique())  # read again below
        for user, g in known.groupby("user_id"):
            g = g.tail(self.config.history_len)
            self.histories[str(user)] = g["show_id"].tolist()
            self.history_times[str(user)] = g["_us"].tolist()
        return True

    def _history(self, user: str, rows: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
        shows = np.array([rows[s] for s in self.histories[user]], dtype=np.int64)
        return shows, np.array(self.history_times[user], dtype=np.int64)

    # ---- persistence ------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "net": {k: v.cpu() for k, v in self._net().state_dict().items()},
            "shows": self.show_ids,
            "histories": self.histories,
            "history_times": self.history_times,
            "as_of_us": self.as_of_us,
            "days": self.days,
            "context_trained": self.context_trained,
            "first_week": torch.as_tensor(self.first_week, dtype=torch.float64),
            "first_weekday": torch.as_tensor(self.first_weekday, dtype=torch.long),
            "as_of_state": self._as_of().as_dict(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.show_ids, self.histories = state["shows"], state["histories"]
        self.history_times, self.as_of_us = state["history_times"], state["as_of_us"]
        self.days, self.context_trained = state["days"], state["context_trained"]
        self.first_week = state["first_week"].numpy()
        self.first_weekday = state["first_weekday"].numpy()
        self.as_of_state = ShowState(**state["as_of_state"])
        self.net = TemporalNet(len(self.show_ids), self.config)
        self.net.load_state_dict(state["net"])
        self.net.eval()
        self._served, self._user_table = None, UserTable()

    # ---- parts ------------------------------------------------------------------------------
    def _net(self) -> TemporalNet:
        return self.fitted(self.net)

    def _device(self) -> torch.device:
        return next(self._net().parameters()).device

    def _calendar(self) -> ShowCalendar:
        return self.fitted(self._cal)

    def _as_of(self) -> ShowState:
        return self.fitted(self.as_of_state).to(torch.device("cpu"))

    def _as_of_datetime(self) -> datetime:
        return EPOCH + timedelta(microseconds=self.as_of_us)


def _recent_views(state: ShowState, days: int) -> np.ndarray:
    """Views of each show in the `days` before the as-of, from its trailing windows (exact for
    7, 30 and 365 days; other spans pro rata from the next longer window): (n,)."""
    views = state.views[0].numpy().astype(np.float64)  # (n, 3)
    for i, window in enumerate(WINDOWS):
        if days <= window:
            return views[:, i] * (days / window)
    return views[:, -1]


def feast_state(
    features: pd.DataFrame, show_ids: Sequence[str], calendar: ShowCalendar, prior: float
) -> ShowState:
    """Every show (`show_ids`, the calendar's rows) at the as-of from Feast's `temporal_v1`
    show rows as of the as-of (show_popularity, show_seasonality); a show without a row or
    with missing values counts no views. Ages and days on air come from the calendar."""
    features = features.drop_duplicates("show_id").set_index("show_id").reindex(list(show_ids))

    def pop(column: str) -> np.ndarray:
        values = pd.to_numeric(features[f"show_popularity__{column}"], errors="coerce")
        return values.fillna(0).to_numpy(np.float64)  # (n,)

    views = np.stack([pop(f"views_{w}d") for w in WINDOWS], -1)[None]  # (1, n, 3)
    total = pop("views_total")[None]  # (1, n)
    shares = lambda c, k: np.stack([_as_vector(v, k) for v in features[f"show_seasonality__{c}"]])  # noqa: E731
    weekday = shares("weekday_profile", 7) * total[0][:, None]
    month = shares("month_profile", 12) * total[0][:, None]
    age = np.clip(calendar.days - calendar.first_bin, 0, BACK_DAYS)[None]  # (1, n)
    on_air = calendar.days_on_air(np.array([calendar.days])).astype(np.float64)  # (1, n, 12)
    return state_from_counts(views, total, age, weekday[None], month[None], on_air, prior)


def _as_vector(value: Any, k: int) -> np.ndarray:
    """A profile cell (list, array or missing) as k float64 shares (missing: zeros)."""
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return np.zeros(k)
    out = np.asarray(value, dtype=np.float64)
    return np.nan_to_num(out) if out.shape == (k,) else np.zeros(k)


# ---- release timing ---------------------------------------------------------------------------
def release_timing(model: TemporalModel, genres: Mapping[str, Sequence[str]]) -> pl.DataFrame:
    """Per genre, the premiere month and weekday with the most expected first-week views,
    from the learned seasonal components, with the figures behind it.

    `genres`: show_id -> its genres (from the catalogue). A genre's month and weekday factors
    are the means of its shows' learned factors (`seasonal_components`: the catalogue's and
    each show's own); a premiere on weekday w in month m is expected to draw

        base * month_factor(m) * sum_{k<7} shape(k) * weekday_factor((w + k) mod 7)

    in its first week, shape being how a first week runs day by day (the premieres in the
    training log, each day divided by its weekday factor: the deseasonalised decay after a
    premiere) and base such that the mean over all (month, weekday) slots is the mean first
    week the genre's premieres drew (`observed_first_week`; without any, figures are relative
    to a mean of 1). Columns: genre, shows, best_month (1-12), best_weekday (0 = Monday),
    best_weekday_name, first_week_views (in the best slot), mean_first_week_views (over all
    slots), month_lift, weekday_lift (the best month / weekday over the mean one),
    observed_first_week, premieres_observed."""
    parts = model.seasonal_components()
    weekly = np.stack(parts["shows"]["weekday_factors"].to_list())  # (n, 7)
    yearly = np.stack(parts["shows"]["month_factors"].to_list())  # (n, 12)
    shape = first_week_shape(model, parts["weekday"]["factor"].to_numpy())  # (7,)
    records = []
    for genre, idx in _genre_rows(model.show_ids, genres).items():
        week, month = weekly[idx].mean(0), yearly[idx].mean(0)  # (7,), (12,)
        starts = np.stack([np.roll(week, -w) for w in range(7)])  # (7 premiere days, 7 days)
        per_weekday = starts @ shape  # (7,) first-week weight of a premiere on each weekday
        slots = month[:, None] * per_weekday[None, :]  # (12, 7)
        observed = np.nansum(model.first_week[idx], axis=1)[model.first_weekday[idx] >= 0]
        base = (observed.mean() if len(observed) else 1.0) / slots.mean()
        m, w = (int(i) for i in np.unravel_index(int(np.argmax(slots)), slots.shape))
        records.append(
            {
                "genre": genre,
                "shows": len(idx),
                "best_month": m + 1,
                "best_weekday": w,
                "best_weekday_name": WEEKDAYS[w],
                "first_week_views": float(base * slots[m, w]),
                "mean_first_week_views": float(base * slots.mean()),
                "month_lift": float(month[m] / month.mean()),
                "weekday_lift": float(per_weekday[w] / per_weekday.mean()),
                "observed_first_week": float(observed.mean()) if len(observed) else float("nan"),
                "premieres_observed": len(observed),
            }
        )
    return pl.DataFrame(records, schema=_TIMING_SCHEMA)


_TIMING_SCHEMA = {
    "genre": pl.String, "shows": pl.Int64, "best_month": pl.Int64, "best_weekday": pl.Int64,
    "best_weekday_name": pl.String, "first_week_views": pl.Float64,
    "mean_first_week_views": pl.Float64, "month_lift": pl.Float64, "weekday_lift": pl.Float64,
    "observed_first_week": pl.Float64, "premieres_observed": pl.Int64,
}  # fmt: skip


def first_week_shape(model: TemporalModel, weekday_factors: np.ndarray) -> np.ndarray:
    """(7,) the share of a first week's views on each of its days, weekday effects taken out
    (`weekday_factors`, Monday first): the mean over the log's premieres; flat without any."""
    rows = np.flatnonzero(model.first_weekday >= 0)
    if not len(rows):
        return np.full(7, 1 / 7)
    days = (model.first_weekday[rows, None] + np.arange(7)[None, :]) % 7  # (p, 7) weekdays
    plain = model.first_week[rows] / weekday_factors[days]  # (p, 7) deseasonalised
    totals = plain.sum(1, keepdims=True)
    shares = plain[totals[:, 0] > 0] / totals[totals[:, 0] > 0]
    return shares.mean(0) if len(shares) else np.full(7, 1 / 7)


def _genre_rows(show_ids: list[str], genres: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """genre -> the catalogue rows of its shows (sorted by genre)."""
    row = {s: i for i, s in enumerate(show_ids)}
    by_genre: dict[str, set[int]] = {}
    for show, names in genres.items():
        for genre in names or ():
            if show in row:
                by_genre.setdefault(str(genre), set()).add(row[show])
    return {g: np.asarray(sorted(rows)) for g, rows in sorted(by_genre.items())}
