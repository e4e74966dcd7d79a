"""Helpers shared by the dataset adapters: strict file reading and value clean-up.

Every reader here turns a bad file into a `DataError` that names the file, the column and the
1-based data rows at fault (the header line, where there is one, is not counted).
"""

from __future__ import annotations

import ast
import html
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import polars as pl

from ..contract import PREMIERE_YEARS, empty, parse_delimited, read_input, read_text_file
from ..errors import DataError, names_list, rows_where

CATALOGUE_NOTE = "catalogue only: no viewing events"
# Characters that `str.strip_chars()` keeps but that are noise at the ends of a value:
# zero-width space and BOM (seen at the start of Hulu descriptions) plus ordinary whitespace.
_NOISE = " \t\r\n\u00a0\u200b\ufeff"
# Values the catalogues use for "no value" inside list-like and scalar fields.
_PLACEHOLDERS = {"", "unknown", "nan", "none", "null"}


def require_file(directory: Path, name: str) -> Path:
    """`directory / name`, or a DataError saying the adapter needs it (or that it is not a
    regular file: a directory or FIFO is refused here, before anything opens it)."""
    path = directory / name
    if not os.path.lexists(path):
        raise DataError(str(path), "required file not found")
    if not path.is_file():
        read_input(path)  # raises, naming what the path is instead
    return path


def optional_file(directory: Path, name: str) -> Path | None:
    """`directory / name` if it is there (a DataError if it is there but not a file)."""
    return require_file(directory, name) if os.path.lexists(directory / name) else None


def read_text(
    path: Path, encoding: str | None = None, *, separator: str = ",", header: bool = True
) -> str:
    """Decoded text of a file with any byte-order mark removed (None: UTF-8, strictly)."""
    return read_text_file(path, encoding, separator, header)


def read_delimited(
    path: Path,
    *,
    separator: str = ",",
    names: Sequence[str] | None = None,
    required: Sequence[str] = (),
    encoding: str | None = None,
    quoting: bool = True,
) -> pl.DataFrame:
    """Read a delimited text file with every column as a string.

    `names` gives the columns of a headerless file (their count is checked); otherwise the
    header is used, BOM and surrounding spaces stripped. `quoting=False` reads `"` as an
    ordinary character (tab files whose titles start with a quote). A row with too many or
    too few fields is refused, naming its line.
    """
    text = read_text(path, encoding, separator=separator, header=names is None)
    df = parse_delimited(text, str(path), separator, quoting=quoting, has_header=names is None)
    if names is not None:
        if df.width != len(names):
            raise DataError(
                str(path),
                f"expected {len(names)} fields separated by {separator!r}, found {df.width}",
            )
        df.columns = list(names)
    require_columns(df, required, str(path))
    if df.height == 0:
        raise DataError(str(path), "the file has no data rows")
    return df


def require_columns(df: pl.DataFrame, columns: Sequence[str], source: str) -> None:
    """A DataError naming the first of `columns` that `df` lacks."""
    for col in columns:
        if col not in df.columns:
            found = names_list(df.columns)
            raise DataError(source, f"required column missing (found: {found})", column=col)


def with_optional(df: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """`df` with any of `columns` it lacks added as all-null strings."""
    missing = [c for c in columns if c not in df.columns]
    return df.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in missing)


def parse_number(df: pl.DataFrame, col: str, source: str, dtype: pl.DataType) -> pl.Series:
    """Column `col` as `dtype`; a DataError for text that is not a number (blank -> null)."""
    raw = df[col].str.strip_chars().replace("", None)
    parsed = raw.cast(pl.Float64, strict=False)
    bad = parsed.is_null() & raw.is_not_null()
    if dtype.is_integer():  # whole numbers that an Int64 holds exactly
        whole = parsed.is_finite() & (parsed.round(0) == parsed) & (parsed.abs() <= 2.0**53)
        bad = bad | (parsed.is_not_null() & ~whole.fill_null(False))
    if bad.any():
        examples = df.filter(bad)[col].head(5).to_list()
        raise DataError(source, "not a number", column=col, rows=rows_where(bad), examples=examples)
    return parsed.cast(dtype).alias(col)


def parse_rating(df: pl.DataFrame, col: str, source: str, scale: tuple[int, int]) -> pl.Series:
    """Column `col` as Float64 ratings on the export's `scale` (lowest, highest); a DataError
    for text, a blank (it became weight 1) or a number off the scale (the Kaggle anime
    export's -1 "watched, not rated", or a rating from another scale), named in this file
    rather than as an event weight."""
    ratings = parse_number(df, col, source, pl.Float64())
    low, high = scale
    bad = ~ratings.is_between(low, high).fill_null(False)  # NaN and blank included
    if bad.any():
        why = f"not a rating from {low} to {high} (the export's scale; blank is not allowed)"
        raise DataError.where(source, why, col, bad, df[col])
    return ratings


