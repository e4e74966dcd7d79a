"""A generated corpus of bad inputs: each case is a dataset (written under a root directory)
and the `tvrec` command that must refuse it with exit status 2, a message naming the file,
the column and the first offending rows or lines, and the work directory unchanged.

    python tests/bad_inputs.py OUTDIR      # writes the corpus and lists its cases

`tests/test_bad_inputs.py` runs every case against a work directory holding a good lake.
Nothing here is committed data: the files are written from the strings below.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

SHOWS = (
    "show_id,title,genres,premiered\n"
    "1,Alpha,Drama|Crime,2020-01-05\n"
    "2,Beta,Comedy,2021-03-01\n"
    "3,Gamma,Drama,2019-07-01\n"
)
EVENTS = (
    "user_id,show_id,event_timestamp,weight\n"
    "u1,1,2024-01-01T20:00:00Z,1\n"
    "u2,2,1704139200,0.5\n"
    "u1,2,2024-01-03T21:30:00+01:00,1\n"
    "u3,3,2024-01-04T10:00:00Z,2\n"
)


@dataclass(frozen=True)
class Case:
    """One bad input: `args` of `tvrec` (the test adds --workdir), the exit code, and regular
    expressions the message must match (whitespace collapsed). `toml` is written into the
    work directory as tvrec.toml before the run; `run` cases go through `tvrec run`."""

    name: str
    args: tuple[str, ...]
    expect: tuple[str, ...]
    code: int = 2
    toml: str | None = None
    default_models: bool = False  # the nightly job's own models, not the tests' quick one

    @property
    def is_run(self) -> bool:
        return self.args[0] == "run"


def write(path: Path, body: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    return path


def contract_dir(root: Path, name: str, **files: str | bytes | None) -> Path:
    """A contract dataset `root/name` with good shows.csv and events.csv, except the files
    given (file name with '.' as '_': events_csv=...; None leaves a file out)."""
    directory = root / name
    bodies: dict[str, str | bytes | None] = {"shows.csv": SHOWS, "events.csv": EVENTS}
    for key, body in files.items():
        bodies[_file_name(key)] = body
    for file, body in bodies.items():
        if body is not None:
            write(directory / file, body)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _file_name(key: str) -> str:
    """events_csv -> events.csv, events_csv_gz -> events.csv.gz, u_data -> u.data."""
    stem, *exts = key.split("_")
    return ".".join([stem, *exts])


def parquet(path: Path, frame: pl.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path


def events_with(column: str, values: list[str]) -> str:
    """EVENTS with `column` of its four rows replaced by `values`."""
    return table_with(EVENTS, column, values)


def table_with(table: str, column: str, values: list[str]) -> str:
    """The CSV text `table` with `column` of its rows replaced by `values`."""
    lines = table.splitlines()
    header = lines[0].split(",")
    i = header.index(column)
    rows = []
    for line, value in zip(lines[1:], values, strict=True):
        fields = line.split(",")
        fields[i] = value
        rows.append(",".join(fields))
    return "\n".join([lines[0], *rows]) + "\n"


def good_events_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u3"],
            "show_id": ["1", "2", "2", "3"],
            "event_timestamp": [1704139200.0, 1704139300.0, 1704300000.0, 1704362400.0],
            "weight": [1.0, 0.5, 1.0, 2.0],
        }
    )


def ingest(directory: Path, *extra: str) -> tuple[str, ...]:
    return ("ingest", str(directory), *extra)


# ---- the cases ------------------------------------------------------------------------------
Builder = Callable[[Path], list[Case]]
Spec = tuple[str, list[str], tuple[str, ...]]  # name, the events column's 4 values, expect
YEARS = r"outside the plausible years 1900-2100"
TIMESTAMP_SPECS: list[Spec] = [
    ("epoch-too-large", ["2024-01-01", "99999999999999999999", "2024-01-02", "2024-01-03"],
     (r"events\.csv, column 'event_timestamp'", YEARS, r"rows 2\b")),
    ("epoch-milliseconds", ["2024-01-01", "2024-01-02", "1704139200000", "2024-01-03"],
     (r"events\.csv, column 'event_timestamp'", YEARS, "milliseconds", r"rows 3\b")),
    ("year-9999", ["2024-01-01", "2024-01-02", "2024-01-03", "9999-12-31T23:59:59Z"],
     (r"events\.csv, column 'event_timestamp'", YEARS, r"rows 4\b", "9999-12-31")),
    ("year-1850", ["1850-06-01", "2024-01-02", "2024-01-03", "1899-12-31T23:00:00Z"],
     (YEARS, r"rows 1, 4\b", "min_year/max_year")),
    ("year-1-with-offset", ["2024-01-01", "0001-01-01T00:00:00+05:00", "2024-01-02", "2024-01-03"],
     (YEARS, r"rows 2\b")),
    ("year-10000-unparsable", ["2024-01-01", "2024-01-02", "10000-01-01", "2024-01-03"],
     (r"column 'event_timestamp': unparsable timestamp", r"rows 3\b")),
    ("blank-timestamp", ["2024-01-01", "", "2024-01-02", "2024-01-03"],
     (r"column 'event_timestamp': unparsable timestamp", r"rows 2\b")),
    # an unknown time stored as -1 or 0 (1969-12-31T23:59:59Z, 1970-01-01T00:00:00Z) was kept
    ("epoch-placeholder", ["2024-01-01", "-1", "0", "2024-01-03"],
     (r"events\.csv, column 'event_timestamp': epoch seconds of 0 or less, at or before "
      r"1970-01-01T00:00:00Z", "ISO-8601", r"rows 2, 3\b", r"values '-1', '0'")),
    ("iso-epoch-instant", ["2024-01-01", "2024-01-02", "1970-01-01T00:00:00Z", "2024-01-03"],
     (r"column 'event_timestamp': exactly 1970-01-01T00:00:00Z", r"rows 3\b")),
]  # fmt: skip
WEIGHT_RULE = r"a weight is a number from 0 to 1e\+09; blank means 1"
WEIGHT_SPECS: list[Spec] = [
    (f"weight-{label}", ["1", value, "1", "1"],
     (rf"events\.csv, column 'weight': weight {why}", WEIGHT_RULE, r"rows 2\b"))
    for label, value, why in (
        ("inf", "inf", "is NaN or infinite"),
        ("nan", "NaN", "is NaN or infinite"),
        ("negative", "-2", "is negative"),
        ("huge", "1e300", "too large"),
        ("text", "five", "is not a number"),
    )
]  # fmt: skip


def cell_case(root: Path, column: str, spec: Spec, *extra: str) -> Case:
    """A case whose events.csv has `column` of its four rows set to the spec's values."""
    name, values, expect = spec
    return Case(name, ingest(contract_dir(root, name, events_csv=events_with(column, values)),
                             *extra), expect)  # fmt: skip


