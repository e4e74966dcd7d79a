"""Point-in-time training sets: viewing events plus sampled negatives, joined through Feast.

Entity rows are (user_id, show_id, event_timestamp, label). Positives are the events before the
as-of time; each gets `negatives` shows the user had not watched before that event's own
timestamp (and that had premiered by then), drawn uniformly from the catalogue. Features come
only from Feast's `get_historical_features` with the model's FeatureService.

Streamed: the events are cut into parts of `part_events` positives in time order; each part's
negatives are sampled, joined through Feast and written as one Parquet file, so no stage holds
the whole training set with its negatives and features in memory (`training_set_parts`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq

from .build import check_as_of, read_manifest
from .contract import aired_by
from .errors import ConfigError
from .ingest import read_lake
from .store import feature_store, historical_features, historical_table, values_per_row
from .workdir import Workdir

OVERSAMPLE = 4  # candidates drawn per wanted negative, before rejecting already-watched ones
PART_EVENTS = 250_000  # positives per training-set part, at most ...
PART_VALUES = 25_000_000  # ... and at most about this many values (wide rows: fewer rows)
ORDER = (["event_timestamp", "user_id", "label"], [True, True, False])  # rows within a part


def entity_rows(
    events: pl.DataFrame,
    shows: pl.DataFrame,
    negatives: int,
    seed: int,
    history: pl.DataFrame | None = None,
    first_watch: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Positives (label 1) and sampled negatives (label 0) at the same timestamps.

    `history` is the full event log before the as-of time (defaults to `events`); negatives
    are checked against it, so a subset of positives never yields an already-seen negative.
    `first_watch` (user_id, show_id, first_watch) may be given precomputed from it.
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
    if first_watch is None:
        first_watch = first_watches(history)
    cand = (
        cand.join(first_watch, on=["user_id", "show_id"], how="left")
        .join(catalogue, on="show_id", how="left")
        # only shows unseen before the row's own time and already premiered by then
        .filter(
            pl.col("first_watch").is_null() | (pl.col("first_watch") >= pl.col("event_timestamp"))
        )
        .filter(aired_by(pl.col("event_timestamp").dt.date()))
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


def first_watches(history: pl.DataFrame) -> pl.DataFrame:
    """(user_id, show_id, first_watch): when each user first watched each show."""
    return history.group_by("user_id", "show_id").agg(
        pl.col("event_timestamp").min().alias("first_watch")
    )


def _checked_as_of(workdir: Workdir, as_of: datetime | None) -> datetime:
    """`as_of`, defaulting to the current feature build's and never later than it."""
    built_as_of = datetime.fromisoformat(read_manifest(workdir)["as_of"])
    as_of = as_of or built_as_of
    if as_of > built_as_of:
        raise ConfigError(
            f"as-of {as_of.isoformat()} is after the feature build's {built_as_of.isoformat()}; "
            "rebuild features with a later --as-of"
        )
    return as_of


def _entity_parts(
    workdir: Workdir,
    as_of: datetime,
    negatives: int,
    seed: int,
    limit: int | None,
    part_events: int,
) -> Iterator[pl.DataFrame]:
    """Entity rows part by part, in time order; part i samples its negatives with seed + i
    (one part: exactly the single-frame training set of the same seed)."""
    ds = read_lake(workdir)
    history = ds.events.filter(pl.col("event_timestamp") < as_of).sort(
        "event_timestamp", maintain_order=True
    )
    check_as_of(ds, history, as_of)  # no event before it: refused, not an empty training set
    events = history.tail(limit) if limit is not None else history
    first_watch = first_watches(history) if negatives else None
    for i, start in enumerate(range(0, max(events.height, 1), part_events)):
        part = events.slice(start, part_events)
        yield entity_rows(part, ds.shows, negatives, seed + i, history, first_watch)


def training_set_parts(
    workdir: Workdir,
    service: str,
    out_dir: Path,
    *,
    as_of: datetime | None = None,
    negatives: int = 1,
    seed: int = 0,
    limit: int | None = None,
    part_events: int = PART_EVENTS,
) -> list[Path]:
    """The training set of FeatureService `service`, point in time, written as Parquet parts
    (`part-00000.parquet`, ... in time order) into `out_dir`, which is replaced whole and
    atomically (written aside, then swapped). Returns the part files. A part holds at most
    `part_events` positives and about PART_VALUES values with its negatives and features, so
    a service with text embeddings per row gets smaller parts."""
    as_of = _checked_as_of(workdir, as_of)
    store = feature_store(workdir.root)
    width = values_per_row(store, service) * (1 + negatives)
    part_events = max(1_000, min(part_events, PART_VALUES // width))
    staging = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        for i, rows in enumerate(
            _entity_parts(workdir, as_of, negatives, seed, limit, part_events)
        ):
            part = historical_table(store, rows.to_pandas(), service)
            order = [(c, "ascending" if up else "descending") for c, up in zip(*ORDER, strict=True)]
            pq.write_table(part.sort_by(order), staging / f"part-{i:05d}.parquet")
        _swap(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(out_dir.glob("part-*.parquet"))


def _swap(staging: Path, target: Path) -> None:
    """Make `staging` the directory `target` (the old one removed after the rename)."""
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def read_parts(parts: list[Path], columns: list[str] | None = None) -> pd.DataFrame:
    """Parts back as one frame (small training sets, tests and exports of a few columns)."""
    if not parts:
        raise ConfigError("the training set has no parts")
    return pq.ParquetDataset([str(p) for p in parts]).read(columns=columns).to_pandas()


def write_parts(parts: list[Path], out_file: Path) -> tuple[int, int]:
    """Concatenate parts into one .parquet or .csv file (lists joined by "|" in CSV), one part
    in memory at a time, written aside and swapped in; returns (rows, columns)."""
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    rows, columns, writer = 0, 0, None
    try:
        for i, path in enumerate(parts):
            table = pq.read_table(path)
            rows, columns = rows + table.num_rows, table.num_columns
            if out_file.suffix.lower() == ".csv":
                _append_csv(pl.from_arrow(table), tmp, header=i == 0)
                continue
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(out_file)
    return rows, columns


def _append_csv(frame: pl.DataFrame, path: Path, header: bool) -> None:
    lists = pl.col(pl.List(pl.Float32), pl.List(pl.Float64), pl.List(pl.Int64))
    frame = frame.with_columns(lists.cast(pl.List(pl.String)).list.join("|"))
    with path.open("w" if header else "a", encoding="utf-8") as f:
        frame.write_csv(f, include_header=header)


def training_set(
    workdir: Workdir,
    service: str,
    *,
    as_of: datetime | None = None,
    negatives: int = 1,
    seed: int = 0,
    limit: int | None = None,
) -> pd.DataFrame:
    """The training set of the model behind FeatureService `service`, point in time, as one
    frame (built part by part; for small sets, tests and exports — trainers read the parts).

    `as_of` defaults to the as-of time of the current feature build and may not be later
    (features do not exist past it). `limit` keeps the most recent positives only.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tvrec-training-") as tmp:
        parts = training_set_parts(
            workdir, service, Path(tmp) / "parts", as_of=as_of, negatives=negatives,
            seed=seed, limit=limit,
        )  # fmt: skip
        frame = read_parts(parts)
    return frame.sort_values(ORDER[0], ascending=ORDER[1], ignore_index=True)


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