def parse_year(df: pl.DataFrame, col: str, source: str) -> pl.Series:
    """Column `col` as Int32 years; a DataError for text that is not a whole number and for a
    year outside the plausible premiere years (blank -> null)."""
    years = parse_number(df, col, source, pl.Int32())
    low, high = PREMIERE_YEARS
    far = ~years.is_between(low, high).fill_null(True)
    if far.any():
        why = f"not a plausible year ({low}-{high})"
        raise DataError.where(source, why, col, far, df[col])
    return years


def require_values(df: pl.DataFrame, col: str, source: str) -> None:
    """A DataError listing the rows where `col` is null or blank."""
    blank = df[col].is_null() | (df[col].str.strip_chars() == "")
    if blank.any():
        raise DataError(source, "empty value", column=col, rows=rows_where(blank))


def clean_text(expr: pl.Expr) -> pl.Expr:
    """Trim whitespace and invisible characters; blank becomes null."""
    trimmed = expr.cast(pl.String).str.strip_chars(_NOISE)
    return pl.when(trimmed != "").then(trimmed)  # keeps the input's name


def null_placeholder(expr: pl.Expr) -> pl.Expr:
    """`clean_text`, with placeholder values such as "Unknown" turned into null."""
    cleaned = clean_text(expr)
    return pl.when(~cleaned.str.to_lowercase().is_in(list(_PLACEHOLDERS))).then(cleaned)


def split_list(expr: pl.Expr, separator: str = ",") -> pl.Expr:
    """A separated string as a list of trimmed, non-empty items (null -> empty list)."""
    items = expr.cast(pl.String).fill_null("").str.split(separator)
    return items.list.eval(
        pl.element().str.strip_chars(_NOISE).filter(pl.element().str.strip_chars(_NOISE) != "")
    )


@lru_cache(maxsize=65536)
def parse_pylist(value: str | None) -> tuple[str, ...]:
    """Items of a Python-list-like string such as "['drama', 'crime']".

    Falls back to splitting on commas for text that is not a Python literal (the export
    writes "[Unknown]" for an empty list); placeholder items like "Unknown" are dropped.
    """
    if value is None:
        return ()
    text = value.strip()
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        parsed = None
    if isinstance(parsed, list | tuple):
        items = [str(x) for x in parsed]
    elif isinstance(parsed, str):
        items = [parsed]
    else:
        items = text.strip("[]").split(",")
    cleaned = (item.strip().strip("'\"").strip() for item in items)
    return tuple(i for i in cleaned if i.lower() not in _PLACEHOLDERS)


def pylist_column(series: pl.Series) -> pl.Series:
    """A column of Python-list-like strings as List(String) (null -> empty list)."""
    return map_unique(series.fill_null(""), lambda v: list(parse_pylist(v)), pl.List(pl.String()))


_BLOCK_TAG = re.compile(r"<\s*/?\s*(p|br|div|li|ul|ol|h[1-6]|tr|td)\b[^>]*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"\s+")


def strip_html(text: str | None) -> str | None:
    """Plain text of an HTML fragment: block tags become spaces, entities are unescaped."""
    if text is None:
        return None
    plain = _ANY_TAG.sub("", _BLOCK_TAG.sub(" ", text))
    plain = _SPACES.sub(" ", html.unescape(plain)).strip()
    return plain or None


_NOT_WORD = re.compile(r"[\W_]+")


@lru_cache(maxsize=262144)
def person_slug(name: str) -> str:
    """A stable id for a person's name: accents folded, case folded, punctuation to '-'.

    "Penélope Cruz", "penelope  cruz" and "Penelope Cruz " all give "penelope-cruz", so the
    same person links titles across catalogues that have no shared person ids.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return _NOT_WORD.sub("-", folded).strip("-")


def map_unique(series: pl.Series, fn: Callable[[str], object], dtype: pl.DataType) -> pl.Series:
    """`fn` applied once per distinct non-null value of a string column (nulls stay null)."""
    distinct = series.drop_nulls().unique()
    lookup = pl.DataFrame(
        {"key": distinct, "value": pl.Series([fn(v) for v in distinct.to_list()], dtype=dtype)}
    )
    joined = series.to_frame("key").join(lookup, on="key", how="left", maintain_order="left")
    return joined["value"].alias(series.name)


def empty_events() -> pl.DataFrame:
    """An events table with the canonical schema and no rows."""
    return empty("events")