def _timestamps(root: Path) -> list[Case]:
    cases = [cell_case(root, "event_timestamp", spec) for spec in TIMESTAMP_SPECS]
    return [
        *cases,
        Case(
            "toml-max-year",
            ingest(contract_dir(root, "toml-max-year")),
            (r"outside the plausible years 1990-2023", r"rows 1, 2, 3, 4\b"),
            toml="[ingest]\nmin_year = 1990\nmax_year = 2023\n",
        ),
        Case(
            "toml-years-reversed",
            ingest(contract_dir(root, "toml-years-reversed")),
            (r"tvrec\.toml", r"min_year 2030 is after max_year 2000"),
            toml="[ingest]\nmin_year = 2030\nmax_year = 2000\n",
        ),
    ]


def _weights(root: Path) -> list[Case]:
    seconds = EVENTS.replace("weight\n", "weight,watch_seconds\n").replace("Z,2\n", "Z,2,-5\n")
    seconds = seconds.replace(",1\n", ",1,60\n").replace(",0.5\n", ",0.5,30\n")
    return [
        *(cell_case(root, "weight", spec) for spec in WEIGHT_SPECS),
        Case(
            "watch-seconds-negative",
            ingest(contract_dir(root, "watch-seconds-negative", events_csv=seconds)),
            (r"column 'watch_seconds': watch_seconds is negative", r"rows 4\b"),
        ),
    ]


NUMBERED_SHOWS = (
    "show_id,title,seasons,episodes,runtime_minutes\n"
    "1,Alpha,2,20,45\n"
    "2,Beta,3,30,50.5\n"
    "3,Gamma,1,8,30\n"
)
# name, the shows column, its 3 values, expect (each was read as null, or kept, silently)
SHOW_NUMBER_SPECS: list[tuple[str, str, list[str], tuple[str, ...]]] = [
    ("shows-seasons-text", "seasons", ["2", "three", "1"],
     (r"shows\.csv, column 'seasons': seasons is not a number \(a count of seasons",
      r"rows 2\b", r"values 'three'")),
    ("shows-episodes-negative", "episodes", ["20", "30", "-3"],
     (r"shows\.csv, column 'episodes': episodes is negative", r"rows 3\b", r"values '-3'")),
    ("shows-seasons-fraction", "seasons", ["2.5", "3", "1"],
     (r"column 'seasons': seasons is not a whole number", r"rows 1\b")),
    ("shows-episodes-too-large", "episodes", ["20", "30", "3000000000"],
     (r"column 'episodes': episodes is too large", r"rows 3\b")),
    ("shows-runtime-inf", "runtime_minutes", ["45", "inf", "30"],
     (r"column 'runtime_minutes': runtime_minutes is NaN or infinite", r"rows 2\b")),
    # accepted: a feature's log1p of 690 beside a drama's 4
    ("shows-runtime-huge", "runtime_minutes", ["45", "30", "1e300"],
     (r"column 'runtime_minutes': runtime_minutes is above 10,000 \(minutes, 0 to 10,000",
      r"rows 3\b", r"values '1e300'")),
]  # fmt: skip


def _show_numbers(root: Path) -> list[Case]:
    cases = [
        Case(name, ingest(contract_dir(root, name, shows_csv=table_with(NUMBERED_SHOWS, col, v))),
             expect)
        for name, col, v, expect in SHOW_NUMBER_SPECS
    ]  # fmt: skip
    frame = pl.DataFrame(
        {"show_id": ["1", "2", "3"], "title": ["A", "B", "C"], "seasons": [1, -2, 3]}
    )
    return [
        *cases,
        parquet_case(root, "parquet-seasons-negative",
                     (r"shows\.parquet, column 'seasons': seasons is negative", r"rows 2\b"),
                     "shows", frame),
    ]  # fmt: skip


