"""The TV dataset contract: what a user brings, and the canonical tables tvrec keeps.

A dataset directory holds `shows` and `events` (required), `credits` and `users` (optional),
each as CSV or Parquet. Adapters turn other layouts into a `RawDataset` of the same tables;
`canonicalize` validates any `RawDataset` and returns the canonical `Dataset`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from .errors import DataError

# ---- canonical schemas --------------------------------------------------------------------
SHOWS_SCHEMA: dict[str, pl.DataType] = {
    "show_id": pl.String(),
    "title": pl.String(),
    "description": pl.String(),
    "genres": pl.List(pl.String()),
    "network": pl.String(),
    "platforms": pl.List(pl.String()),
    "premiered": pl.Date(),
    "type": pl.String(),
    "seasons": pl.Int32(),
    "episodes": pl.Int32(),
    "runtime_minutes": pl.Float64(),
    "language": pl.String(),
    "country": pl.String(),
    "age_rating": pl.String(),
    "attributes": pl.String(),  # JSON object of the input's extra columns
}
EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "show_id": pl.String(),
    "event_timestamp": pl.Datetime("us", "UTC"),
    "weight": pl.Float64(),
    "event_type": pl.String(),
    "watch_seconds": pl.Float64(),
}
CREDITS_SCHEMA: dict[str, pl.DataType] = {
    "show_id": pl.String(),
    "person_id": pl.String(),
    "name": pl.String(),
    "role": pl.String(),
    "character": pl.String(),
}
USERS_SCHEMA: dict[str, pl.DataType] = {"user_id": pl.String(), "attributes": pl.String()}

SCHEMAS = {
    "shows": SHOWS_SCHEMA,
    "events": EVENTS_SCHEMA,
    "credits": CREDITS_SCHEMA,
    "users": USERS_SCHEMA,
}
REQUIRED_COLUMNS = {
    "shows": ("show_id", "title"),
    "events": ("user_id", "show_id", "event_timestamp"),
    "credits": ("show_id", "person_id"),
    "users": ("user_id",),
}
LIST_COLUMNS = {"genres", "platforms"}
LIST_SEPARATOR = "|"


@dataclass
class RawDataset:
    """Tables as an adapter read them, before validation.

    `sources` maps a table name to the file it came from (for error messages; row numbers in
    errors count data rows of that table from 1). `timed` is False for datasets whose
    events carry no real time (all events then share one synthetic timestamp).
    """

    name: str
    shows: pl.DataFrame
    events: pl.DataFrame
    credits: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    sources: dict[str, str] = field(default_factory=dict)
    timed: bool = True
    notes: list[str] = field(default_factory=list)


@dataclass
class Dataset:
    """Canonical, validated tables (see the *_SCHEMA dicts)."""

    name: str
    shows: pl.DataFrame
    events: pl.DataFrame
    credits: pl.DataFrame
    users: pl.DataFrame
    timed: bool = True
    notes: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pl.DataFrame]:
        return {
            "shows": self.shows,
            "events": self.events,
            "credits": self.credits,
            "users": self.users,
        }

    def manifest(self) -> dict:
        ts = self.events["event_timestamp"]
        return {
            "name": self.name,
            "timed": self.timed,
            "rows": {k: v.height for k, v in self.tables().items()},
            "first_event": ts.min().isoformat() if self.events.height else None,
            "last_event": ts.max().isoformat() if self.events.height else None,
            "notes": self.notes,
        }


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[table])


# ---- reading files ------------------------------------------------------------------------
def find_table(directory: Path, table: str) -> Path | None:
    """The file of `table` in `directory` (shows.parquet, shows.csv, ...), or None."""
    for ext in (".parquet", ".csv", ".tsv", ".csv.gz"):
        p = directory / f"{table}{ext}"
        if p.exists():
            return p
    return None


def _column_at(data: bytes, pos: int, sep: bytes) -> str | None:
    """Header name of the delimited field holding byte `pos` (quotes respected)."""
    header = data.split(b"\n", 1)[0].decode("utf-8", "replace").lstrip("\ufeff").strip()
    names = header.split(sep.decode())
    start = data.rfind(b"\n", 0, pos) + 1
    field_index, quoted = 0, False
    for byte in data[start:pos]:
        if byte == ord('"'):
            quoted = not quoted
        elif bytes([byte]) == sep and not quoted:
            field_index += 1
    return names[field_index].strip('"') if field_index < len(names) else None


def check_utf8(path: Path, sep: bytes = b",", header: bool = True) -> bytes:
    """The file's bytes, or a DataError naming the line, row and column that is not UTF-8."""
    data = path.read_bytes()
    if not data.strip():
        raise DataError(str(path), "the file is empty")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1  # 1-based line in the file
        row = line - 1 if header else line  # 1-based data row
        raise DataError(
            str(path),
            f"bytes that are not UTF-8 at byte {exc.start} (line {line}); "
            "re-save the file as UTF-8",
            column=_column_at(data, exc.start, sep) if header else None,
            rows=[row] if row > 0 else [],
        ) from exc
    return data


