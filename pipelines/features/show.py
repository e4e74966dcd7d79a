"""Catalogue metadata features: one static row per show, categorical columns as vocab ids.

Metadata does not depend on viewing events, so every row carries the same `static_ts` (the
build passes 1970-01-01 UTC) and is visible to every point-in-time join. Unknown or missing
numbers are -1; unknown or missing categories are id 0 (see vocab.py).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from .temporal import TIMESTAMP, to_utc
from .vocab import Vocab

MISSING = -1


def _category_id(column: str, kind: str, vocab: Vocab) -> pl.Expr:
    """Vocab id (i64) of a string column; 0 when null or not in the vocabulary."""
    ids = vocab.ids(kind)
    return (
        pl.col(column)
        .str.strip_chars()
        .replace_strict(list(ids), list(ids.values()), default=0, return_dtype=pl.Int64)
        .fill_null(0)
    )


def _category_ids(column: str, kind: str, vocab: Vocab) -> pl.Expr:
    """Vocab ids (list[i64]) of a list[str] column, in the list's order; null -> []."""
    ids = vocab.ids(kind)
    mapped = (
        pl.element()
        .str.strip_chars()
        .replace_strict(list(ids), list(ids.values()), default=0, return_dtype=pl.Int64)
    )
    return pl.col(column).list.eval(mapped).fill_null(pl.lit([], dtype=pl.List(pl.Int64)))


def _number(column: str, dtype: type[pl.DataType]) -> pl.Expr:
    """A numeric column cast to dtype, -1 when missing (or NaN)."""
    value = pl.col(column).cast(pl.Float64)
    return pl.when(value.is_null() | value.is_nan()).then(MISSING).otherwise(value).cast(dtype)


def show_metadata_features(shows: pl.DataFrame, vocab: Vocab, static_ts: datetime) -> pl.DataFrame:
    """[show_id, event_timestamp, year, seasons, episodes, runtime_minutes, n_genres, genre_ids,
    network_id, age_rating_id, type_id, language_id, platform_ids, premiered_days], by show_id.

    year/seasons/episodes/premiered_days are i64 and runtime_minutes f32, all -1 when unknown;
    premiered_days counts days since 1970-01-01. n_genres counts the listed genres.
    """
    premiered = pl.col("premiered")
    return shows.sort("show_id").select(
        "show_id",
        pl.lit(to_utc(static_ts)).cast(TIMESTAMP).alias("event_timestamp"),
        premiered.dt.year().cast(pl.Int64).fill_null(MISSING).alias("year"),
        _number("seasons", pl.Int64).alias("seasons"),
        _number("episodes", pl.Int64).alias("episodes"),
        _number("runtime_minutes", pl.Float32).alias("runtime_minutes"),
        pl.col("genres").list.len().cast(pl.Int64).fill_null(0).alias("n_genres"),
        _category_ids("genres", "genres", vocab).alias("genre_ids"),
        _category_id("network", "networks", vocab).alias("network_id"),
        _category_id("age_rating", "age_ratings", vocab).alias("age_rating_id"),
        _category_id("type", "types", vocab).alias("type_id"),
        _category_id("language", "languages", vocab).alias("language_id"),
        _category_ids("platforms", "platforms", vocab).alias("platform_ids"),
        premiered.cast(pl.Int64).fill_null(MISSING).alias("premiered_days"),
    )