def _adapter_numbers(root: Path) -> list[Case]:
    """Numbers in the adapters' own files, named by the file's own column."""
    titles = "id,title,type,release_year,seasons,runtime\nts1,A,SHOW,2020,-4,30\n"
    netflix = write(root / "netflix-seasons-negative" / "titles.csv", titles).parent
    runtime = titles.replace(",-4,30", ",2,long")
    netflix_runtime = write(root / "netflix-runtime-text" / "titles.csv", runtime).parent
    year_text = titles.replace("2020,-4", "20x0,4")
    year = write(root / "netflix-year-text" / "titles.csv", year_text).parent
    far = write(root / "netflix-year-far" / "titles.csv", titles.replace("2020,-4", "99999,4"))
    anime = root / "anime-episodes-text"
    write(anime / "anime_info.dat", "anime_ids\tname\tgenre\ttype\tepisodes\trating\tmembers\n"
          "1\tA\tDrama\tTV\t12\t8.1\t100\n2\tB\tDrama\tTV\ttwelve\t7.0\t50\n")  # fmt: skip
    write(anime / "anime_history.dat", "User_ID\tAnime_ID\tFeedback\n1\t1\t1\n")
    tvmaze = root / "tvmaze-runtime-negative"
    write(
        tvmaze / "tvmaze_shows.json",
        '[{"id": 1, "name": "A", "runtime": 30}, {"id": 2, "name": "B", "runtime": -30}]',
    )
    stream = root / "streaming-duration-text"
    write(
        stream / "hulu_titles.csv",
        "show_id,type,title,duration\ns1,Movie,A,90 min\ns2,TV Show,B,three seasons\n",
    )
    stream_date = root / "streaming-date-text"
    write(
        stream_date / "netflix_titles.csv",
        'show_id,type,title,date_added\ns1,Movie,A,"September 25, 2021"\ns2,Movie,B,2021-09-24\n'
        "s3,Movie,C,Septembre 25 2021\n",
    )
    nf = ("--format", "netflix-titles")
    return [
        Case("netflix-seasons-negative", ingest(netflix, *nf),
             (r"titles\.csv, column 'seasons': seasons is negative", r"rows 1\b", "'-4'")),
        Case("netflix-runtime-text", ingest(netflix_runtime, *nf),
             (r"titles\.csv, column 'runtime': runtime is not a number", r"values 'long'")),
        Case("netflix-year-text", ingest(year, *nf),
             (r"titles\.csv, column 'release_year': not a number", r"values '20x0'")),
        Case("netflix-year-far", ingest(far.parent, *nf),
             (r"titles\.csv, column 'release_year': not a plausible year \(1850-2200\)",
              r"values '99999'")),
        Case("anime-episodes-text", ingest(anime, "--format", "anime"),
             (r"anime_info\.dat, column 'episodes': episodes is not a number", r"rows 2\b",
              "Unknown")),
        Case("tvmaze-runtime-negative", ingest(tvmaze, "--format", "tvmaze"),
             (r"column 'runtime': field 'runtime' is not a number of minutes", r"rows 2\b")),
        Case("streaming-duration-text", ingest(stream, "--format", "streaming-catalogue"),
             (r"hulu_titles\.csv, column 'duration': not a duration", r"rows 2\b",
              "'three seasons'")),
        Case("streaming-date-text", ingest(stream_date, "--format", "streaming-catalogue"),
             (r"netflix_titles\.csv, column 'date_added': not a date", r"rows 3\b",
              "'Septembre 25 2021'")),
    ]  # fmt: skip


TVMAZE_FIELD = r"tvmaze_shows\.json, column '{0}': field '{0}' is not "
# name, the second show object, what the message says past the field (each was accepted, the
# value kept off TVmaze's scale or dropped, or refused in polars' words naming no field)
TVMAZE_SPECS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("tvmaze-rating-out-of-scale", '"rating": {"average": 85}', "rating.average",
     (r"a number from 0 to 10", "'85'")),
    ("tvmaze-rating-negative", '"rating": {"average": -1}', "rating.average", ("'-1'",)),
    ("tvmaze-rating-nan", '"rating": {"average": NaN}', "rating.average", ("'NaN'",)),
    ("tvmaze-rating-number", '"rating": 7.5', "rating",
     (r"an object such as \{\"average\": 8\.1\}",)),  # the rating was dropped
    ("tvmaze-weight-over-100", '"weight": 250', "weight", (r"a whole number from 0 to 100",)),
    ("tvmaze-weight-fraction", '"weight": 50.5', "weight", ("'50.5'",)),  # stored as 50
    ("tvmaze-weight-infinite", '"weight": 1e400', "weight", ("'Infinity'",)),
    ("tvmaze-language-list", '"language": ["en"]', "language", (r"text", r"'\[\"en\"\]'")),
    ("tvmaze-summary-number", '"summary": 5', "summary", ("text",)),
    ("tvmaze-network-text", '"network": "HBO"', "network", (r"an object such as",)),
    ("tvmaze-network-country-text", '"network": {"name": "HBO", "country": "US"}',
     "network.country", (r"\{\"code\": \"US\"\}",)),
    ("tvmaze-genres-objects", '"genres": [{"name": "Drama"}]', "genres",
     (r"a list of genre names",)),  # became the genre "{'name': 'Drama'}"
]  # fmt: skip


def _tvmaze_fields(root: Path) -> list[Case]:
    """TVmaze fields off TVmaze's own scales and types, named by the field and the show."""
    cases = []
    for name, fields, field, expect in TVMAZE_SPECS:
        body = f'[{{"id": 1, "name": "A"}}, {{"id": 2, "name": "B", {fields}}}]'
        directory = write(root / name / "tvmaze_shows.json", body).parent
        pattern = TVMAZE_FIELD.format(re.escape(field))
        cases.append(Case(name, ingest(directory, "--format", "tvmaze"),
                          (pattern, r"rows 2\b", *expect)))  # fmt: skip
    boolean = write(root / "tvmaze-id-boolean" / "tvmaze_shows.json", '[{"id": true, "name": "A"}]')
    fraction = write(
        root / "tvmaze-id-fraction" / "tvmaze_shows.json",
        '[{"id": 1, "name": "A"}, {"id": 1.5, "name": "B"}, {"id": NaN, "name": "C"}]',
    )
    return [
        *cases,
        Case("tvmaze-id-boolean", ingest(boolean.parent, "--format", "tvmaze"),
             (TVMAZE_FIELD.format("id") + r"a single value", "'true'")),  # was show "True"
        Case("tvmaze-id-fraction", ingest(fraction.parent, "--format", "tvmaze"),
             (TVMAZE_FIELD.format("id") + r"a single value \(text or a whole number\)",
              r"rows 2, 3\b", "'1.5', 'NaN'")),  # were shows "1.5" and "nan"
    ]  # fmt: skip


def parquet_case(
    root: Path, name: str, expect: tuple[str, ...], table: str, frame: pl.DataFrame
) -> Case:
    """A contract dataset whose `table` is the Parquet `frame` (the other table CSV)."""
    directory = contract_dir(root, name, **{f"{table}_csv": None})
    parquet(directory / f"{table}.parquet", frame)
    return Case(name, ingest(directory), expect)


