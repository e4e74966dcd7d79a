"""The TV dataset contract: what a user brings, and the canonical tables tvrec keeps.

A dataset directory holds `shows` and `events` (required), `credits` and `users` (optional),
each as CSV or Parquet. Adapters turn other layouts into a `RawDataset` of the same tables;
`canonicalize` validates any `RawDataset` and returns the canonical `Dataset`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from .errors import ConfigError, DataError, names_list, rows_where, shorten

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

    def require_events(self, purpose: str, where: str = "") -> None:
        """Refuse a catalogue without viewing events (ConfigError): `purpose` says what
        needs them, `where` prefixes the message (the source path)."""
        if not self.events.height:
            raise ConfigError(
                f"{where}dataset {self.name!r} has no viewing events ({self.shows.height:,} "
                f"shows, a catalogue alone): {purpose}"
            )

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


def aired_by(day: date | pl.Expr) -> pl.Expr:
    """Shows premiered on or before `day` (a date, or a date per row), or undated: the shows
    that may be recommended at that day (the nightly job leaves the rest out, `tvrec query`
    counts what is left, training rows draw negatives only from them, the cold slice ranks
    them)."""
    return pl.col("premiered").is_null() | (pl.col("premiered") <= day)


# ---- reading files ------------------------------------------------------------------------
TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz")
ENCODINGS = ("utf-8", "latin-1", "cp1252", "mac-roman")
BOM = "\ufeff"
_SHOWN_LINES = 5  # ragged lines named in an error


def find_table(directory: Path, table: str) -> Path | None:
    """The file of `table` in `directory` (shows.parquet, shows.csv, ...), or None.

    Two files for one table (shows.csv beside shows.parquet) are refused: which one counts
    would otherwise be a silent choice."""
    found = [
        directory / f"{table}{ext}"
        for ext in TABLE_SUFFIXES
        if os.path.lexists(directory / f"{table}{ext}")
    ]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        why = f"table '{table}' is in {len(found)} files ({names}); keep one"
        raise DataError(str(directory), why)
    return found[0] if found else None


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _open_error(path: Path, exc: OSError) -> DataError:
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        return DataError(str(path), f"a symlink to {os.readlink(path)}, which does not exist")
    if isinstance(exc, FileNotFoundError):
        return DataError(str(path), "file not found")
    return DataError(str(path), f"cannot open: {exc.strerror or exc}")


def read_input(path: Path) -> bytes:
    """The bytes of an input file (gunzipped when its name ends in .gz).

    Symlinks are followed. The file type is checked on the opened descriptor before reading,
    and the open does not block, so a directory, FIFO or device is refused, never waited on.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise _open_error(path, exc) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(str(path), f"is {_file_kind(mode)}, not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError as exc:
        raise _open_error(path, exc) from None
    finally:
        os.close(fd)
    return _gunzip(path, data) if path.name.endswith(".gz") else data


def _gunzip(path: Path, data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(str(path), f"not a readable gzip file ({exc})") from None


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an archive with files, an empty one
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


def _text_kind(path: Path) -> str:
    """What a text input is by its name: CSV, TSV, JSON, else text."""
    suffix = Path(path.name.removesuffix(".gz")).suffix.lower()
    return {".csv": "CSV", ".tsv": "TSV", ".json": "JSON"}.get(suffix, "text")


def _looks_like(data: bytes) -> str:
    """What the first bytes of a file look like: an archive, compressed data, text."""
    if data.startswith(ZIP_MAGIC):
        return "a ZIP archive"
    if data.startswith(GZIP_MAGIC):
        return "gzip-compressed data"
    head = data[:4096].decode("utf-8", "ignore").lstrip(BOM).lstrip()
    if not head or b"\x00" in data[:4096]:
        return "binary data"
    line = head.split("\n", 1)[0]
    if head[0] in "[{":
        return "JSON text"
    if "," in line or "\t" in line:
        return "CSV text" if "," in line else "tab-separated text"
    return "text"


def _refuse_foreign(path: Path, data: bytes, encoding: str | None) -> None:
    """A DataError for text files that are really something else (ZIP, gzip, Parquet,
    UTF-16)."""
    if data.startswith(ZIP_MAGIC):
        raise DataError(
            str(path),
            f"the file is a ZIP archive, not {_text_kind(path)}; unzip it (an Excel workbook "
            "is one too: save the sheet as CSV)",
        )
    if data.startswith(GZIP_MAGIC):
        raise DataError(str(path), "the file is gzip-compressed; name it with a .gz suffix")
    if data.startswith(PARQUET_MAGIC):
        raise DataError(str(path), "the file is Parquet; name it with a .parquet suffix")
    if encoding is None and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(str(path), "the file is UTF-16 (byte-order mark); re-save it as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data[:nul].count(b"\n") + 1
        raise DataError(
            str(path),
            f"a NUL byte at byte {nul} (line {line}): binary data, or UTF-16 text without "
            "a byte-order mark; re-save it as UTF-8 text",
        )


def _unify_line_ends(data: bytes) -> bytes:
    """Old Mac files end lines with a bare CR: turned into LF (CRLF files are left alone)."""
    if b"\r" in data and b"\n" not in data:
        return data.replace(b"\r", b"\n")
    return data


def _column_at(data: bytes, pos: int, sep: bytes) -> str | None:
    """Header name of the delimited field holding byte `pos` (quotes respected)."""
    header = data.split(b"\n", 1)[0].decode("utf-8", "replace").lstrip(BOM).strip()
    names = header.split(sep.decode())
    start = data.rfind(b"\n", 0, pos) + 1
    field_index, quoted = 0, False
    for byte in data[start:pos]:
        if byte == ord('"'):
            quoted = not quoted
        elif bytes([byte]) == sep and not quoted:
            field_index += 1
    return names[field_index].strip('"') if field_index < len(names) else None


def check_encoding(encoding: str | None) -> None:
    if encoding is not None and encoding not in ENCODINGS:
        raise ConfigError(f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")


def decode_text(
    path: Path, data: bytes, encoding: str | None = None, sep: str = ",", header: bool = True
) -> str:
    """Text of a delimited or JSON file: bare-CR line ends unified, decoded strictly in
    `encoding` (None: UTF-8), byte-order mark removed; a DataError naming the line, data row
    and column of the first byte that does not decode."""
    check_encoding(encoding)
    if not data.strip():
        raise DataError(str(path), "the file is empty")
    _refuse_foreign(path, data, encoding)
    data = _unify_line_ends(data)
    codec = encoding or "utf-8"
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1  # 1-based line in the file
        row = line - 1 if header else line  # 1-based data row
        hint = "re-save the file as UTF-8, or pass --encoding latin-1, cp1252 or mac-roman"
        raise DataError(
            str(path),
            f"bytes that are not {codec.upper() if codec == 'utf-8' else codec} at byte "
            f"{exc.start} (line {line}); {hint}",
            column=_column_at(data, exc.start, sep.encode()) if header else None,
            rows=[row] if row > 0 else [],
        ) from None
    return text.lstrip(BOM)


def read_text_file(
    path: Path, encoding: str | None = None, sep: str = ",", header: bool = True
) -> str:
    """`decode_text` of the file at `path` (see `read_input`)."""
    return decode_text(path, read_input(path), encoding, sep, header)


def _lines(text: str) -> Iterator[str]:
    """The lines of `text`, ends kept, without copying it whole."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start : end + 1]
        start = end + 1


def _records(text: str, sep: str, quoting: bool) -> Any:
    """A csv.reader over `text` (its `line_num` counts the lines read so far)."""
    mode = csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
    return csv.reader(_lines(text), delimiter=sep, quoting=mode, strict=False)


def header_names(text: str, sep: str, quoting: bool = True) -> list[str]:
    """The header's column names, BOM and surrounding spaces removed."""
    first = next(_records(text, sep, quoting), [])
    return [name.strip().lstrip(BOM).strip() for name in first]


def _check_header(names: list[str], source: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name and name in seen:
            raise DataError(
                source,
                f"duplicated column name (columns {seen[name]} and {i} of the header)",
                column=name,
            )
        seen.setdefault(name, i)


def ragged_lines(text: str, sep: str, quoting: bool, width: int) -> list[tuple[int, int]]:
    """(1-based line, number of fields) of the first records whose field count is not
    `width` (blank lines are not records); quoted fields may span lines."""
    bad: list[tuple[int, int]] = []
    limit = csv.field_size_limit(2**31 - 1)  # huge fields are fine for polars: count them too
    try:
        reader, start = _records(text, sep, quoting), 1
        for record in reader:
            if record and len(record) != width:
                bad.append((start, len(record)))
                if len(bad) == _SHOWN_LINES:
                    break
            start = reader.line_num + 1
    except csv.Error:
        pass  # a record the scan cannot read: report what was found before it
    finally:
        csv.field_size_limit(limit)
    return bad


def _ragged_error(source: str, bad: list[tuple[int, int]], width: int, sep: str) -> DataError:
    shown = "; ".join(
        f"line {line} has {n} ({'too many' if n > width else 'too few'})" for line, n in bad
    )
    return DataError(
        source,
        f"rows with the wrong number of fields (expected {width}, separated by {sep!r}): {shown}",
    )


def parse_delimited(
    text: str,
    source: str,
    sep: str = ",",
    *,
    quoting: bool = True,
    has_header: bool = True,
) -> pl.DataFrame:
    """Delimited text as a DataFrame of strings; header names cleaned (BOM, spaces) and
    unique. A row with too many or too few fields is a DataError naming its line."""
    names = header_names(text, sep, quoting) if has_header else []
    _check_header(names, source)
    try:
        df = pl.read_csv(
            text.encode("utf-8"),
            separator=sep,
            has_header=has_header,
            infer_schema=False,
            quote_char='"' if quoting else None,
        )
    except Exception as exc:  # polars raises several error kinds for malformed text
        width = len(names) or len(next(_records(text, sep, quoting), []))
        if bad := ragged_lines(text, sep, quoting, width):
            raise _ragged_error(source, bad, width, sep) from None
        reason = shorten(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 200)
        raise DataError(source, f"cannot parse as delimited text: {reason}") from None
    # a row with too few fields reads as nulls at its end: only then is the text scanned
    short = df.width and df.height and df[:, -1].null_count()
    if short and (bad := ragged_lines(text, sep, quoting, df.width)):
        raise _ragged_error(source, bad, df.width, sep)
    cleaned = [n or c for n, c in zip(names, df.columns, strict=False)]
    cleaned += df.columns[len(names) :]
    if has_header and len(set(cleaned)) == len(cleaned):
        df.columns = cleaned
    return _drop_unnamed(df, names, source) if has_header else df


def _drop_unnamed(df: pl.DataFrame, names: list[str], source: str) -> pl.DataFrame:
    """`df` without the columns whose header name is blank, where every value is blank too
    (a spreadsheet's trailing separators); a DataError where one holds values, which would
    be kept under no name, or polars' `_duplicated_0` (a name cut from the header)."""
    unnamed = [i for i, name in enumerate(names) if not name]
    for i in unnamed:
        given = df[:, i].str.strip_chars().fill_null("") != ""
        if given.any():
            why = f"column {i + 1} of the header has no name but holds values; name it"
            shown = df[:, i].filter(given).head(5).to_list()
            raise DataError(source, why, rows=rows_where(given), examples=shown)
    return df.drop([df.columns[i] for i in unnamed])


def read_table(path: Path, encoding: str | None = None) -> pl.DataFrame:
    """Read one contract table from CSV/TSV (optionally .gz) or Parquet, every CSV column as
    a string."""
    data = read_input(path)
    if path.suffix == ".parquet":
        if not data.startswith(PARQUET_MAGIC):
            what = _looks_like(data) if data.strip() else "an empty file"
            raise DataError(str(path), f"not a Parquet file (it starts like {what})")
        try:
            df = pl.read_parquet(io.BytesIO(data))
        except Exception as exc:  # pyarrow/polars raise many kinds
            reason = shorten(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 200)
            raise DataError(str(path), f"cannot read Parquet: {reason}") from None
        if df.height == 0:
            raise DataError(str(path), "the table has no rows")
        return df
    sep = "\t" if path.name.removesuffix(".gz").endswith(".tsv") else ","
    text = decode_text(path, data, encoding, sep)
    df = parse_delimited(text, str(path), sep)
    if df.height == 0:
        raise DataError(str(path), "the file has a header but no rows")
    return df


def linked_outside(directory: Path, sources: dict[str, str]) -> list[str]:
    """Notes naming each input file that is a symlink out of `directory` (followed: the
    resolved path is recorded in the lake's manifest through these notes)."""
    root = directory.resolve()
    notes: list[str] = []
    for value in sources.values():
        for name in value.split(", "):
            path = Path(name)
            target = path.resolve()
            if path != directory and not target.is_relative_to(root):
                note = f"{path.name} is a symlink out of the dataset directory; read {target}"
                if note not in notes:
                    notes.append(note)
    return notes


# ---- canonicalization ---------------------------------------------------------------------
DEFAULT_YEARS = (1900, 2100)  # plausible event years; [ingest] min_year/max_year in tvrec.toml
PREMIERE_YEARS = (1850, 2200)  # plausible premiere years (films from the 1880s; announced)
MAX_WEIGHT = 1e9  # larger weights would overflow sums of weights in the features
MAX_EPOCH_SECONDS = 2.5e11  # about year 9900: beyond it no datetime can hold the value
# Epoch seconds of 0 or less are refused: 0 and -1 are what an unknown time is stored as far
# more often than a viewing before 1970 (such a time may be written in ISO-8601 instead).
PLACEHOLDER_EPOCH = (
    "epoch seconds of 0 or less, at or before 1970-01-01T00:00:00Z (an unknown time's "
    "placeholder, such as -1 or 0?); give the real time"
)
# The same placeholder converted before tvrec reads it (a Parquet datetime or an ISO date of
# the epoch): no viewing log starts at that instant.
EPOCH_INSTANT = (
    "exactly 1970-01-01T00:00:00Z, the instant epoch 0 reads as (an unknown time's "
    "placeholder converted to a date?); give the real time"
)
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)$"
# Text that shows nothing: whitespace and Unicode's default-ignorable code points (zero-width
# space U+200B, byte-order mark U+FEFF, word joiner U+2060, soft hyphen, Hangul fillers, ...).
_INVISIBLE = r"^[\s\p{Default_Ignorable_Code_Point}]*$"


def _require(df: pl.DataFrame, table: str, source: str) -> None:
    for col in REQUIRED_COLUMNS[table]:
        if col not in df.columns:
            hint = _delimiter_hint(df.columns)
            raise DataError(
                source,
                f"required column missing (found: {names_list(df.columns)}){hint}",
                column=col,
            )


def _delimiter_hint(columns: list[str]) -> str:
    """A hint when a one-column header looks split by another delimiter."""
    if len(columns) != 1:
        return ""
    for sep in (";", "\t", "|", ","):
        if sep in columns[0]:
            return (
                f"; the header looks separated by {sep!r}: .csv files are comma-separated, "
                ".tsv files tab-separated"
            )
    return ""


def blank(expr: pl.Expr) -> pl.Expr:
    """Whether each text value is missing or shows nothing: empty, whitespace or invisible
    characters only (a title of one zero-width space is as blank as an empty one)."""
    return expr.cast(pl.String).str.contains(_INVISIBLE).fill_null(True)


def blank_values(values: list[Any]) -> list[bool]:
    """`blank` for values read from JSON: None or text that shows nothing is blank; a number,
    an object or a list is not (what it should be is checked elsewhere)."""
    text = pl.Series([v if isinstance(v, str) else "-" for v in values], dtype=pl.String)
    return [v is None or b for v, b in zip(values, text.str.contains(_INVISIBLE), strict=True)]


def _is_scalar(dtype: pl.DataType) -> bool:
    return not dtype.is_nested() and dtype not in (pl.Binary(), pl.Object())


def _type_name(dtype: pl.DataType) -> str:
    """`list`, `struct`, `binary`, ... with polars' own name: what a user can look for."""
    if isinstance(dtype, pl.List | pl.Array):
        kind = "list"
    elif isinstance(dtype, pl.Struct):
        kind = "struct"
    else:
        kind = str(dtype).lower()
    return f"{kind} ({dtype})"


def _check_types(df: pl.DataFrame, source: str, schema: dict[str, pl.DataType]) -> None:
    """A DataError for a column whose values cannot be read as the table needs: lists or
    structs where single values belong, binary data where text belongs. List columns (and
    extra columns, kept as attributes) may also hold lists of single values."""
    for col, dtype in df.schema.items():
        lists_ok = col not in schema or isinstance(schema[col], pl.List)
        if _is_scalar(dtype):
            continue
        if lists_ok and isinstance(dtype, pl.List) and _is_scalar(dtype.inner):
            continue
        want = "single values or lists of them" if lists_ok else "single values"
        raise DataError(
            source, f"values of type {_type_name(dtype)} where {want} are expected", column=col
        )


def _to_string(df: pl.DataFrame, col: str, source: str) -> pl.Expr:
    dtype = df.schema[col]
    if dtype.is_float():
        # 12.0 -> "12": ids that went through a float column; 1.25 is not an id
        values = df[col]
        bad = values.is_not_null() & (
            ~values.is_finite() | (values.round(0) != values) | (values.abs() > 2.0**53)
        )
        if bad.any():
            raise DataError(
                source,
                "ids in a float column must be whole numbers",
                column=col,
                rows=rows_where(bad),
                examples=[str(v) for v in values.filter(bad).head(5).to_list()],
            )
        return pl.col(col).cast(pl.Int64).cast(pl.String)
    return pl.col(col).cast(pl.String).str.strip_chars()


def _id_column(df: pl.DataFrame, col: str, source: str) -> pl.DataFrame:
    df = df.with_columns(_to_string(df, col, source).alias(col))
    bad = df[col].is_null() | (df[col] == "")
    if bad.any():
        raise DataError(source, "empty id", column=col, rows=rows_where(bad))
    return df


def _list_column(df: pl.DataFrame, col: str) -> pl.Expr:
    """A list column (genres, platforms): items trimmed, blank ones dropped, repeats removed.
    A show with none is an empty list, whether its cell is blank or holds separators only
    ("|"), as every adapter gives it; null only where the input has no such column."""
    if col not in df.columns:
        return pl.lit(None, dtype=pl.List(pl.String)).alias(col)
    if isinstance(df.schema[col], pl.List):
        base = pl.col(col).cast(pl.List(pl.String))
    else:
        base = pl.col(col).cast(pl.String).str.split(LIST_SEPARATOR)
    items = base.list.eval(pl.element().str.strip_chars().filter(~blank(pl.element())))
    none = pl.lit([], dtype=pl.List(pl.String))
    return items.list.unique(maintain_order=True).fill_null(none).alias(col)


def _parse_date(df: pl.DataFrame, col: str, source: str) -> pl.Expr:
    dtype = df.schema[col]
    if dtype == pl.Date:
        return pl.col(col)
    if isinstance(dtype, pl.Datetime):
        return pl.col(col).dt.date()
    parsed = pl.col(col).cast(pl.String).str.strip_chars().str.slice(0, 10)
    return parsed.str.to_date("%Y-%m-%d", strict=False).alias(col)


_FAR = datetime.min  # marks a value that parses but lies beyond what a datetime can hold


def _parse_iso(value: str) -> datetime | None:
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    try:
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset
        return _FAR


def _from_epoch(seconds: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Epoch seconds -> (Datetime(us, UTC), mask of finite values too far out for one)."""
    finite = seconds.is_finite().fill_null(False)
    far = finite & (seconds.abs() > MAX_EPOCH_SECONDS)
    micros = pl.select(
        pl.when(finite & ~far).then(seconds * 1_000_000).round(0).cast(pl.Int64)
    ).to_series()
    return micros.cast(pl.Datetime("us", "UTC")), far


def _epoch_text(strings: pl.Series) -> pl.Series:
    """The seconds of the (stripped) strings written as epoch numbers; null for the rest."""
    numeric = strings.str.contains(_NUMBER)
    return pl.select(pl.when(numeric).then(strings.cast(pl.Float64, strict=False))).to_series()


def _from_strings(series: pl.Series) -> tuple[pl.Series, pl.Series]:
    """ISO-8601 or epoch-second strings -> (Datetime(us, UTC), mask of far-out values)."""
    strings = series.cast(pl.String).str.strip_chars()
    seconds = _epoch_text(strings)
    numeric = seconds.is_not_null()
    epoch, far = _from_epoch(seconds)
    iso_strings = strings.filter(~numeric).unique().drop_nulls().to_list()
    mapping = {u: _parse_iso(u) for u in iso_strings}
    far_iso = {u for u, v in mapping.items() if v is _FAR}
    iso = strings.replace_strict(
        list(mapping),
        [None if v is _FAR else v for v in mapping.values()],
        default=None,
        return_dtype=pl.Datetime("us", "UTC"),
    )
    out = pl.select(pl.when(numeric).then(epoch).otherwise(iso)).to_series()
    return out, (numeric & far) | strings.is_in(list(far_iso)).fill_null(False)


def _to_datetimes(series: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Any timestamp column -> (Datetime(us, UTC) with nulls where unreadable, far mask)."""
    dtype = series.dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone:
            out = series.dt.convert_time_zone("UTC")
        else:
            out = series.dt.replace_time_zone("UTC")
        return out.dt.cast_time_unit("us"), pl.repeat(False, series.len(), eager=True)
    if dtype == pl.Date:
        out = series.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        return out, pl.repeat(False, series.len(), eager=True)
    if dtype.is_numeric():
        return _from_epoch(series.cast(pl.Float64))
    return _from_strings(series)


def _epoch_values(series: pl.Series) -> pl.Series:
    """The values given as epoch seconds (numbers, or text of a number) as Float64; null for
    ISO-8601 text, dates and datetimes."""
    dtype = series.dtype
    if dtype.is_numeric():
        return series.cast(pl.Float64)
    if isinstance(dtype, pl.Datetime) or dtype == pl.Date:
        return pl.repeat(None, series.len(), dtype=pl.Float64, eager=True)
    return _epoch_text(series.cast(pl.String).str.strip_chars())


def refuse_placeholder_epochs(
    seconds: pl.Series, source: str, column: str, values: pl.Series, how: str
) -> None:
    """A DataError for epoch `seconds` of 0 or less (-1 reads as 1969-12-31T23:59:59Z, inside
    the plausible years), quoting the rows' `values` as given and saying `how` to mend them;
    null seconds (ISO-8601 text, dates) pass."""
    placeholder = (seconds <= 0).fill_null(False)
    if placeholder.any():
        raise DataError.where(source, f"{PLACEHOLDER_EPOCH} {how}", column, placeholder, values)


def parse_timestamps(
    series: pl.Series, source: str, column: str, years: tuple[int, int] = DEFAULT_YEARS
) -> pl.Series:
    """ISO-8601 strings or epoch seconds -> Datetime(us, UTC); a DataError for a value that
    is empty, unparsable or infinite, for one outside the plausible `years`, and for epoch
    seconds of 0 or less (an unknown time's placeholder)."""
    if not _is_scalar(series.dtype):
        raise DataError(
            source, f"values of type {_type_name(series.dtype)}, not timestamps", column=column
        )
    out, far = _to_datetimes(series)
    bad = out.is_null() & ~far
    if bad.any():
        raise DataError(
            source,
            "unparsable timestamp (use ISO-8601 such as 2024-03-01T20:15:00Z, or epoch "
            "seconds; blank is not allowed)",
            column=column,
            rows=rows_where(bad),
            examples=["" if e is None else str(e) for e in series.filter(bad).head(5).to_list()],
        )
    year = out.dt.year()
    off = far | (year < years[0]).fill_null(False) | (year > years[1]).fill_null(False)
    if off.any():
        raise DataError(
            source,
            f"timestamp outside the plausible years {years[0]}-{years[1]} (epoch values are "
            "seconds, not milliseconds; the range is [ingest] min_year/max_year in tvrec.toml)",
            column=column,
            rows=rows_where(off),
            examples=[str(e) for e in series.filter(off).head(5).to_list()],
        )
    how = "(one before 1970 in ISO-8601, such as 1969-07-20T20:17:00Z) or leave the event out"
    seconds = _epoch_values(series)
    refuse_placeholder_epochs(seconds, source, column, series, how)
    # a placeholder 0 a writer already turned into a date or a datetime: the epoch itself
    at_epoch = seconds.is_null() & (out.dt.epoch("us") == 0).fill_null(False)
    if at_epoch.any():
        why = f"{EPOCH_INSTANT} or leave the event out"
        raise DataError.where(source, why, column, at_epoch, series)
    return out.alias(column)


def _extras_json(df: pl.DataFrame, known: set[str]) -> pl.Expr:
    extra = [c for c in df.columns if c not in known]
    if not extra:
        return pl.lit(None, dtype=pl.String).alias("attributes")
    as_text = [
        pl.col(c).cast(pl.List(pl.String)).list.join(LIST_SEPARATOR)
        if isinstance(df.schema[c], pl.List)
        else pl.col(c).cast(pl.String)
        for c in extra
    ]
    return (
        pl.struct(as_text)
        .map_elements(lambda s: json.dumps(s, ensure_ascii=False), return_dtype=pl.String)
        .alias("attributes")
    )


# The shows' number columns: what each holds, as the message for a bad value says it.
# The largest plausible value where a type's own limit is not one: an episode (or a film) of
# about a week; 1e300 minutes became a feature's log1p of 690.
SHOW_NUMBER_MOST = {"runtime_minutes": 10_000.0}
SHOW_NUMBERS = {
    "seasons": "a count of seasons, 0 or more; blank if unknown",
    "episodes": "a count of episodes, 0 or more; blank if unknown",
    "runtime_minutes": f"minutes, 0 to {SHOW_NUMBER_MOST['runtime_minutes']:,g}; blank if unknown",
}


def canonical_shows(df: pl.DataFrame, source: str) -> pl.DataFrame:
    _require(df, "shows", source)
    _check_types(df, source, SHOWS_SCHEMA)
    df = _id_column(df, "show_id", source)
    dup = df["show_id"].is_duplicated()
    if dup.any():
        ex = df.filter(dup)["show_id"].unique(maintain_order=True).head(5).to_list()
        raise DataError(
            source, "duplicated show_id", column="show_id", rows=rows_where(dup), examples=ex
        )
    no_title = df.select(blank(pl.col("title"))).to_series()
    if no_title.any():
        why = "empty title (blank, or only invisible characters such as a zero-width space)"
        titles = df["title"].cast(pl.String).fill_null("")
        raise DataError.where(source, why, "title", no_title, titles)
    if "premiered" in df.columns:
        parsed = df.select(_parse_date(df, "premiered", source))["premiered"]
        given = df["premiered"].cast(pl.String).str.strip_chars().fill_null("") != ""
        bad = given & parsed.is_null()
        if bad.any():
            raise DataError.where(
                source, "unparsable date (use YYYY-MM-DD)", "premiered", bad, df["premiered"]
            )
        low, high = PREMIERE_YEARS
        far = ~parsed.dt.year().is_between(low, high).fill_null(True)
        if far.any():
            why = f"premiere outside the plausible years {low}-{high}"
            raise DataError.where(source, why, "premiered", far, df["premiered"])
        df = df.with_columns(parsed)
    exprs = []
    for col, dtype in SHOWS_SCHEMA.items():
        if col == "attributes":
            # an input column named `attributes` is an extra like any other (it was dropped)
            exprs.append(_extras_json(df, set(SHOWS_SCHEMA) - {"attributes"}))
        elif col in LIST_COLUMNS:
            exprs.append(_list_column(df, col))
        elif col not in df.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(col))
        elif dtype == pl.String:
            exprs.append(pl.col(col).cast(pl.String).str.strip_chars().alias(col))
        elif col in SHOW_NUMBERS:
            whole = dtype == pl.Int32()
            most = SHOW_NUMBER_MOST.get(col)
            values = number_column(df, col, source, SHOW_NUMBERS[col], whole=whole, most=most)
            exprs.append(values.cast(dtype).alias(col))
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
            rows=rows_where(unknown),
            examples=ex,
        )


def number_column(
    df: pl.DataFrame,
    col: str,
    source: str,
    what: str,
    whole: bool = False,
    most: float | None = None,
) -> pl.Series:
    """`col` as Float64 (blank -> null); a DataError for text that is not a number and for
    NaN, infinite or negative numbers, or numbers above `most`; with `whole`, for fractions
    and numbers beyond an Int32 too. `what` says what the column holds, in the message."""
    text = df[col].cast(pl.String).str.strip_chars().replace("", None)
    values = text.cast(pl.Float64, strict=False)
    problems = [
        (values.is_null() & text.is_not_null(), "is not a number"),
        (values.is_nan() | values.is_infinite(), "is NaN or infinite"),
        (values < 0, "is negative"),
    ]
    if most is not None:
        problems.append((values > most, f"is above {most:,g}"))
    if whole:
        problems += [
            (values.round(0) != values, "is not a whole number"),
            (values > 2**31 - 1, "is too large"),
        ]
    for mask, why in problems:
        mask = mask.fill_null(False)
        if mask.any():
            raise DataError.where(source, f"{col} {why} ({what})", col, mask, df[col])
    return values


def _weights(df: pl.DataFrame, source: str) -> pl.Series:
    """The events' weights: blank -> 1, else a finite number in 0..MAX_WEIGHT."""
    if "weight" not in df.columns:
        return pl.repeat(1.0, df.height, eager=True, dtype=pl.Float64)
    rule = f"a weight is a number from 0 to {MAX_WEIGHT:g}; blank means 1"
    values = number_column(df, "weight", source, rule)
    big = (values > MAX_WEIGHT).fill_null(False)
    if big.any():
        examples = [str(v) for v in values.filter(big).head(5).to_list()]
        raise DataError(
            source, f"weight too large ({rule})", column="weight", rows=rows_where(big),
            examples=examples,
        )  # fmt: skip
    return values.fill_null(1.0)


def canonical_events(
    df: pl.DataFrame,
    source: str,
    show_ids: pl.Series,
    years: tuple[int, int] = DEFAULT_YEARS,
) -> pl.DataFrame:
    _require(df, "events", source)
    _check_types(df, source, EVENTS_SCHEMA)
    df = _id_column(df, "user_id", source)
    df = _id_column(df, "show_id", source)
    ts = parse_timestamps(df["event_timestamp"], source, "event_timestamp", years)
    _require_known_shows(df, source, show_ids, "events")
    weight = _weights(df, source)
    seconds = (
        number_column(df, "watch_seconds", source, "seconds watched; blank if unknown")
        if "watch_seconds" in df.columns
        else pl.repeat(None, df.height, eager=True, dtype=pl.Float64)
    )
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
        seconds.alias("watch_seconds"),
    )
    return out.sort("event_timestamp", "user_id", "show_id", maintain_order=True)


def canonical_credits(df: pl.DataFrame | None, source: str, show_ids: pl.Series) -> pl.DataFrame:
    if df is None:
        return empty("credits")
    _require(df, "credits", source)
    _check_types(df, source, CREDITS_SCHEMA)
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
    _check_types(df, source, USERS_SCHEMA)
    df = _id_column(df, "user_id", source)
    dup = df["user_id"].is_duplicated()
    if dup.any():
        raise DataError(source, "duplicated user_id", column="user_id", rows=rows_where(dup))
    return df.select(pl.col("user_id"), _extras_json(df, {"user_id"}))


def canonicalize(raw: RawDataset, years: tuple[int, int] = DEFAULT_YEARS) -> Dataset:
    """Validate every table of `raw`; a DataError names the first problem found. Event
    timestamps must fall in the calendar years `years` (first and last, inclusive)."""
    src = {t: raw.sources.get(t, t) for t in SCHEMAS}
    shows = canonical_shows(raw.shows, src["shows"])
    events = canonical_events(raw.events, src["events"], shows["show_id"], years)
    credits = canonical_credits(raw.credits, src["credits"], shows["show_id"])
    users = canonical_users(raw.users, src["users"])
    return Dataset(raw.name, shows, events, credits, users, raw.timed, list(raw.notes))


def read_contract_dir(directory: Path, encoding: str | None = None) -> RawDataset:
    """Read a directory laid out by the contract (shows, events, credits?, users?); text
    files in `encoding` (None: UTF-8)."""
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
                    f"required table '{table}' not found (.csv, .tsv, .csv.gz or .parquet)",
                )
            tables[table] = None
            continue
        sources[table] = str(path)
        tables[table] = read_table(path, encoding)
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
