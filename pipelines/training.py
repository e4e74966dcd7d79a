"""Point-in-time training sets: viewing events plus sampled negatives, joined through Feast.

Entity rows are (user_id, show_id, event_timestamp, label). Positives are the events before the
as-of time; each gets `negatives` shows the user had not watched before that event's own
timestamp (and that had premiered by then), drawn uniformly from the catalogue. Features come
only from Feast's `get_historical_features` with the model's FeatureService.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import polars as pl

from .build import read_manifest
from .errors import ConfigError
from .ingest import read_lake
from .store import feature_store, historical_features
from .workdir import Workdir

OVERSAMPLE = 4  # candidates drawn per wanted negative, before rejecting already-watched ones


def entity_rows(
    events: pl.DataFrame,
    shows: pl.DataFrame,
    negatives: int,
    seed: int,
    history: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Positives (label 1) and sampled negatives (label 0) at the same timestamps.

    `history` is the full event log before the as-of time (defaults to `events`); negatives
    are checked against it, so a subset of positives never yields an already-seen negative.
    """
    history = events if history is None else history
    pos = events.select(
        "user_id", "show_id", "event_timestamp", pl.lit(1, dtype=pl.Int8).alias("label")
    )
    if negatives == 0 or pos.height == 0:
        return pos
    rng = np.random.default_rng(seed)
    catalogue = shows.select("show_id", "premiered")
    n_cand = pos.height * negatives * OVERSAMPLE
    cand = pos.select(
        pl.col("user_id", "event_timestamp").repeat_by(negatives * OVERSAMPLE).explode(),
        pl.int_range(pl.len() * negatives * OVERSAMPLE).alias("cand_id"),
    ).with_columns(
        pl.Series("show_id", catalogue["show_id"].to_numpy()[rng.integers(0, shows.height, n_cand)])
    )
    first_watch = history.group_by("user_id", "show_id").agg(
        pl.col("event_timestamp").min().alias("first_watch")
    )
    cand = (
        cand.join(first_watch, on=["user_id", "show_id"], how="left")
        .join(catalogue, on="show_id", how="left")
        # only shows unseen before the row's own time and already premiered by then
        .filter(
            pl.col("first_watch").is_null() | (pl.col("first_watch") >= pl.col("event_timestamp"))
        )
        .filter(
            pl.col("premiered").is_null()
            | (pl.col("premiered") <= pl.col("event_timestamp").dt.date())
        )
        .unique(subset=["user_id", "event_timestamp", "show_id"], keep="first", maintain_order=True)
    )
    neg = (
        cand.with_columns(pl.int_range(pl.len()).over("user_id", "event_timestamp").alias("k"))
        .filter(pl.col("k") < negatives)
        .select("user_id", "show_id", "event_timestamp", pl.lit(0, dtype=pl.Int8).alias("label"))
    )
    return pl.concat([pos, neg]).sort(
        "event_timestamp", "user_id", "label", descending=[False, False, True]
    )


def training_set(
    workdir: Workdir,
    service: str,
    *,
    as_of: datetime | None = None,
    negatives: int = 1,
    seed: int = 0,
    limit: int | None = None,
) -> pd.DataFrame:
    """The training set of the model behind FeatureService `service`, point in time.

    `as_of` defaults to the as-of time of the current feature build and may not be later
    (features do not exist past it). `limit` keeps the most recent positives only.
    """
    built_as_of = datetime.fromisoformat(read_manifest(workdir)["as_of"])
    as_of = as_of or built_as_of
    if as_of > built_as_of:
        raise ConfigError(
            f"as-of {as_of.isoformat()} is after the feature build's {built_as_of.isoformat()}; "
            "rebuild features with a later --as-of"
        )
    ds = read_lake(workdir)
    history = ds.events.filter(pl.col("event_timestamp") < as_of)
    events = history.tail(limit) if limit is not None else history
    rows = entity_rows(events, ds.shows, negatives, seed, history).to_pandas()
    store = feature_store(workdir.root)
    out = historical_features(store, rows, service)
    return out.sort_values(
        ["event_timestamp", "user_id", "label"], ascending=[True, True, False], ignore_index=True
    )


def entity_features(
    workdir: Workdir, service: str, entity: str, ids: list[str], as_of: datetime
) -> pd.DataFrame:
    """Feature values of each show (entity="show_id") or user ("user_id") as of `as_of`,
    through Feast's point-in-time join with the FeatureService `service`."""
    import pandas as pd

    rows = pd.DataFrame({entity: ids, "event_timestamp": pd.Timestamp(as_of)})
    other = "user_id" if entity == "show_id" else "show_id"
    fs = feature_store(workdir.root)
    views = [p.name for p in fs.get_feature_service(service).feature_view_projections]
    keys = {fv.name: fv.join_keys for fv in fs.list_feature_views() if fv.name in views}
    if any(other in k for k in keys.values()):  # services mixing entities: drop the other's
        rows[other] = ""
    out = historical_features(fs, rows, service)
    return out.set_index(entity).loc[ids].reset_index()