def _parquet(root: Path) -> list[Case]:
    ev = good_events_frame()
    shows = pl.DataFrame({"show_id": ["1", "2", "3"], "title": ["Alpha", "Beta", "Gamma"]})
    ts_1800 = pl.Series("event_timestamp", [1704139200, -5_400_000_000, 1704300000, 1704362400])
    specs: list[tuple[str, tuple[str, ...], str, pl.DataFrame]] = [
        ("parquet-timestamp-inf",
         (r"events\.parquet, column 'event_timestamp': unparsable timestamp", r"rows 2, 4\b"),
         "events", ev.with_columns(pl.Series(
             "event_timestamp", [1704139200.0, float("inf"), 1.7e9, float("nan")]))),
        ("parquet-datetime-1800", (r"events\.parquet", "plausible years", r"rows 2\b"),
         "events", ev.with_columns((ts_1800 * 1_000_000).cast(pl.Datetime("us")))),
        ("parquet-epoch-minus-one",
         (r"events\.parquet, column 'event_timestamp': epoch seconds of 0 or less", r"rows 3\b",
          "'-1.0'"),
         "events", ev.with_columns(pl.Series(
             "event_timestamp", [1704139200.0, 1704139300.0, -1.0, 1704362400.0]))),
        # the placeholder 0 already a datetime (a writer's pd.to_datetime(0)) was a 1970 viewing
        ("parquet-datetime-epoch",
         (r"events\.parquet, column 'event_timestamp': exactly 1970-01-01T00:00:00Z, the "
          r"instant epoch 0 reads as", r"rows 2\b"),
         "events", ev.with_columns(pl.Series(
             "event_timestamp", [1704139200_000000, 0, 1704300000_000000, 1704362400_000000],
             pl.Datetime("us")))),
        ("parquet-show-id-list", (r"events\.parquet, column 'show_id': values of type list",),
         "events", ev.with_columns(pl.Series("show_id", [[1], [2], [2], [3]]))),
        ("parquet-shows-id-list", (r"shows\.parquet, column 'show_id': values of type list",),
         "shows", shows.with_columns(pl.Series("show_id", [["1"], ["2"], ["3"]]))),
        ("parquet-fractional-ids",
         (r"events\.parquet, column 'show_id': ids in a float column must be whole",
          r"rows 3\b", "1.25"),
         "events", ev.with_columns(pl.Series("show_id", [1.0, 2.0, 1.25, 3.0]))),
        ("parquet-nan-user-id",
         (r"column 'user_id': ids in a float column must be whole", r"rows 2\b"),
         "events", ev.with_columns(pl.Series("user_id", [1.0, float("nan"), 3.0, 4.0]))),
        ("parquet-weight-nan",
         (r"events\.parquet, column 'weight': weight is NaN or infinite", r"rows 3\b"),
         "events", ev.with_columns(pl.Series("weight", [1.0, 1.0, float("nan"), 1.0]))),
        ("parquet-title-struct", (r"shows\.parquet, column 'title': values of type struct",),
         "shows", shows.with_columns(pl.Series("title", [{"en": "A"}, {"en": "B"}, {"en": "C"}]))),
        ("parquet-binary-ids", (r"shows\.parquet, column 'show_id': values of type binary",),
         "shows", shows.with_columns(pl.Series("show_id", [b"1", b"\xff", b"3"]))),
        ("parquet-no-rows", (r"events\.parquet: the table has no rows",), "events", ev.head(0)),
    ]  # fmt: skip
    corrupt = contract_dir(root, "parquet-corrupt", events_csv=None)
    write(corrupt / "events.parquet", b"PAR1" + b"\x00junk" * 50 + b"PAR1")
    return [
        *(parquet_case(root, *spec) for spec in specs),
        Case("parquet-corrupt", ingest(corrupt), (r"events\.parquet: cannot read Parquet",)),
    ]