def read_table(path: Path) -> pl.DataFrame:
    """Read one contract table from CSV/TSV or Parquet, every CSV column as a string."""
    if path.suffix == ".parquet":
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # pyarrow/polars raise many kinds
            raise DataError(str(path), f"cannot read Parquet: {exc}") from exc
        if df.height == 0:
            raise DataError(str(path), "the table has no rows")
        return df
    sep = "\t" if path.suffix == ".tsv" else ","
    data = check_utf8(path, sep.encode())
    try:
        df = pl.read_csv(data, separator=sep, infer_schema=False, encoding="utf8")
    except Exception as exc:
        raise DataError(str(path), f"cannot parse as CSV: {exc}") from exc
    df = df.rename({c: c.strip().lstrip("\ufeff") for c in df.columns})
    if df.height == 0:
        raise DataError(str(path), "the file has a header but no rows")
    return df


# ---- canonicalization ---------------------------------------------------------------------
def _rows(mask: pl.Series) -> list[int]:
    """1-based data row numbers where mask is true (the first 50)."""
    return [i + 1 for i in mask.arg_true().head(50).to_list()]


def _require(df: pl.DataFrame, table: str, source: str) -> None:
    for col in REQUIRED_COLUMNS[table]:
        if col not in df.columns:
            raise DataError(
                source,
                f"required column missing (found: {', '.join(df.columns)})",
                column=col,
            )


def _to_string(df: pl.DataFrame, col: str) -> pl.Expr:
    dtype = df.schema[col]
    if dtype.is_float():
        # 12.0 -> "12": ids that went through a float column
        return pl.col(col).cast(pl.Int64, strict=False).cast(pl.String)
    return pl.col(col).cast(pl.String).str.strip_chars()


def _id_column(df: pl.DataFrame, col: str, source: str) -> pl.DataFrame:
    df = df.with_columns(_to_string(df, col).alias(col))
    bad = df[col].is_null() | (df[col] == "")
    if bad.any():
        raise DataError(source, "empty id", column=col, rows=_rows(bad))
    return df


def _list_column(df: pl.DataFrame, col: str) -> pl.Expr:
    if col not in df.columns:
        return pl.lit(None, dtype=pl.List(pl.String)).alias(col)
    if isinstance(df.schema[col], pl.List):
        base = pl.col(col).cast(pl.List(pl.String))
    else:
        base = pl.col(col).cast(pl.String).str.split(LIST_SEPARATOR)
    return (
        base.list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
        .list.unique(maintain_order=True)
        .alias(col)
    )


def _parse_date(df: pl.DataFrame, col: str, source: str) -> pl.Expr:
    dtype = df.schema[col]
    if dtype == pl.Date:
        return pl.col(col)
    if isinstance(dtype, pl.Datetime):
        return pl.col(col).dt.date()
    parsed = pl.col(col).cast(pl.String).str.strip_chars().str.slice(0, 10)
    return parsed.str.to_date("%Y-%m-%d", strict=False).alias(col)


