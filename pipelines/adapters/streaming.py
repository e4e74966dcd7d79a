"""Streaming-catalogue adapter: one `<platform>_titles.csv` per platform (Kaggle OTT exports).

Each file has show_id, type (Movie / TV Show), title, director, cast, country, date_added
("September 25, 2021"), release_year, rating (age rating), duration ("90 min" / "2 Seasons"),
listed_in (comma-separated genres) and description. The raw exports start with a UTF-8 BOM and
use CRLF line ends; some Hulu descriptions start with a zero-width space.

- show ids are prefixed by the platform ("netflix:s1") since every file numbers from s1;
- a title on two platforms stays two shows (one per catalogue entry);
- credits' person_id is derived from the normalised name (see `person_slug`), so the same person
  links titles across catalogues;
- premiered is date_added when that falls in the release year (a platform premiere), else
  January 1 of release_year; date_added itself is kept as an attribute;
- a known export defect puts the duration in the rating column ("74 min" as rating, empty
  duration) for a few rows: the value is moved back to the duration;
- a duration is "90 min" or "2 Seasons" (or blank), a release year a number (or blank),
  date_added "September 25, 2021" or 2021-09-25 (or blank): anything else is refused,
  naming the file and row.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from ..contract import RawDataset
from ..errors import DataError
from ._common import (
    CATALOGUE_NOTE,
    clean_text,
    empty_events,
    map_unique,
    parse_year,
    person_slug,
    read_delimited,
    require_values,
    rows_where,
    split_list,
    with_optional,
)

SUFFIX = "_titles.csv"
# Display names of the known platforms; other `<name>_titles.csv` files get a title-cased name.
PLATFORM_NAMES = {"netflix": "Netflix", "hulu": "Hulu", "disney_plus": "Disney+"}
KNOWN_FILES = tuple(f"{p}{SUFFIX}" for p in PLATFORM_NAMES)
REQUIRED = ("show_id", "type", "title")
OPTIONAL = (
    "director",
    "cast",
    "country",
    "date_added",
    "release_year",
    "rating",
    "duration",
    "listed_in",
    "description",
)
_DURATION = r"^\s*\d+\s*(min|Seasons?)\s*$"


def catalogue_files(directory: Path) -> list[Path]:
    """The `<platform>_titles.csv` files of a directory, known platforms first."""
    known = [directory / name for name in KNOWN_FILES if os.path.lexists(directory / name)]
    others = [p for p in sorted(directory.glob(f"*{SUFFIX}")) if p.name not in KNOWN_FILES]
    return known + others


def platform_of(path: Path) -> tuple[str, str]:
    """(id prefix, display name) of a catalogue file: netflix_titles.csv -> (netflix, Netflix)."""
    key = path.name.removesuffix(SUFFIX).lower()
    return key, PLATFORM_NAMES.get(key, key.replace("_", " ").title())


def _fix_shifted_duration(df: pl.DataFrame) -> pl.DataFrame:
    """Move a duration found in the rating column (and missing from duration) back."""
    shifted = pl.col("rating").str.contains(_DURATION) & pl.col("duration").is_null()
    return df.with_columns(
        pl.when(shifted).then(pl.col("rating")).otherwise(pl.col("duration")).alias("duration"),
        pl.when(shifted).then(None).otherwise(pl.col("rating")).alias("rating"),
    )


def _require_durations(df: pl.DataFrame, source: str) -> None:
    """A DataError naming the rows whose duration is neither "N min" nor "N Season(s)"."""
    bad = df["duration"].is_not_null() & ~df["duration"].str.contains(_DURATION)
    if bad.any():
        why = "not a duration (use '90 min' or '2 Seasons'; blank if unknown)"
        raise DataError.where(source, why, "duration", bad, df["duration"])


def _date_added(text: pl.Expr) -> pl.Expr:
    """The export's "September 25, 2021", or an ISO date (a sheet re-saved); else null."""
    return pl.coalesce(
        text.str.to_date("%B %d, %Y", strict=False), text.str.to_date("%Y-%m-%d", strict=False)
    )


def _dates_added(df: pl.DataFrame, source: str) -> pl.Series:
    """date_added as dates; a DataError naming the rows whose value is not a date (it would
    be lost)."""
    added = df.select(_date_added(pl.col("date_added")))["date_added"]
    bad = df["date_added"].is_not_null() & added.is_null()  # blank is already null
    if bad.any():
        why = "not a date (use 'September 25, 2021' or 2021-09-25; blank if unknown)"
        raise DataError.where(source, why, "date_added", bad, df["date_added"])
    return added