def zipped(name: str, body: str) -> bytes:
    """A ZIP archive holding one file `name`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, body)
    return buffer.getvalue()


def events_as(root: Path, name: str, make: Callable[[Path], object]) -> Path:
    """A contract dataset whose events.csv is whatever `make(path)` puts at that path."""
    directory = contract_dir(root, name, events_csv=None)
    make(directory / "events.csv")
    return directory


def _file_types(root: Path) -> list[Case]:
    outside = write(root / "elsewhere" / "events.csv", EVENTS.replace("u2,2,", "u2,9,"))
    specs: list[tuple[str, Callable[[Path], object], str]] = [
        ("events-directory", Path.mkdir, r"events\.csv: is a directory"),
        ("events-fifo", os.mkfifo, r"events\.csv: is a FIFO"),
        ("symlink-dangling", lambda p: p.symlink_to(root / "nowhere" / "events.csv"),
         r"events\.csv: a symlink to .*nowhere"),
        ("symlink-loop", lambda p: p.symlink_to(p), r"events\.csv: cannot open: Too many levels"),
        ("symlink-outside-bad", lambda p: p.symlink_to(outside),
         r"symlink-outside-bad/events\.csv, column 'show_id': events for shows"),
    ]  # fmt: skip
    return [
        Case(name, ingest(events_as(root, name, make)), (expect,)) for name, make, expect in specs
    ]


def _wrong_files(root: Path) -> list[Case]:
    bad_row = events_with("event_timestamp", ["2024-01-01", "2024-01-02", "someday", "2024-01-03"])
    gz = contract_dir(
        root, "csv-gz-bad-row", events_csv=None, events_csv_gz=gzip.compress(bad_row.encode())
    )
    corrupt = contract_dir(root, "csv-gz-corrupt", events_csv=None, events_csv_gz=b"\x1f\x8bjunk")
    gz_named_csv = contract_dir(root, "gzip-named-csv", events_csv=gzip.compress(EVENTS.encode()))
    pq_named_csv = events_as(root, "parquet-named-csv", lambda p: parquet(p, good_events_frame()))
    zip_named_csv = contract_dir(root, "zip-named-csv", events_csv=zipped("events.csv", EVENTS))
    csv_named_parquet = contract_dir(root, "csv-named-parquet", shows_csv=None, shows_parquet=SHOWS)
    two = contract_dir(root, "two-files-one-table")
    parquet(two / "shows.parquet", pl.DataFrame({"show_id": ["1"], "title": ["A"]}))
    return [
        Case("csv-gz-bad-row", ingest(gz),
             (r"events\.csv\.gz, column 'event_timestamp': unparsable", r"rows 3\b")),
        Case("csv-gz-corrupt", ingest(corrupt), (r"events\.csv\.gz: not a readable gzip",)),
        Case("gzip-named-csv", ingest(gz_named_csv), (r"events\.csv: the file is gzip",)),
        Case("parquet-named-csv", ingest(pq_named_csv), (r"events\.csv: the file is Parquet",)),
        Case("zip-named-csv", ingest(zip_named_csv),
             (r"events\.csv: the file is a ZIP archive, not CSV",)),  # was: a NUL byte at byte 5
        Case("csv-named-parquet", ingest(csv_named_parquet),  # was polars': must end with PAR1
             (r"shows\.parquet: not a Parquet file \(it starts like CSV text\)",)),
        Case("two-files-one-table", ingest(two), (r"table 'shows' is in 2 files", "keep one")),
        Case("events-missing", ingest(contract_dir(root, "events-missing", events_csv=None)),
             (r"required table 'events' not found",)),
        Case("no-such-directory", ingest(root / "no-such-dir"), ("not a directory",)),
        Case("dataset-is-a-file", ingest(root / "elsewhere" / "events.csv"), ("not a directory",)),
    ]  # fmt: skip


JUNK = bytes((i * 37 + 11) % 256 for i in range(4096))  # 4 KiB of binary junk, NULs included
# junk without NUL bytes or line ends, the first of them valid UTF-8: a 3 KiB "column name"
JUNK_HEADER = b"show_id," + bytes(b for b in JUNK if b not in b"\0\r\n,")[:3000] + b"\n1,A\n"
MAC_SHOWS = "show_id,title\r1,Caf\u00e9 Society\r2,Beta\r3,Na\u00efve\r".encode("mac-roman")
MULTILINE = 'show_id,title\n1,"A long\ntitle"\n2,Beta,extra\n3,Gamma\n'
# name, files of the contract dataset (see `contract_dir`), extra arguments, expect
TEXT_SPECS: list[tuple[str, dict[str, str | bytes | None], tuple[str, ...], tuple[str, ...]]] = [
    ("empty-events", {"events_csv": ""}, (), (r"events\.csv: the file is empty",)),
    ("blank-events", {"events_csv": " \n\n \n"}, (), (r"events\.csv: the file is empty",)),
    ("header-only", {"events_csv": EVENTS.splitlines()[0] + "\n"}, (),
     (r"events\.csv: the file has a header but no rows",)),
    ("ragged-too-many", {"events_csv": EVENTS.replace("u2,2,1704139200,0.5", "u2,2,1,0.5,x")}, (),
     (r"events\.csv: rows with the wrong number of fields \(expected 4",
      r"line 3 has 5 \(too many\)")),
    ("ragged-too-few", {"events_csv": EVENTS.replace("u3,3,2024-01-04T10:00:00Z,2", "u3,3")}, (),
     (r"events\.csv: rows with the wrong number of fields", r"line 5 has 2 \(too few\)")),
    ("ragged-after-multiline-field", {"shows_csv": MULTILINE}, (),
     (r"shows\.csv: rows with the wrong number", r"line 4 has 3 \(too many\)")),
    ("binary-junk", {"events_csv": JUNK}, (), (r"events\.csv: a NUL byte at byte \d+",)),
    ("binary-junk-header", {"shows_csv": JUNK_HEADER}, (),
     (r"shows\.csv, column '.{1,60}': bytes that are not UTF-8 at byte \d+ \(line 1\)",
      "--encoding")),
    ("long-header-name", {"events_csv": "x" * 5000 + "\nu1\n"}, (),
     (r"column 'user_id': required column missing \(found: x{50}", "…")),
    ("mac-roman-cr-without-encoding",
     {"shows_csv": MAC_SHOWS, "events_csv": EVENTS.replace("\n", "\r")}, (),
     (r"shows\.csv, column 'title': bytes that are not UTF-8 at byte \d+ \(line 2\)",
      r"rows 1\b", "--encoding")),
    ("cp1252-undefined-byte", {"shows_csv": SHOWS.encode().replace(b"Beta", b"B\x81ta")},
     ("--encoding", "cp1252"),
     (r"shows\.csv, column 'title': bytes that are not cp1252", r"\(line 3\)")),
    ("unknown-encoding", {}, ("--encoding", "ebcdic"), (r"unknown encoding 'ebcdic'", "mac-roman")),
    ("utf16", {"events_csv": EVENTS.encode("utf-16")}, (), (r"events\.csv: the file is UTF-16",)),
    ("nul-byte", {"shows_csv": SHOWS.replace("Beta", "Be\0ta")}, (),
     (r"shows\.csv: a NUL byte at byte \d+ \(line 3\)",)),
    ("duplicate-columns", {"shows_csv": SHOWS.replace("title,genres", "title,show_id")}, (),
     (r"shows\.csv, column 'show_id': duplicated column name \(columns 1 and 3",)),
    ("duplicate-columns-after-trim", {"shows_csv": SHOWS.replace("title,genres", "title, title ")},
     (), (r"column 'title': duplicated column name \(columns 2 and 3",)),
    # the weights were read under no name and every event weighed 1
    ("unnamed-column-with-values", {"events_csv": EVENTS.replace(",weight\n", ",\n")}, (),
     (r"events\.csv: column 4 of the header has no name but holds values; name it",
      r"rows 1, 2, 3, 4\b", "'0.5'")),
    ("wrong-delimiter", {"events_csv": EVENTS.replace(",", ";")}, (),
     (r"column 'user_id': required column missing", r"looks separated by ';'")),
    ("huge-unknown-id", {"events_csv": EVENTS.replace("u2,2,", "u2," + "9" * 200_000 + ",")}, (),
     (r"column 'show_id': events for shows that are not in the shows table", r"rows 2\b",
      r"values '9{20}")),
    ("unknown-show", {"events_csv": EVENTS.replace("u1,2,", "u1,7,")}, (),
     (r"events\.csv, column 'show_id': events for shows that are not", r"rows 3\b")),
    ("duplicate-show-id", {"shows_csv": SHOWS.replace("3,Gamma", "1,Gamma")}, (),
     (r"shows\.csv, column 'show_id': duplicated show_id", r"rows 1, 3\b")),
    ("empty-user-id", {"events_csv": EVENTS.replace("u3,", ",")}, (),
     (r"events\.csv, column 'user_id': empty id", r"rows 4\b")),
    ("missing-required-column", {"shows_csv": "show_id,name\n1,A\n"}, (),
     (r"shows\.csv, column 'title': required column missing \(found: show_id, name\)",)),
    # a title of invisible characters only (zero-width space; BOM, word joiner, no-break
    # space) was kept, where a blank one is refused
    ("title-invisible",
     {"shows_csv": SHOWS.replace("Beta", "\u200b").replace("Gamma", "\ufeff\u2060\u00a0")}, (),
     (r"shows\.csv, column 'title': empty title \(blank, or only invisible characters",
      r"rows 2, 3\b", r"values '\\u200b', '\\ufeff\\u2060\\xa0'")),
    ("bad-premiered", {"shows_csv": SHOWS.replace("2021-03-01", "spring")}, (),
     (r"column 'premiered': unparsable date", r"rows 2\b")),
    ("premiered-year-typo", {"shows_csv": SHOWS.replace("2021-03-01", "0221-03-01")}, (),
     (r"column 'premiered': premiere outside the plausible years 1850-2200", r"rows 2\b",
      "0221-03-01")),
    ("credits-unknown-show", {"credits_csv": "show_id,person_id,name\n1,p1,Ann\n8,p2,Bo\n"}, (),
     (r"credits\.csv, column 'show_id': credits for shows that are not", r"rows 2\b")),
    ("users-duplicated", {"users_csv": "user_id,plan\nu1,a\nu1,b\n"}, (),
     (r"users\.csv, column 'user_id': duplicated user_id", r"rows 1, 2\b")),
]  # fmt: skip


def _text(root: Path) -> list[Case]:
    return [
        Case(name, ingest(contract_dir(root, name, **files), *extra), expect)
        for name, files, extra, expect in TEXT_SPECS
    ]


def _movielens(root: Path, name: str, data: str | None) -> Path:
    """A two-film MovieLens directory with `data` as u.data (None: u.data is a FIFO)."""
    directory = root / name
    write(directory / "u.genre", "unknown|0\nDrama|1\n")
    write(directory / "u.item", "1|A (1995)|01-Jan-1995|||0|1\n2|B (1996)|01-Jan-1996|||0|1\n")
    if data is None:
        os.mkfifo(directory / "u.data")
    else:
        write(directory / "u.data", data)
    return directory


def _adapters(root: Path) -> list[Case]:
    far = _movielens(root, "movielens-far-epoch", "1\t1\t4\t881250949\n2\t2\t3\t881250949000000\n")
    minus_one = _movielens(root, "movielens-epoch-minus-one", "1\t1\t4\t881250949\n2\t2\t3\t-1\n")
    ragged = _movielens(root, "movielens-ragged", "1\t1\t4\t88125094\n2\t2\t3\n3\t1\t5\t8812509\n")
    fifo = _movielens(root, "movielens-fifo", None)
    anime = root / "anime-dir"
    write(anime / "anime_info.dat", "anime_ids\tname\tgenre\ttype\tepisodes\trating\tmembers\n")
    (anime / "anime_history.dat").mkdir(parents=True)
    stream = root / "streaming-ragged"
    write(stream / "hulu_titles.csv", "show_id,type,title\ns1,Movie,A\ns2,Movie,B,extra\n")
    tvmaze = root / "tvmaze-bad"
    write(tvmaze / "tvmaze_shows.json", b'[{"id": 1, "name": "Caf\x81"}]')
    object_id = root / "tvmaze-object-id"  # it became show "{'a': 1}" titled "['x']"
    write(
        object_id / "tvmaze_shows.json", '[{"id": 1, "name": "A"}, {"id": {"a": 1}, "name": ["x"]}]'
    )
    invisible = root / "tvmaze-name-invisible"  # show "\u200b" was kept
    write(invisible / "tvmaze_shows.json", '[{"id": 1, "name": "A"}, {"id": 2, "name": "\\u200b"}]')
    runtime = root / "tvmaze-runtime-text"  # it was polars' text, the field unnamed
    write(runtime / "tvmaze_shows.json", '[{"id": 1, "name": "A", "runtime": "long"}]')
    ml = ("--format", "movielens-100k")
    return [
        Case("movielens-far-epoch", ingest(far, *ml),
             (r"u\.data, column 'unix_seconds': epoch seconds out of range", r"rows 2\b")),
        Case("movielens-epoch-minus-one", ingest(minus_one, *ml),
             (r"u\.data, column 'unix_seconds': epoch seconds of 0 or less", r"rows 2\b", "'-1'")),
        Case("movielens-ragged", ingest(ragged, *ml),
             (r"u\.data: rows with the wrong number of fields", r"line 2 has 3 \(too few\)")),
        Case("movielens-fifo", ingest(fifo, *ml), (r"u\.data: is a FIFO",)),
        Case("anime-history-directory", ingest(anime, "--format", "anime"),
             (r"anime_history\.dat: is a directory",)),
        Case("streaming-ragged", ingest(stream, "--format", "streaming-catalogue"),
             (r"hulu_titles\.csv: rows with the wrong number", r"line 3 has 4 \(too many\)")),
        Case("tvmaze-cp1252", ingest(tvmaze, "--format", "tvmaze", "--encoding", "cp1252"),
             (r"tvmaze_shows\.json: bytes that are not cp1252", r"\(line 1\)")),
        Case("tvmaze-object-id", ingest(object_id, "--format", "tvmaze"),
             (r"tvmaze_shows\.json, column 'id': field 'id' is not a single value", r"rows 2\b")),
        Case("tvmaze-name-invisible", ingest(invisible, "--format", "tvmaze"),
             # named under TVmaze's own field, not the shows table's column 'title'
             (r"tvmaze_shows\.json, column 'name': missing or blank field", r"rows 2\b",
              r"values '\"\\u200b\"'")),
        Case("tvmaze-runtime-text", ingest(runtime, "--format", "tvmaze"),
             (r"column 'runtime': field 'runtime' is not a number", r"rows 1\b")),
    ]  # fmt: skip


# name, format, the ratings file's second data line, the file and column named (each was an
# event weight as it was, a blank one 1, or -1 refused as a weight of anime_history.dat)
RATING_SPECS: list[tuple[str, str, str, str, str]] = [
    ("movielens-rating-zero", "movielens-100k", "2\t2\t0\t881250949", "u.data", "weight"),
    ("movielens-rating-blank", "movielens-100k", "2\t2\t\t881250949", "u.data", "weight"),
    ("movielens-rating-ten", "movielens-100k", "2\t2\t10\t881250949", "u.data", "weight"),
    ("anime-rating-not-rated", "anime", "1\t2\t-1", "anime_ratings.dat", "Feedback"),
    ("anime-rating-percent", "anime", "1\t2\t85", "anime_ratings.dat", "Feedback"),
]


def _anime(root: Path, name: str, second_rating: str) -> Path:
    """A two-title anime directory whose ratings file's second line is `second_rating`."""
    directory = root / name
    write(directory / "anime_info.dat", "anime_ids\tname\tgenre\ttype\tepisodes\trating\t"
          "members\n1\tA\tDrama\tTV\t12\t8.1\t100\n2\tB\tDrama\tTV\t1\t7.0\t50\n")  # fmt: skip
    write(directory / "anime_history.dat", "User_ID\tAnime_ID\tFeedback\n1\t1\t1\n1\t2\t1\n")
    write(
        directory / "anime_ratings.dat", f"User_ID\tAnime_ID\tFeedback\n1\t1\t9\n{second_rating}\n"
    )
    return directory


