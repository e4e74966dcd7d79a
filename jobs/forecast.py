"""Show forecasts in the release: the temporal model's predicted views per show in the 7 and
30 days after the as-of, beside what each show drew in the same span before it.

    show_forecast: show_id, views_7d, recent_7d, growth_7d, views_30d, recent_30d, growth_30d,
                   model_version, as_of, event_timestamp (= as_of, for Feast's view)

growth_<h>d = (views + 1) / (recent + 1) - 1: the relative change from the h days before the
as-of to the h days after it, smoothed so that a show going from 0 to 1 view is not "infinitely"
trending. The model's own figures are kept when it gives them (the temporal model counts recent
views from the same lake); otherwise they are counted here from the lake's events.

Published as a table version named by the release (so it switches, and rolls back, with the
top-k tables), as the release's `show_forecast.parquet` (the source of Feast's `show_forecast`
view), and ranked by `tvrec query --trending`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import polars as pl

from tvrec.pipelines.workdir import Workdir

if TYPE_CHECKING:
    from tvrec.models.base import Recommender

FORECAST_TABLE = "show_forecast"
FORECAST_MODEL = "temporal"
HORIZONS = (7, 30)


class Forecaster(Protocol):
    def forecast(self, horizons: Sequence[int] = HORIZONS) -> pl.DataFrame:
        """show_id and `views_<h>d` for each horizon h: predicted views after the as-of."""
        ...


def trained_forecaster(wd: Workdir) -> Recommender | None:
    """The trained temporal model, if there is one built from the current lake (a model of
    another lake would forecast shows that are not served)."""
    from tvrec.models.registry import load_model
    from tvrec.pipelines.model_inputs import lake_snapshot

    path = wd.root / "models" / FORECAST_MODEL
    if not path.exists():
        return None
    model = load_model(path)
    if model.manifest is None or model.manifest.data_snapshot != lake_snapshot(wd):
        return None
    return model if hasattr(model, "forecast") else None


def forecast_table(model: Forecaster, events: pl.DataFrame, stamp: dict[str, str]) -> pl.DataFrame:
    """The model's forecast per show with the views of the same span before the as-of and the
    difference (growth); `stamp` holds the model_version and as_of."""
    as_of = datetime.fromisoformat(stamp["as_of"])
    frame = model.forecast(HORIZONS).drop("as_of", strict=False)
    before = events.filter(pl.col("event_timestamp") < as_of)
    columns = ["show_id"]
    for h in HORIZONS:
        views, recent, growth = f"views_{h}d", f"recent_{h}d", f"growth_{h}d"
        if recent not in frame.columns:
            counted = (
                before.filter(pl.col("event_timestamp") >= as_of - timedelta(days=h))
                .group_by("show_id")
                .agg(pl.len().alias(recent))
            )
            frame = frame.join(counted, on="show_id", how="left")
            frame = frame.with_columns(pl.col(recent).fill_null(0))
        if growth not in frame.columns:
            frame = frame.with_columns(
                ((pl.col(views) + 1.0) / (pl.col(recent) + 1.0) - 1.0).alias(growth)
            )
        columns += [views, recent, growth]
    return frame.select(pl.col(columns[0]), pl.col(columns[1:]).cast(pl.Float32)).with_columns(
        pl.lit(stamp["model_version"]).alias("model_version"),
        pl.lit(stamp["as_of"]).alias("as_of"),
        pl.lit(as_of).dt.cast_time_unit("us").alias("event_timestamp"),
    )
