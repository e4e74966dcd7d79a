"""Netflix titles + credits adapter (the Kaggle "Netflix TV Shows and Movies" export).

Files, comma-separated with a header (CRLF line ends):
- titles.csv   id, title, type SHOW/MOVIE, description, release_year, age_certification, runtime,
               genres and production_countries as Python-list-like strings "['drama', 'crime']",
               seasons, imdb_id, imdb_score, imdb_votes, tmdb_popularity, tmdb_score -> shows
- credits.csv  person_id, id (title id), name, character, role ACTOR/DIRECTOR -> credits

The export writes "Unknown" / "[Unknown]" for missing values in its text and list columns;
those become null / empty lists. Its numbers have no such token: release_year, seasons and
runtime are numbers or blank (seasons and runtime 0 or more), anything else is refused.
It holds no viewing events.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..contract import SHOW_NUMBER_MOST, SHOW_NUMBERS, RawDataset, number_column
from ._common import (
    CATALOGUE_NOTE,
    clean_text,
    empty_events,
    null_placeholder,
    optional_file,
    parse_year,
    pylist_column,
    read_delimited,
    require_file,
    with_optional,
)

TITLES_FILE = "titles.csv"
CREDITS_FILE = "credits.csv"
TITLE_REQUIRED = ("id", "title", "type")
TITLE_OPTIONAL = (
    "description",
    "release_year",
    "age_certification",
    "runtime",
    "genres",
    "production_countries",
    "seasons",
)
# Kept as show attributes, under the export's own names.
TITLE_EXTRAS = ("imdb_id", "imdb_score", "imdb_votes", "tmdb_popularity", "tmdb_score")
CREDIT_REQUIRED = ("person_id", "id", "name", "role")
PLATFORM = "Netflix"


def read_shows(path: Path, encoding: str | None = None) -> pl.DataFrame:
    """titles.csv as shows: list-like genres parsed, premiered = January 1 of release_year."""
    df = read_delimited(path, required=TITLE_REQUIRED, encoding=encoding)
    df = with_optional(df, [*TITLE_OPTIONAL, *TITLE_EXTRAS])
    countries = pylist_column(df["production_countries"])
    year = parse_year(df, "release_year", str(path))
    seasons = number_column(df, "seasons", str(path), SHOW_NUMBERS["seasons"], whole=True)
    most = SHOW_NUMBER_MOST["runtime_minutes"]
    runtime = number_column(df, "runtime", str(path), SHOW_NUMBERS["runtime_minutes"], most=most)
    return df.select(
        clean_text(pl.col("id")).alias("show_id"),
        clean_text(pl.col("title")).alias("title"),
        clean_text(pl.col("description")).alias("description"),
        pylist_column(df["genres"]).alias("genres"),
        pl.lit([PLATFORM], dtype=pl.List(pl.String)).alias("platforms"),
        pl.date(pl.lit(year), 1, 1).alias("premiered"),
        clean_text(pl.col("type")).alias("type"),
        seasons.alias("seasons"),
        runtime.alias("runtime_minutes"),
        # the first production country; the full list stays in the attributes
        countries.list.first().alias("country"),
        null_placeholder(pl.col("age_certification")).alias("age_rating"),
        # extra columns end up in the canonical `attributes` JSON
        countries.list.join(", ").replace("", None).alias("production_countries"),
        clean_text(pl.col("release_year")).alias("release_year"),
        *(clean_text(pl.col(c)).alias(c) for c in TITLE_EXTRAS),
    )


def read_credits(path: Path, encoding: str | None = None) -> pl.DataFrame:
    """credits.csv as credits; the role is lower-cased (actor, director)."""
    df = read_delimited(path, required=CREDIT_REQUIRED, encoding=encoding)
    df = with_optional(df, ["character"])
    return df.select(
        clean_text(pl.col("id")).alias("show_id"),
        clean_text(pl.col("person_id")).alias("person_id"),
        clean_text(pl.col("name")).alias("name"),
        clean_text(pl.col("role")).str.to_lowercase().alias("role"),
        clean_text(pl.col("character")).alias("character"),
    )


def load(directory: Path, encoding: str | None = None) -> RawDataset:
    """Read titles.csv (and credits.csv when present) as a catalogue-only dataset."""
    titles = require_file(directory, TITLES_FILE)
    credits_path = optional_file(directory, CREDITS_FILE)
    sources = {"shows": str(titles), "events": str(directory)}
    notes = [CATALOGUE_NOTE]
    credits = None
    if credits_path is not None:
        credits = read_credits(credits_path, encoding)
        sources["credits"] = str(credits_path)
    else:
        notes.append(f"{CREDITS_FILE} not found: no credits")
    return RawDataset(
        name=directory.name,
        shows=read_shows(titles, encoding),
        events=empty_events(),
        credits=credits,
        sources=sources,
        notes=notes,
    )