def _ratings(root: Path) -> list[Case]:
    """Ratings off the export's own scale, named in the ratings file by their row."""
    cases = []
    for name, fmt, line, file, column in RATING_SPECS:
        if fmt == "anime":
            directory = _anime(root, name, line)
            scale = "1 to 10"
        else:
            directory = _movielens(root, name, f"1\t1\t4\t881250949\n{line}\n")
            scale = "1 to 5"
        expect = (rf"{re.escape(file)}, column '{column}': not a rating from {scale}", r"rows 2\b")
        cases.append(Case(name, ingest(directory, "--format", fmt), expect))
    return cases


def _runs(root: Path) -> list[Case]:
    """`tvrec run` cases: each must fail before training and before anything is replaced."""
    year = ["2024-01-01", "9999-06-01", "2024-01-02", "2024-01-03"]
    year_dir = contract_dir(root, "run-year-9999", events_csv=events_with("event_timestamp", year))
    inf_dir = contract_dir(
        root, "run-weight-inf", events_csv=events_with("weight", ["1", "1", "inf", "1"])
    )
    one_timed = contract_dir(root, "run-one-viewer", **one_viewer(timed=True))
    one_untimed = contract_dir(root, "run-one-viewer-untimed", **one_viewer(timed=False))
    catalogue = root / "run-catalogue-only"
    write(
        catalogue / "tvmaze_shows.json", '[{"id": 1, "name": "Alpha"}, {"id": 2, "name": "Beta"}]'
    )
    return [
        Case("run-catalogue-only", ("run", "--data", str(catalogue), "--format", "tvmaze"),
             (r"dataset 'run-catalogue-only' has no viewing events \(2 shows",
              r"publish the catalogue with `tvrec ingest`")),  # was a pandas traceback
        Case("run-as-of-before-first-event", ("run", "--as-of", "1990-01-01"),
             (r"--as-of 1990-01-01T00:00:00\+00:00 is not after the first event",
              r"all 4 events .* lie at or after it")),
        Case("run-year-9999", ("run", "--data", str(year_dir)),
             (r"events\.csv, column 'event_timestamp': timestamp outside", r"rows 2\b")),
        Case("run-weight-inf", ("run", "--data", str(inf_dir)),
             (r"column 'weight': weight is NaN or infinite", r"rows 3\b")),
        # the ensemble's window could hold nobody: said while reading, not after five
        # models trained (it was, 1.5 min in on the demo host)
        Case("run-one-viewer", ("run", "--data", str(one_timed)),
             (r"the ensemble's validation window \(the last 10% of the 30 watched pairs by time\)",
              r"no user with an earlier show", r"\(1 user in all"), default_models=True),
        Case("run-one-viewer-untimed", ("run", "--data", str(one_untimed)),
             (r"validation window \(a seeded 10% of the 30 watched pairs\)",
              r"\[models\] serve"), default_models=True),
        Case("run-unknown-encoding",
             ("run", "--data", str(contract_dir(root, "run-encoding")), "--encoding", "utf-32"),
             (r"unknown encoding 'utf-32'",)),
    ]  # fmt: skip


