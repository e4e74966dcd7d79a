"""MovieLens 100K adapter: ratings with real timestamps, movies with genres, user demographics.

Files (GroupLens ml-100k layout, no headers):
- u.data  tab-separated user id, item id, rating 1-5, unix seconds -> events (weight = rating)
- u.item  pipe-separated, **latin-1**: id, title "Name (1995)", release date dd-Mon-yyyy,
          video release date, IMDb URL, then one 0/1 flag per genre of u.genre -> shows
- u.genre pipe-separated genre name and flag index
- u.user  pipe-separated id, age, gender, occupation, zip code -> users (optional)
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..contract import MAX_EPOCH_SECONDS, RawDataset, refuse_placeholder_epochs
from ..errors import DataError
from ._common import (
    optional_file,
    parse_number,
    parse_rating,
    read_delimited,
    read_text,
    require_file,
    rows_where,
)

ITEM_FIELDS = ("show_id", "title", "release_date", "video_release_date", "imdb_url")
DATA_FIELDS = ("user_id", "show_id", "weight", "unix_seconds")
RATING_SCALE = (1, 5)  # u.data's rating, the events' weight
USER_FIELDS = ("user_id", "age", "gender", "occupation", "zip_code")
# The flag for "unknown" means "no genre recorded": it does not become a genre.
NO_GENRE = "unknown"


def read_genres(path: Path, encoding: str | None = None) -> list[str]:
    """Genre names in flag order, from u.genre lines "Action|1"."""
    pairs: dict[int, str] = {}
    text = read_text(path, encoding, separator="|", header=False)
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, index = line.rpartition("|")
        if not sep or not index.strip().isdigit() or not name.strip():
            raise DataError(str(path), "expected 'Genre|index' lines", rows=[line_no])
        pairs[int(index)] = name.strip()
    if sorted(pairs) != list(range(len(pairs))):
        raise DataError(str(path), f"genre indexes are not 0..n-1: {sorted(pairs)}")
    return [pairs[i] for i in range(len(pairs))]


def _unix_seconds(df: pl.DataFrame, source: str) -> pl.Series:
    """u.data's timestamps as Int64 epoch seconds; a DataError for a blank one, one beyond
    what a datetime holds, and one of 0 or less (an unknown time's placeholder)."""
    seconds = parse_number(df, "unix_seconds", source, pl.Int64())
    if seconds.is_null().any():
        raise DataError(
            source, "missing timestamp", column="unix_seconds", rows=rows_where(seconds.is_null())
        )
    far = seconds.abs() > MAX_EPOCH_SECONDS
    if far.any():
        raise DataError.where(
            source,
            "epoch seconds out of range (beyond year 9900; milliseconds?)",
            "unix_seconds",
            far,
            df["unix_seconds"],
        )
    how = "or leave the rating out"
    refuse_placeholder_epochs(seconds, source, "unix_seconds", df["unix_seconds"], how)
    return seconds


def read_events(path: Path, encoding: str | None = None) -> pl.DataFrame:
    """u.data as canonical-ready events (string ids, UTC timestamps, weight = rating)."""
    df = read_delimited(path, separator="\t", names=DATA_FIELDS, encoding=encoding)
    source = str(path)
    for col in ("user_id", "show_id"):
        ids = parse_number(df, col, source, pl.Int64())
        if ids.is_null().any():
            raise DataError(source, "empty id", column=col, rows=rows_where(ids.is_null()))
    seconds = _unix_seconds(df, source)
    weight = parse_rating(df, "weight", source, RATING_SCALE)
    return pl.DataFrame(
        {
            "user_id": df["user_id"].str.strip_chars(),
            "show_id": df["show_id"].str.strip_chars(),
            "event_timestamp": pl.from_epoch(seconds, time_unit="s")
            .dt.cast_time_unit("us")
            .dt.replace_time_zone("UTC"),
            "weight": weight,
            "event_type": pl.Series(["rating"] * df.height, dtype=pl.String),
        }
    )


def _genre_list(df: pl.DataFrame, genres: list[str], source: str) -> pl.Expr:
    """The names of the genre flags set to 1 (flags must be 0 or 1)."""
    for genre in genres:
        flag = df[genre].str.strip_chars()
        bad = ~flag.is_in(["0", "1"])
        if bad.any():
            raise DataError(source, "genre flag is not 0 or 1", column=genre, rows=rows_where(bad))
    named = [pl.when(pl.col(g).str.strip_chars() == "1").then(pl.lit(g)) for g in genres]
    kept = [e for e, g in zip(named, genres, strict=True) if g.lower() != NO_GENRE]
    return pl.concat_list(kept).list.drop_nulls().alias("genres")


def read_shows(path: Path, genres: list[str], encoding: str | None = None) -> pl.DataFrame:
    """u.item (latin-1 unless `encoding` says otherwise) as shows: title, premiered from the
    release date, genres, type movie."""
    df = read_delimited(
        path,
        separator="|",
        names=[*ITEM_FIELDS, *genres],
        encoding=encoding or "latin-1",
        quoting=False,
    )
    source = str(path)
    released = df["release_date"].str.strip_chars().replace("", None)
    premiered = released.str.to_date("%d-%b-%Y", strict=False)
    bad = premiered.is_null() & released.is_not_null()
    if bad.any():
        raise DataError.where(
            source,
            "unparsable release date (expected dd-Mon-yyyy)",
            "release_date",
            bad,
            df["release_date"],
        )
    return df.select(
        pl.col("show_id").str.strip_chars(),
        pl.col("title").str.strip_chars(),
        _genre_list(df, genres, source),
        premiered.alias("premiered"),
        pl.lit("movie").alias("type"),
        # extra columns end up in the canonical `attributes` JSON
        pl.col("title").str.extract(r"\((\d{4})\)\s*$", 1).alias("year"),
        pl.col("video_release_date").str.strip_chars().replace("", None),
        pl.col("imdb_url").str.strip_chars().replace("", None),
    )


def read_users(path: Path, encoding: str | None = None) -> pl.DataFrame:
    """u.user as users; age, gender, occupation and zip code become attributes."""
    df = read_delimited(path, separator="|", names=USER_FIELDS, encoding=encoding)
    return df.with_columns(pl.all().str.strip_chars())


def load(directory: Path, encoding: str | None = None) -> RawDataset:
    """Read a MovieLens 100K directory as it is (`encoding`: of every file, u.item included;
    default UTF-8, u.item latin-1)."""
    data = require_file(directory, "u.data")
    item = require_file(directory, "u.item")
    genres = read_genres(require_file(directory, "u.genre"), encoding)
    user = optional_file(directory, "u.user")
    sources = {"shows": str(item), "events": str(data)}
    users = None
    if user is not None:
        users = read_users(user, encoding)
        sources["users"] = str(user)
    return RawDataset(
        name=directory.name,
        shows=read_shows(item, genres, encoding),
        events=read_events(data, encoding),
        users=users,
        sources=sources,
    )
