"""Anime adapter (CaseRecommender's 5,000-user sample of the Kaggle MyAnimeList export).

Files, tab-separated with a header:
- anime_history.dat  User_ID, Anime_ID, Feedback (always 1): the users' completed lists -> events
- anime_ratings.dat  User_ID, Anime_ID, Feedback (1-10): a rating for some of those -> weight
- anime_info.dat     anime_ids, name, genre, type, episodes, rating, members -> shows

How history ids map to anime_info rows: the README says users and items were renumbered
consecutively from 1, and that anime_info's first column holds "myanimelist.net's unique id".
In this copy that column does NOT hold MAL ids (Kimi no Na wa. is 32281 on MAL but 1723 here,
Fullmetal Alchemist: Brotherhood 5114 vs 82): it is a permutation of 1..7,390, the renumbered
ids themselves, while the row order is the Kaggle file's order (by mean rating). Evidence, with
the most-watched history ids: by the `anime_ids` column, 6 -> Death Note (1,013,917 members),
159 -> Sword Art Online, 202 -> Shingeki no Kyojin, the most-joined titles on MAL; by row order,
6 -> a Haikyuu!! film (93,351 members). Spearman correlation between a title's history count and
its members: 0.95 joining on `anime_ids`, 0.56 joining on row order. So `anime_ids` is the key.

The export has no timestamps: events are untimed and share one synthetic timestamp.
Episode counts not known when the export was made (titles still airing) read "Unknown" in the
Kaggle file (this 5k-user copy has none): that token becomes null; any other episode count
that is not a whole number of 0 or more is refused.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from ..contract import RawDataset, number_column
from ._common import (
    clean_text,
    map_unique,
    optional_file,
    parse_rating,
    read_delimited,
    require_file,
    require_values,
    split_list,
)

HISTORY_FILE = "anime_history.dat"
RATINGS_FILE = "anime_ratings.dat"
INFO_FILE = "anime_info.dat"
EVENT_COLUMNS = ("User_ID", "Anime_ID")
INFO_COLUMNS = ("anime_ids", "name", "genre", "type", "episodes", "rating", "members")
RATING_SCALE = (1, 10)  # Feedback in anime_ratings.dat (its README: "Range of ratings: 1 - 10")
UNKNOWN_EPISODES = "Unknown"  # the export's episode count of a title still airing
EPISODES_RULE = f"a count of episodes, 0 or more; blank or {UNKNOWN_EPISODES} if unknown"
# The Kaggle export dates from late 2016 / early 2017; every event gets this one instant.
SYNTHETIC_TIMESTAMP = datetime(2017, 1, 1, tzinfo=UTC)
UNTIMED_NOTE = (
    "untimed: the anime export has no timestamps; every event carries the synthetic "
    f"timestamp {SYNTHETIC_TIMESTAMP:%Y-%m-%dT%H:%M:%SZ} (the Kaggle export's era), so "
    "time-based splits and recency features are meaningless here"
)


def _read_interactions(path: Path, encoding: str | None = None) -> pl.DataFrame:
    """A history or ratings file as string ids (checked non-empty) plus the raw Feedback."""
    df = read_delimited(
        path, separator="\t", required=(*EVENT_COLUMNS, "Feedback"), encoding=encoding
    )
    for col in EVENT_COLUMNS:
        require_values(df, col, str(path))
    return df.select(
        pl.col("User_ID").str.strip_chars().alias("user_id"),
        pl.col("Anime_ID").str.strip_chars().alias("show_id"),
        pl.col("Feedback"),
    )


def read_shows(path: Path, encoding: str | None = None) -> pl.DataFrame:
    """anime_info.dat as shows; names are HTML-unescaped ("Gintama&#039;" -> "Gintama'")."""
    # Titles may start with a quote ("Bungaku Shoujo" Movie), so quotes are plain text.
    df = read_delimited(
        path, separator="\t", required=INFO_COLUMNS, quoting=False, encoding=encoding
    )
    require_values(df, "anime_ids", str(path))
    df = df.with_columns(map_unique(df["name"], html.unescape, pl.String()))
    episodes = clean_text(pl.col("episodes"))
    df = df.with_columns(pl.when(episodes != UNKNOWN_EPISODES).then(episodes).alias("episodes"))
    return df.select(
        pl.col("anime_ids").str.strip_chars().alias("show_id"),
        clean_text(pl.col("name")).alias("title"),
        split_list(pl.col("genre"), ",").alias("genres"),
        clean_text(pl.col("type")).alias("type"),
        number_column(df, "episodes", str(path), EPISODES_RULE, whole=True),
        clean_text(pl.col("rating")).alias("rating"),
        clean_text(pl.col("members")).alias("members"),
    )


def build_events(history: pl.DataFrame, ratings: pl.DataFrame | None) -> pl.DataFrame:
    """History rows, weighted by the user's rating where there is one (else 1)."""
    if ratings is None:
        events = history.select("user_id", "show_id", pl.lit(None, dtype=pl.Float64).alias("r"))
    else:
        rated = ratings.select("user_id", "show_id", pl.col("rating").alias("r"))
        rated = rated.unique(subset=["user_id", "show_id"], keep="last", maintain_order=True)
        events = history.select("user_id", "show_id").join(
            rated, on=["user_id", "show_id"], how="left", maintain_order="left"
        )
    return events.select(
        "user_id",
        "show_id",
        pl.lit(SYNTHETIC_TIMESTAMP, dtype=pl.Datetime("us", "UTC")).alias("event_timestamp"),
        pl.col("r").fill_null(1.0).alias("weight"),
        # "rating" events carry the user's 1-10 score; "completed" ones the default weight 1
        pl.when(pl.col("r").is_null())
        .then(pl.lit("completed"))
        .otherwise(pl.lit("rating"))
        .alias("event_type"),
    )


def _read_ratings(path: Path, encoding: str | None = None) -> pl.DataFrame:
    df = _read_interactions(path, encoding)
    rating = parse_rating(df, "Feedback", str(path), RATING_SCALE)
    return df.with_columns(rating.alias("rating")).drop("Feedback")


def load(directory: Path, encoding: str | None = None) -> RawDataset:
    """Read the anime directory; events of titles missing from anime_info are dropped."""
    history_path = require_file(directory, HISTORY_FILE)
    info_path = require_file(directory, INFO_FILE)
    ratings_path = optional_file(directory, RATINGS_FILE)
    notes = [UNTIMED_NOTE]
    shows = read_shows(info_path, encoding)
    history = _read_interactions(history_path, encoding)
    ratings = None
    if ratings_path is not None:
        ratings = _read_ratings(ratings_path, encoding)
        unmatched = ratings.join(history, on=["user_id", "show_id"], how="anti").height
        if unmatched:
            notes.append(f"ignored {unmatched} ratings with no matching row in {HISTORY_FILE}")
    else:
        notes.append(f"{RATINGS_FILE} not found: every event has weight 1")
    events = build_events(history, ratings)
    known = events["show_id"].is_in(shows["show_id"].implode())
    if not known.all():
        lost = events.filter(~known)
        notes.append(
            f"dropped {lost.height} events of {lost['show_id'].n_unique()} anime ids "
            f"that have no row in {INFO_FILE}"
        )
        events = events.filter(known)
    return RawDataset(
        name=directory.name,
        shows=shows,
        events=events,
        sources={"shows": str(info_path), "events": str(history_path)},
        timed=False,
        notes=notes,
    )