def _premiered(date_added: pl.Expr, year: pl.Expr) -> pl.Expr:
    """date_added when it is in the release year, else January 1 of the release year."""
    return (
        pl.when(date_added.dt.year() == year)
        .then(date_added)
        .otherwise(pl.date(year, 1, 1))
        .alias("premiered")
    )


def read_catalogue(path: Path, encoding: str | None = None) -> pl.DataFrame:
    """One platform's file as shows (with director and cast kept for the credits)."""
    prefix, platform = platform_of(path)
    df = read_delimited(path, required=REQUIRED, encoding=encoding)
    # checked per file so that row numbers point into this file, not the combined table
    for col in ("show_id", "title"):
        require_values(df, col, str(path))
    dup = df["show_id"].str.strip_chars().is_duplicated()
    if dup.any():
        raise DataError(str(path), "duplicated show_id", column="show_id", rows=rows_where(dup))
    df = with_optional(df, OPTIONAL).with_columns(clean_text(pl.col(c)) for c in OPTIONAL)
    df = _fix_shifted_duration(df)
    _require_durations(df, str(path))
    added = pl.lit(_dates_added(df, str(path)))
    year = pl.lit(parse_year(df, "release_year", str(path)))
    duration = pl.col("duration")
    return df.select(
        (pl.lit(f"{prefix}:") + clean_text(pl.col("show_id"))).alias("show_id"),
        clean_text(pl.col("title")).alias("title"),
        pl.col("description"),
        split_list(pl.col("listed_in"), ",").alias("genres"),
        pl.lit([platform], dtype=pl.List(pl.String)).alias("platforms"),
        _premiered(added, year),
        clean_text(pl.col("type")).alias("type"),
        duration.str.extract(r"^(\d+)\s*Seasons?$", 1).alias("seasons"),
        duration.str.extract(r"^(\d+)\s*min$", 1).alias("runtime_minutes"),
        # the first listed country; the full list stays in the attributes
        split_list(pl.col("country"), ",").list.first().alias("country"),
        pl.col("rating").alias("age_rating"),
        # extra columns end up in the canonical `attributes` JSON
        pl.col("country").alias("countries"),
        added.alias("date_added"),
        pl.col("release_year"),
        pl.col("duration"),
        clean_text(pl.col("show_id")).alias("source_show_id"),
        # kept for the credits; dropped from the shows table
        pl.col("director").alias("_director"),
        pl.col("cast").alias("_cast"),
    )


def _people(shows: pl.DataFrame, column: str, role: str) -> pl.DataFrame:
    """One credit row per name in a comma-separated people column."""
    rows = (
        shows.select("show_id", split_list(pl.col(column), ",").alias("name"))
        .explode("name")
        .drop_nulls("name")
    )
    return rows.with_columns(
        map_unique(rows["name"], person_slug, pl.String()).alias("person_id"),
        pl.lit(role).alias("role"),
        pl.lit(None, dtype=pl.String).alias("character"),
    ).filter(pl.col("person_id") != "")


def build_credits(shows: pl.DataFrame) -> pl.DataFrame:
    """Directors and cast of every show, person ids from normalised names."""
    both = pl.concat([_people(shows, "_director", "director"), _people(shows, "_cast", "actor")])
    return both.select("show_id", "person_id", "name", "role", "character")


def load(directory: Path, encoding: str | None = None) -> RawDataset:
    """Read every `<platform>_titles.csv` of the directory into one catalogue."""
    files = catalogue_files(directory)
    if not files:
        raise DataError(
            str(directory / KNOWN_FILES[0]),
            f"no catalogue file (*{SUFFIX}) found; expected e.g. {', '.join(KNOWN_FILES)}",
        )
    frames = [read_catalogue(p, encoding) for p in files]
    counts = ", ".join(
        f"{platform_of(p)[1]} {f.height}" for p, f in zip(files, frames, strict=True)
    )
    full = pl.concat(frames, how="vertical")
    shows = full.drop("_director", "_cast")
    return RawDataset(
        name=directory.name,
        shows=shows,
        events=empty_events(),
        credits=build_credits(full),
        sources={
            "shows": ", ".join(str(p) for p in files),
            "credits": ", ".join(str(p) for p in files),
            "events": str(directory),
        },
        notes=[CATALOGUE_NOTE, f"titles per platform: {counts}"],
    )