def _commands(root: Path) -> list[Case]:
    """Mistakes in the commands that work on a work directory: a path for a model name, a
    served model nothing trains, an output that cannot be a table file."""
    (root / "out-is-a-directory.csv").mkdir(parents=True)
    write(root / "a-file", "not a directory\n")
    serve_untrained = '[models]\ntrain = ["collaborative"]\nserve = "ease"\n'
    return [
        # `..` copied the whole work directory into a release of itself
        Case("recommend-model-path", ("recommend", "--model", ".."),
             (r"unknown model '\.\.'; available: collaborative",)),
        Case("recommend-model-lake", ("recommend", "--model", "../lake"),
             (r"unknown model '\.\./lake'",)),
        # refused before the lake and features were replaced and a model trained for nothing
        Case("run-serve-untrained",
             ("run", "--data", str(contract_dir(root, "run-serve-untrained"))),
             (r"models\.serve 'ease' is not in models\.train \['collaborative'\] and has no "
              r"trained copy", r"tvrec train --stage ease"),
             toml=serve_untrained, default_models=True),
        Case("export-out-is-a-directory",
             ("export", "user-topk", "--out", str(root / "out-is-a-directory.csv")),
             (r"out-is-a-directory\.csv: a directory has that name",)),
        Case("export-out-under-a-file",
             ("export", "user-topk", "--out", str(root / "a-file" / "x.csv")),
             (r"a-file is a file, not a directory",)),
        # both were written into feature_store.yaml, to fail at the first connection
        Case("redis-port-out-of-range", ("features", "config", "--init", "--redis", "cache:99999"),
             (r"--redis 'cache:99999': port 99999 is not 1-65535",)),
        Case("redis-port-not-a-number", ("features", "config", "--init", "--redis", "cache:six"),
             (r"--redis 'cache:six': port 'six' is not a number",)),
        # Feast splits a node at every ':' ("[::1]:6379" became host "[", port "") and its
        # Redis store reads the port (a bare host was a KeyError at the first connection)
        Case("redis-ipv6-bracketed", ("features", "config", "--init", "--redis", "[::1]:6379"),
             (r"--redis '\[::1\]:6379': an IPv6 address, which Feast's Redis connection "
              r"string cannot carry", r"a host name that resolves to it .* as HOST:PORT")),
        Case("redis-ipv6-ambiguous",
             ("features", "config", "--init", "--redis", "cache:6379,::1:6379,db=1"),
             (r"\(node '::1:6379'\): an IPv6 address", "HOST:PORT")),
        Case("redis-no-port", ("features", "config", "--init", "--redis", "cache,db=1"),
             (r"--redis 'cache,db=1' \(node 'cache'\): give the port too, as cache:PORT",
              r"\(Redis's own is 6379\)")),
        # read and never used: the popularity windows are Feast's views_7d, 30d and 365d
        Case("toml-windows-days", ingest(contract_dir(root, "toml-windows-days")),
             (r"tvrec\.toml\b.*: features\.windows_days: not a setting here; the settings are "
              r"text_batch_size",),
             toml="[features]\nwindows_days = [14]\n"),
        # overridden by the directory the file was read from, without a word
        Case("toml-workdir", ingest(contract_dir(root, "toml-workdir")),
             (r"tvrec\.toml: workdir: not a setting here", r"--workdir or \$TVREC_WORKDIR"),
             toml='workdir = "/srv/tvrec"\n'),
        Case("publish-list-and-rollback", ("publish", "--list", "--rollback", "1"),
             (r"--list and --rollback: give one of them",)),
        # the peers alone were scored and the run exited 0
        Case("evaluate-no-models",
             ("evaluate", "--data", str(contract_dir(root, "evaluate-no-models")), "--models", ""),
             (r"--models '': name at least one tvrec model \(collaborative",)),
        # every test event is a user's first (or an old show): a report of zeros, exit 0
        Case("evaluate-no-test-pairs",
             ("evaluate", "--data", str(contract_dir(root, "evaluate-no-test-pairs"))),
             (r"dataset 'evaluate-no-test-pairs': the evaluation's temporal split holds out "
              r"its events from 2024-01-04T05:57:00\+00:00 on", r"nothing to score",
              r"\(4 events, 3 users, 3 shows\)")),
    ]  # fmt: skip