def _parse_iso(value: str) -> datetime | None:
    v = value.strip()
    if not v:
        return None
    if v.lstrip("-").replace(".", "", 1).isdigit():
        return datetime.fromtimestamp(float(v), tz=UTC)
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_timestamps(series: pl.Series, source: str, column: str) -> pl.Series:
    """ISO-8601 strings or epoch seconds -> Datetime(us, UTC); a DataError on any failure."""
    dtype = series.dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone:
            out = series.dt.convert_time_zone("UTC")
        else:
            out = series.dt.replace_time_zone("UTC")
        out = out.dt.cast_time_unit("us")
    elif dtype == pl.Date:
        out = series.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    elif dtype.is_numeric():
        out = (series.cast(pl.Float64) * 1_000_000).cast(pl.Int64).cast(pl.Datetime("us", "UTC"))
    else:
        strings = series.cast(pl.String)
        uniq = strings.unique().drop_nulls()
        mapping = {u: _parse_iso(u) for u in uniq.to_list()}
        out = strings.replace_strict(
            list(mapping),
            list(mapping.values()),
            default=None,
            return_dtype=pl.Datetime("us", "UTC"),
        )
    bad = out.is_null()
    if bad.any():
        examples = series.filter(bad).head(5).cast(pl.String).to_list()
        raise DataError(
            source,
            "unparsable timestamp (use ISO-8601 such as 2024-03-01T20:15:00Z, or epoch seconds)",
            column=column,
            rows=_rows(bad),
            examples=[str(e) for e in examples],
        )
    return out.alias(column)


def _extras_json(df: pl.DataFrame, known: set[str]) -> pl.Expr:
    extra = [c for c in df.columns if c not in known]
    if not extra:
        return pl.lit(None, dtype=pl.String).alias("attributes")
    return (
        pl.struct([pl.col(c).cast(pl.String) for c in extra])
        .map_elements(lambda s: json.dumps(s, ensure_ascii=False), return_dtype=pl.String)
        .alias("attributes")
    )


def canonical_shows(df: pl.DataFrame, source: str) -> pl.DataFrame:
    _require(df, "shows", source)
    df = _id_column(df, "show_id", source)
    dup = df["show_id"].is_duplicated()
    if dup.any():
        ex = df.filter(dup)["show_id"].unique(maintain_order=True).head(5).to_list()
        raise DataError(
            source, "duplicated show_id", column="show_id", rows=_rows(dup), examples=ex
        )
    no_title = df["title"].cast(pl.String).str.strip_chars().fill_null("") == ""
    if no_title.any():
        raise DataError(source, "empty title", column="title", rows=_rows(no_title))
    if "premiered" in df.columns:
        parsed = df.select(_parse_date(df, "premiered", source))["premiered"]
        given = df["premiered"].cast(pl.String).str.strip_chars().fill_null("") != ""
        bad = given & parsed.is_null()
        if bad.any():
            raise DataError(
                source,
                "unparsable date (use YYYY-MM-DD)",
                column="premiered",
                rows=_rows(bad),
                examples=df.filter(bad)["premiered"].head(5).cast(pl.String).to_list(),
            )
        df = df.with_columns(parsed)
    exprs = []
    for col, dtype in SHOWS_SCHEMA.items():
        if col == "attributes":
            exprs.append(_extras_json(df, set(SHOWS_SCHEMA)))
        elif col in LIST_COLUMNS:
            exprs.append(_list_column(df, col))
        elif col not in df.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(col))
        elif dtype == pl.String:
            exprs.append(pl.col(col).cast(pl.String).str.strip_chars().alias(col))
        elif dtype in (pl.Int32(), pl.Float64()):
            num = pl.col(col).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
            exprs.append(num.cast(dtype, strict=False).alias(col))
        else:
            exprs.append(pl.col(col).cast(dtype).alias(col))
    return df.select(exprs)


def _require_known_shows(df: pl.DataFrame, source: str, show_ids: pl.Series, what: str) -> None:
    unknown = ~df["show_id"].is_in(show_ids.implode())
    if unknown.any():
        ex = df.filter(unknown)["show_id"].unique(maintain_order=True).head(5).to_list()
        raise DataError(
            source,
            f"{what} for shows that are not in the shows table",
            column="show_id",
            rows=_rows(unknown),
            examples=ex,
        )


