"""Show forecasts in the release: the temporal model's predicted views per show in the 7 and
30 days after the as-of, beside what each show drew in the same span before it.

    show_forecast: show_id, views_7d, recent_7d, growth_7d, views_30d, recent_30d, growth_30d,
                   model_version, as_of, event_timestamp (= as_of, for Feast's view)

growth_<h>d = (views + 1) / (recent + 1) - 1: the relative change from the h days before the
as-of to the h days after it, smoothed so that a show going from 0 to 1 view is not "infinitely"
trending. All three come from the model's `forecast` (the temporal model counts recent views
from the same lake it trained on); this module only stamps and publishes them.

Published as a table version named by the release (so it switches, and rolls back, with the
top-k tables), as the release's `show_forecast.parquet` (the source of Feast's `show_forecast`
view), and ranked by `tvrec query --trending`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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
        """show_id and, for each horizon h, `views_<h>d` (predicted views after the as-of),
        `recent_<h>d` (views in the h days before it) and `growth_<h>d`."""
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


def forecast_table(model: Forecaster, stamp: dict[str, str]) -> pl.DataFrame:
    """The model's forecast per show (predicted, recent and growth per horizon) stamped with
    `stamp`'s model_version and as_of."""
    as_of = datetime.fromisoformat(stamp["as_of"])
    columns = [f"{kind}_{h}d" for h in HORIZONS for kind in ("views", "recent", "growth")]
    return (
        model.forecast(HORIZONS)
        .select(pl.col("show_id"), pl.col(columns).cast(pl.Float32))
        .with_columns(
            pl.lit(stamp["model_version"]).alias("model_version"),
            pl.lit(stamp["as_of"]).alias("as_of"),
            pl.lit(as_of).dt.cast_time_unit("us").alias("event_timestamp"),
        )
    )