def one_viewer(timed: bool) -> dict[str, str]:
    """shows.csv and events.csv of one viewer: 50 events on 30 shows (a day apart, or all
    at one instant, as an untimed export has them)."""
    shows = "".join(f"{i},Show {i},Drama,2020-01-01\n" for i in range(1, 31))
    days = [(i if timed else 0) for i in range(50)]
    events = "".join(f"u1,{i % 30 + 1},{1704067200 + 86_400 * d},1\n" for i, d in enumerate(days))
    return {
        "shows_csv": "show_id,title,genres,premiered\n" + shows,
        "events_csv": "user_id,show_id,event_timestamp,weight\n" + events,
    }


BUILDERS: tuple[Builder, ...] = (
    _timestamps, _parquet, _weights, _show_numbers, _file_types, _wrong_files, _text,
    _adapters, _adapter_numbers, _tvmaze_fields, _ratings, _runs, _commands,
)  # fmt: skip


def build_corpus(root: Path) -> list[Case]:
    """Write every case's data under `root` (which must not exist or be empty)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases = [case for build in BUILDERS for case in build(root)]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


def write_good_dataset(directory: Path) -> Path:
    """The good dataset a work directory holds before each case."""
    return contract_dir(directory.parent, directory.name)


# ---- proving nothing changed ----------------------------------------------------------------
def tree_digest(root: Path, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> sha256 of a file's bytes, `-> target` of a symlink, or `dir`, for
    everything under `root` (names in `ignore`, relative to root, are left out)."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel in ignore:
            continue
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/bad_inputs.py OUTDIR", file=sys.stderr)
        return 2
    cases = build_corpus(Path(argv[0]))
    for case in cases:
        print(
            json.dumps(
                {
                    "name": case.name,
                    "args": case.args,
                    "code": case.code,
                    "expect": case.expect,
                    "toml": case.toml,
                }
            )
        )
    print(f"{len(cases)} cases under {argv[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