def canonical_events(df: pl.DataFrame, source: str, show_ids: pl.Series) -> pl.DataFrame:
    _require(df, "events", source)
    df = _id_column(df, "user_id", source)
    df = _id_column(df, "show_id", source)
    ts = parse_timestamps(df["event_timestamp"], source, "event_timestamp")
    _require_known_shows(df, source, show_ids, "events")
    weight = pl.lit(1.0)
    if "weight" in df.columns:
        weight = pl.col("weight").cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
        bad = df.select(weight.is_null() & pl.col("weight").is_not_null())
        bad_s = bad.to_series()
        if bad_s.any():
            raise DataError(source, "weight is not a number", column="weight", rows=_rows(bad_s))
        weight = weight.fill_null(1.0)
    out = df.with_columns(ts).select(
        pl.col("user_id"),
        pl.col("show_id"),
        pl.col("event_timestamp"),
        weight.alias("weight"),
        (
            pl.col("event_type").cast(pl.String)
            if "event_type" in df.columns
            else pl.lit(None, dtype=pl.String)
        ).alias("event_type"),
        (
            pl.col("watch_seconds").cast(pl.String).cast(pl.Float64, strict=False)
            if "watch_seconds" in df.columns
            else pl.lit(None, dtype=pl.Float64)
        ).alias("watch_seconds"),
    )
    return out.sort("event_timestamp", "user_id", "show_id", maintain_order=True)


def canonical_credits(df: pl.DataFrame | None, source: str, show_ids: pl.Series) -> pl.DataFrame:
    if df is None:
        return empty("credits")
    _require(df, "credits", source)
    df = _id_column(df, "show_id", source)
    df = _id_column(df, "person_id", source)
    _require_known_shows(df, source, show_ids, "credits")
    exprs = [
        (
            pl.col(c).cast(pl.String).str.strip_chars()
            if c in df.columns
            else pl.lit(None, dtype=pl.String)
        ).alias(c)
        for c in CREDITS_SCHEMA
    ]
    out = df.select(exprs).with_columns(pl.col("role").str.to_lowercase())
    return out.unique(subset=["show_id", "person_id", "role", "character"], maintain_order=True)


def canonical_users(df: pl.DataFrame | None, source: str) -> pl.DataFrame:
    if df is None:
        return empty("users")
    _require(df, "users", source)
    df = _id_column(df, "user_id", source)
    dup = df["user_id"].is_duplicated()
    if dup.any():
        raise DataError(source, "duplicated user_id", column="user_id", rows=_rows(dup))
    return df.select(pl.col("user_id"), _extras_json(df, {"user_id"}))


def canonicalize(raw: RawDataset) -> Dataset:
    """Validate every table of `raw`; a DataError names the first problem found."""
    src = {t: raw.sources.get(t, t) for t in SCHEMAS}
    shows = canonical_shows(raw.shows, src["shows"])
    events = canonical_events(raw.events, src["events"], shows["show_id"])
    credits = canonical_credits(raw.credits, src["credits"], shows["show_id"])
    users = canonical_users(raw.users, src["users"])
    return Dataset(raw.name, shows, events, credits, users, raw.timed, list(raw.notes))


def read_contract_dir(directory: Path) -> RawDataset:
    """Read a directory laid out by the contract (shows, events, credits?, users?)."""
    if not directory.is_dir():
        raise DataError(str(directory), "not a directory")
    tables: dict[str, pl.DataFrame | None] = {}
    sources: dict[str, str] = {}
    for table in SCHEMAS:
        path = find_table(directory, table)
        if path is None:
            if table in ("shows", "events"):
                raise DataError(
                    str(directory / f"{table}.csv"),
                    f"required table '{table}' not found (.csv or .parquet)",
                )
            tables[table] = None
            continue
        sources[table] = str(path)
        tables[table] = read_table(path)
    return RawDataset(
        name=directory.name,
        shows=tables["shows"],  # type: ignore[arg-type]
        events=tables["events"],  # type: ignore[arg-type]
        credits=tables["credits"],
        users=tables["users"],
        sources=sources,
    )


def write_contract_dir(ds: Dataset | RawDataset, directory: Path) -> None:
    """Write a dataset in the contract's CSV layout (lists pipe-joined)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("shows", "events", "credits", "users"):
        df = getattr(ds, name)
        if df is None or df.height == 0:
            continue
        df = df.with_columns(
            [
                pl.col(c).list.join(LIST_SEPARATOR)
                for c, t in df.schema.items()
                if isinstance(t, pl.List)
            ]
        )
        if "event_timestamp" in df.columns and isinstance(
            df.schema["event_timestamp"], pl.Datetime
        ):
            df = df.with_columns(pl.col("event_timestamp").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        if "attributes" in df.columns:
            df = df.drop("attributes")
        df.write_csv(directory / f"{name}.csv")


def today_utc() -> date:
    return datetime.now(UTC).date()
