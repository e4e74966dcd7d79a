"""Forecast quality: per-show view forecasts against a held-out window, as pure functions.

Views are events per show and day; day d of a window covers [cutoff + d days, cutoff + d + 1
days). A method forecasts every show's views on each of the days after the cutoff; for a
horizon of h days its forecast is the sum over days 0..h-1, as is the actual count.

MASE (mean absolute scaled error, Hyndman & Koehler 2006) per horizon: the mean over shows of
|forecast - actual| of the h-day totals, divided by the in-sample scale, the same mean of the
seasonal-naive h-day forecast's errors at every origin inside the training part. Every method
shares the scale, so one method beats another exactly when its MASE is lower, and a MASE under
1 beats the naive forecast as it did in training.

Baselines, computed here from the training part alone:
- seasonal naive: each day's views are the views one season earlier (the last season repeated
  over longer horizons); the season is 365 days when the training part spans a year plus the
  horizon, else 7 days (`season_for`);
- last-30-days mean: each day's views are the mean daily views of the 30 days before the cutoff.

A horizon longer than the test window is scored on the days the window covers (the `days`
column says how many), for every method alike. `forecast_quality(window, forecasts)` scores
any forecasts (daily arrays, or frames of show_id, day_start, views such as a model's
`forecast_daily`) beside both baselines; `ForecastWindow.of_split` builds the window from a
`Split` of `tvrec evaluate` and the dataset's events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from tvrec.jobs.evaluation.splitting import Split

DAY = timedelta(days=1)
SEASONAL_NAIVE = "seasonal_naive"
RECENT_MEAN = "last_30_days_mean"
Forecast = np.ndarray | pl.DataFrame  # (n_shows, days) aligned to show_ids, or daily rows


@dataclass(frozen=True)
class ForecastWindow:
    """Events (show_id, event_timestamp, ...) before the cutoff (`train`) and in the test window
    from it (`test`), which covers `test_days` whole days."""

    train: pl.DataFrame
    test: pl.DataFrame
    cutoff: datetime
    test_days: int

    @classmethod
    def of_events(
        cls, events: pl.DataFrame, cutoff: datetime, end: datetime | None = None
    ) -> ForecastWindow:
        """Split an event log at `cutoff`; the test window ends at `end` (default: just after
        the last event), counted in whole days."""
        ts = pl.col("event_timestamp")
        train, test = events.filter(ts < cutoff), events.filter(ts >= cutoff)
        if end is None:
            last = test["event_timestamp"].max()
            end = last + timedelta(microseconds=1) if last is not None else cutoff
        test = test.filter(ts < end)
        return cls(train, test, cutoff, max(0, (end - cutoff) // DAY))

    @classmethod
    def of_split(cls, split: Split, events: pl.DataFrame | None = None) -> ForecastWindow:
        """The window of a temporal `Split` (its cutoff; views = first views of a (user,
        show) pair, as the split's train part counts them). With the dataset's `events`, the
        test window holds every first view at or after the cutoff of a pair not seen in
        train, new users included; without them, `split.test` (users known to train only)."""
        if split.cutoff is None:
            raise ValueError("forecast quality needs a temporal split (one with a cutoff)")
        columns = ["user_id", "show_id", "event_timestamp"]
        test = split.test.select(columns)
        if events is not None:
            seen = split.train.select("user_id", "show_id")
            test = (
                events.filter(pl.col("event_timestamp") >= split.cutoff)
                .group_by("user_id", "show_id")
                .agg(pl.col("event_timestamp").min())
                .join(seen, on=["user_id", "show_id"], how="anti")
                .select(columns)
            )
        both = pl.concat(
            [split.train.select(columns), test.cast(split.train.select(columns).schema)]
        )
        return cls.of_events(both, split.cutoff)


def daily_views(
    events: pl.DataFrame, show_ids: Sequence[str], start: datetime, days: int
) -> np.ndarray:
    """Views of each show on each of `days` days from `start`: (n_shows, days) float64;
    events outside those days or of other shows are left out."""
    out = np.zeros((len(show_ids), max(days, 0)))
    if days <= 0 or events.height == 0:
        return out
    row = pl.DataFrame({"show_id": list(show_ids), "row": np.arange(len(show_ids))})
    offset = (pl.col("event_timestamp") - pl.lit(start)).dt.total_microseconds()
    day = offset.floordiv(86_400_000_000).alias("day")
    counts = (
        events.select("show_id", day)
        .filter((pl.col("day") >= 0) & (pl.col("day") < days))
        .join(row, on="show_id", how="inner")
        .group_by("row", "day")
        .len()
    )
    out[counts["row"].to_numpy(), counts["day"].to_numpy()] = counts["len"].to_numpy()
    return out


def train_span_days(window: ForecastWindow) -> int:
    """Whole days from the first training event to the cutoff (0 without training events)."""
    first = window.train["event_timestamp"].min()
    return 0 if first is None else math.ceil((window.cutoff - first) / DAY)


def season_for(window: ForecastWindow, horizon: int) -> int:
    """The seasonal-naive season: a year when the training part holds a year plus the horizon
    (and the one-season-back window of an in-sample origin), else a week."""
    return 365 if train_span_days(window) >= 365 + horizon else 7


def _history(window: ForecastWindow, show_ids: Sequence[str], days: int) -> np.ndarray:
    """Daily views of the `days` days before the cutoff: (n, days), oldest first."""
    return daily_views(window.train, show_ids, window.cutoff - days * DAY, days)


def seasonal_naive(
    window: ForecastWindow, show_ids: Sequence[str], horizon: int, season: int | None = None
) -> np.ndarray:
    """Daily forecast (n, horizon): each day's views one season back, the last season repeated
    (day k copies day k mod season of the last season before the cutoff)."""
    season = season or season_for(window, horizon)
    last = _history(window, show_ids, season)  # (n, season)
    return last[:, np.arange(horizon) % season]


def recent_mean(
    window: ForecastWindow, show_ids: Sequence[str], horizon: int, days: int = 30
) -> np.ndarray:
    """Daily forecast (n, horizon): the mean daily views of the `days` before the cutoff."""
    rate = _history(window, show_ids, days).sum(1) / days  # (n,)
    return np.repeat(rate[:, None], horizon, axis=1)


def mase_scale(window: ForecastWindow, show_ids: Sequence[str], horizon: int, season: int) -> float:
    """The in-sample mean absolute error of the seasonal-naive `horizon`-day total, over every
    origin in the training part whose window and season-back window lie inside it, and every
    show: the MASE denominator (NaN when the training part is too short)."""
    span = min(train_span_days(window), 2 * 365 + season + horizon)  # recent origins suffice
    daily = _history(window, show_ids, span)  # (n, span)
    cum = np.concatenate([np.zeros((len(show_ids), 1)), daily.cumsum(1)], 1)  # (n, span + 1)
    origins = np.arange(season, span - horizon + 1)  # first day of each in-sample window
    if len(origins) == 0:
        return float("nan")
    actual = cum[:, origins + horizon] - cum[:, origins]  # (n, o)
    whole, rest = divmod(horizon, season)  # the last season repeated: whole copies + a part
    back = cum[:, origins] - cum[:, origins - season]  # (n, o) the season before the origin
    part = cum[:, origins - season + rest] - cum[:, origins - season]
    naive = whole * back + part
    return float(np.abs(actual - naive).mean())


def forecast_days(
    forecast: Forecast, show_ids: Sequence[str], cutoff: datetime, days: int
) -> np.ndarray:
    """A forecast as daily views (n, days) aligned to `show_ids`: an array is cut to `days`
    columns; a frame of (show_id, day_start, views) rows (days starting at the cutoff, as a
    model fitted as of the cutoff forecasts them) is placed by its day, floor((day_start -
    cutoff) / 1 day); missing days and shows forecast 0."""
    if isinstance(forecast, np.ndarray):
        if forecast.shape[0] != len(show_ids) or forecast.shape[1] < days:
            need = f"({len(show_ids)}, >= {days})"
            raise ValueError(f"forecast of shape {forecast.shape}: need {need}")
        return np.asarray(forecast[:, :days], dtype=np.float64)
    row = pl.DataFrame({"show_id": list(show_ids), "row": np.arange(len(show_ids))})
    since = (pl.col("day_start") - pl.lit(cutoff)).dt.total_microseconds()
    placed = (
        forecast.select("show_id", since.floordiv(86_400_000_000).alias("day"), "views")
        .filter((pl.col("day") >= 0) & (pl.col("day") < days))
        .join(row, on="show_id", how="inner")
    )
    out = np.zeros((len(show_ids), days))
    out[placed["row"].to_numpy(), placed["day"].to_numpy()] = placed["views"].to_numpy()
    return out


def forecast_quality(
    window: ForecastWindow,
    forecasts: Mapping[str, Forecast] | None = None,
    horizons: Sequence[int] = (7, 30),
    show_ids: Sequence[str] | None = None,
) -> pl.DataFrame:
    """MASE per method and horizon on the window's test days; the seasonal-naive and
    last-30-days baselines are always scored beside `forecasts` (name -> daily forecast).

    `show_ids` default: every show with an event in the window (train or test). Columns:
    method, horizon, days (test days scored: min(horizon, window.test_days)), season, mae
    (mean over shows of the absolute error of the total), mase (mae / scale), scale."""
    if show_ids is None:
        shows = pl.concat([window.train.select("show_id"), window.test.select("show_id")])
        show_ids = shows["show_id"].unique().sort().to_list()
    rows = []
    for horizon in horizons:
        days = min(int(horizon), window.test_days)
        if days <= 0:
            continue
        season = season_for(window, days)
        scale = mase_scale(window, show_ids, days, season)
        actual = daily_views(window.test, show_ids, window.cutoff, days).sum(1)  # (n,)
        methods = {
            SEASONAL_NAIVE: seasonal_naive(window, show_ids, days, season),
            RECENT_MEAN: recent_mean(window, show_ids, days),
        }
        for name, forecast in (forecasts or {}).items():
            methods[name] = forecast_days(forecast, show_ids, window.cutoff, days)
        for name, daily in methods.items():
            mae = float(np.abs(daily.sum(1) - actual).mean())
            mase = mae / scale if scale > 0 else float("nan")
            rows.append((name, int(horizon), days, season, mae, mase, scale))
    schema = {
        "method": pl.String, "horizon": pl.Int64, "days": pl.Int64, "season": pl.Int64,
        "mae": pl.Float64, "mase": pl.Float64, "scale": pl.Float64,
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")


__all__ = [
    "RECENT_MEAN",
    "SEASONAL_NAIVE",
    "ForecastWindow",
    "daily_views",
    "forecast_days",
    "forecast_quality",
    "mase_scale",
    "recent_mean",
    "season_for",
    "seasonal_naive",
]
