"""The forecast sections of the evaluation report: MASE per horizon against the baselines
(`jobs/evaluation/forecast.py`), a chart of it, and the release-timing table a temporal model
learns (`tvrec.models.temporal.release_timing`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from tvrec.jobs.evaluation.forecast import RECENT_MEAN, SEASONAL_NAIVE

BASELINE_LABELS = {SEASONAL_NAIVE: "seasonal naive", RECENT_MEAN: "last-30-days mean"}
TIMING_ROWS = 20  # genres listed in the Markdown (the JSON has them all)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _label(method: str) -> str:
    return BASELINE_LABELS.get(method, method)


def _num(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.3f}"


def forecast_lines(quality: pl.DataFrame | None) -> list[str]:
    """Markdown: one row per method, MASE (and MAE) per horizon; lower is better."""
    if quality is None or quality.height == 0:
        return []
    horizons = quality["horizon"].unique().sort().to_list()
    head = " | ".join(f"MASE {h} d | MAE {h} d" for h in horizons)
    lines = [
        "",
        "Show forecasts: predicted views per show in the days after the cutoff against the "
        "views the test window drew (first views of a user–show pair, as the split counts "
        "them). MASE = mean absolute error of each show's total over the in-sample error of "
        "the seasonal-naive forecast; lower is better, under 1 beats seasonal naive as it did "
        "in training.",
        "",
        f"| method | {head} |",
        "| --- |" + " ---: | ---: |" * len(horizons),
    ]
    for method in quality["method"].unique(maintain_order=True).to_list():
        rows = quality.filter(pl.col("method") == method).sort("horizon")
        rows_ = rows.iter_rows(named=True)
        cells = " | ".join(f"{_num(r['mase'])} | {_num(r['mae'])}" for r in rows_)
        lines.append(f"| {_label(method)} | {cells} |")
    first = quality.row(0, named=True)
    season = "365-day" if first["season"] == 365 else f"{first['season']}-day"
    days = ", ".join(
        f"{r['horizon']} d → {r['days']} test days"
        for r in quality.unique("horizon").sort("horizon").iter_rows(named=True)
    )
    lines += ["", f"Seasonal naive uses a {season} season; horizons scored on: {days}."]
    return lines


def timing_lines(timing: pl.DataFrame | None) -> list[str]:
    """Markdown: per genre, the best premiere month and weekday and the figures behind them."""
    if timing is None or timing.height == 0:
        return []
    if timing["premieres_observed"].sum() == 0:  # e.g. an untimed log: nothing to learn from
        return [
            "",
            "Release timing: left out, no premiere (a show's first views) was seen in the "
            "training events.",
        ]
    top = timing.sort("shows", descending=True).head(TIMING_ROWS)
    lines = [
        "",
        "Release timing (temporal model): per genre, the premiere month and weekday with the "
        "most expected first-week views, from the learned weekday and month components; "
        "lifts are the best month / weekday over the mean one. "
        f"{min(timing.height, TIMING_ROWS)} of {timing.height} genres, most shows first.",
        "",
        "| genre | shows | best month | best weekday | first-week views (best) "
        "| (mean slot) | month lift | weekday lift | premieres seen |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in top.iter_rows(named=True):
        lines.append(
            f"| {r['genre']} | {r['shows']} | {MONTHS[r['best_month'] - 1]} "
            f"| {r['best_weekday_name']} | {r['first_week_views']:.2f} "
            f"| {r['mean_first_week_views']:.2f} | {r['month_lift']:.2f} "
            f"| {r['weekday_lift']:.2f} | {r['premieres_observed']} |"
        )
    return lines


def forecast_chart(quality: pl.DataFrame, title: str, path: Path) -> None:
    """Grouped bars: MASE per method, one group per horizon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = quality["method"].unique(maintain_order=True).to_list()
    horizons = quality["horizon"].unique().sort().to_list()
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(2.2 * len(horizons) + 3, 3.6))
    for i, method in enumerate(methods):
        rows = quality.filter(pl.col("method") == method).sort("horizon")
        x = np.arange(len(horizons)) + (i - (len(methods) - 1) / 2) * width
        values = rows["mase"].fill_nan(None).fill_null(0.0).to_numpy()
        ax.bar(x, values, width, label=_label(method))
        for xi, v in zip(x, values, strict=True):
            ax.annotate(f"{v:.2f}", (xi, v), xytext=(0, 3), textcoords="offset points",
                        ha="center", fontsize=7)  # fmt: skip
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(horizons)), [f"{h} days" for h in horizons])
    ax.set_ylabel("MASE (lower is better)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["forecast_chart", "forecast_lines", "timing_lines"]
