"""The indexed copy `tvrec query` reads: one SQLite file per version of a query table.

    tables/<name>/v<N>.parquet   the version (the catalogue's contract)
    tables/<name>/v<N>.sqlite    its indexed copy: rows clustered by key, plus the shows of
                                 the release it was built for (titles)

`Catalog.add_version` writes the copy aside and renames it in before any release names it;
the current release (`jobs/release.py`) says which version, and which copy, queries read.
Copies are immutable, so a query reads one version only.

Why SQLite: it is in the standard library (imports in a few ms, where DuckDB, pyarrow and
polars each take 100 ms or more), a WITHOUT ROWID table keyed (key, rank) answers one user in
one B-tree range read, and a file opened `immutable=1` needs no lock, so readers never wait
for, or block, a publishing job. This module imports only the standard library; polars is
imported by the functions that build a copy (publish time).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

COPY_FORMAT = 3  # bump when the schema or normalise_title changes: old copies are ignored
SHOWS_FILE = "shows.parquet"
# table -> (key column, item column): the tables `tvrec query` answers from
QUERY_TABLES: dict[str, tuple[str, str]] = {
    "user_topk": ("user_id", "show_id"),
    "show_similar": ("show_id", "similar_show_id"),
}
REQUIRED = ("rank", "score", "model_version", "as_of")  # besides the key and item columns
# a re-ranking model's user table also says how sure it is and which member led (else NULL)
OPTIONAL = ("confidence", "because")
MAX_OPEN = 8  # copies kept open per process

SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE labels (id INTEGER PRIMARY KEY, model_version TEXT, as_of TEXT);
CREATE TABLE rows (key TEXT, rank INTEGER, item TEXT, score REAL, label INTEGER,
                   confidence REAL, because TEXT, PRIMARY KEY (key, rank)) WITHOUT ROWID;
CREATE TABLE shows (show_id TEXT, title TEXT, premiered TEXT, norm TEXT);
"""


class TopRow(NamedTuple):
    rank: int
    item: str
    score: float
    model_version: str | None
    as_of: str
    confidence: float | None = None  # a re-ranking model's (the ensemble's); else None
    because: str | None = None


# ----------------------------------------------------------------------------- titles


def normalise_title(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form: "Grey's  Anatomy!" -> "greys anatomy"."""
    folded = unicodedata.normalize("NFKD", text).casefold()
    kept = []
    for ch in folded:
        if unicodedata.combining(ch) or ch in "'’`":
            continue
        kept.append(ch if ch.isalnum() else " ")
    return " ".join("".join(kept).split())


@dataclass(frozen=True)
class ShowList:
    """The lake's shows in lake order, with each title's normalised form."""

    ids: list[str]
    titles: list[str | None]
    premiered: list[str | None]  # str() of the premiere date, None when unknown
    norm: list[str]

    @cached_property
    def position(self) -> dict[str, int]:
        return {s: i for i, s in reversed(list(enumerate(self.ids)))}

    @cached_property
    def rows_of_norm(self) -> dict[str, list[int]]:
        """Normalised title -> its rows, in lake order."""
        rows: dict[str, list[int]] = {}
        for i, n in enumerate(self.norm):
            rows.setdefault(n, []).append(i)
        return rows

    def title(self, show_id: str) -> str | None:
        row = self.position.get(show_id)
        return None if row is None else self.titles[row]

    @cached_property
    def char_counts(self) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
        """(alphabet, counts (n, a), lengths (n,)) of the distinct normalised titles, in
        `rows_of_norm` order: difflib's quick_ratio for all of them at once."""
        import numpy as np

        norms = list(self.rows_of_norm)
        alphabet = {c: i for i, c in enumerate(sorted({c for n in norms for c in n}))}
        counts = np.zeros((len(norms), len(alphabet)), dtype=np.int32)  # (n, a)
        for row, norm in enumerate(norms):
            for c in norm:
                counts[row, alphabet[c]] += 1
        return alphabet, counts, np.array([len(n) for n in norms], dtype=np.int64)

    def close_candidates(self, query: str, cutoff: float) -> list[str]:
        """The distinct normalised titles whose difflib quick_ratio with `query` (an upper
        bound of its ratio, computed the same way) reaches `cutoff`: the only ones
        `difflib.get_close_matches` can return, so passing just these changes no result."""
        import numpy as np

        alphabet, counts, lengths = self.char_counts
        wanted = np.zeros(len(alphabet), dtype=np.int32)  # (a,)
        for c in query:
            if c in alphabet:
                wanted[alphabet[c]] += 1
        matches = np.minimum(counts, wanted).sum(axis=1)  # (n,) shared characters
        bound = 2.0 * matches / (lengths + len(query))
        norms = list(self.rows_of_norm)
        return [norms[i] for i in np.flatnonzero(bound >= cutoff)]

    @classmethod
    def build(
        cls, ids: list[str], titles: list[str | None], premiered: list[Any] | None
    ) -> ShowList:
        dates = [None if d is None else str(d) for d in premiered or [None] * len(ids)]
        return cls(ids, titles, dates, [normalise_title(t or "") for t in titles])


# ----------------------------------------------------------------------------- reading


@dataclass
class IndexedTable:
    """One published version of a query table, read through its immutable SQLite copy."""

    table_name: str
    version: int
    path: Path
    con: sqlite3.Connection
    meta: dict[str, Any]
    labels: dict[int, tuple[str | None, str]]
    file_id: tuple[int, int]  # (st_ino, st_mtime_ns) of the copy it was opened from

    @property
    def model_version(self) -> str | None:
        return self.meta["model_version"]

    @property
    def as_of(self) -> str | None:
        return self.meta["as_of"]

    @property
    def max_rank(self) -> int | None:
        return self.meta["max_rank"]

    @property
    def first_key(self) -> str | None:
        return self.meta["first_key"]

    def first_model_versions(self) -> set[str | None]:
        """The first row's model_version (none when the table is empty)."""
        return {self.meta["first_model_version"]} if self.meta["n_rows"] else set()

    def rows(self, key: str) -> list[TopRow]:
        """The key's rows, best first (one range read of the clustered primary key)."""
        cur = self.con.execute(
            "SELECT rank, item, score, label, confidence, because FROM rows WHERE key = ? "
            "ORDER BY rank",
            (key,),
        )
        return [TopRow(r, i, s, *self.labels[lab], c, b) for r, i, s, lab, c, b in cur.fetchall()]

    def shows(self) -> ShowList | None:
        """The shows of the release the copy was built for, None if it has none."""
        if not self.meta.get("has_shows"):
            return None
        cur = self.con.execute("SELECT show_id, title, premiered, norm FROM shows ORDER BY rowid")
        rows = cur.fetchall()
        if not rows:
            return ShowList([], [], [], [])
        ids, titles, premiered, norm = (list(c) for c in zip(*rows, strict=True))
        return ShowList(ids, titles, premiered, norm)


_OPEN: dict[Path, IndexedTable] = {}


def open_copy(path: Path, name: str, version: int) -> IndexedTable | None:
    """Version `version` of `name` through its copy at `path`, or None (no readable copy:
    the caller reads the Parquet file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    table = _OPEN.get(path)
    if table is None or table.file_id != (st.st_ino, st.st_mtime_ns):
        table = _open_copy(path, name, version, (st.st_ino, st.st_mtime_ns))
        if table is None:
            return None
        _OPEN.pop(path, None)
        while len(_OPEN) >= MAX_OPEN:
            _OPEN.pop(next(iter(_OPEN))).con.close()
        _OPEN[path] = table
    return table


def _open_copy(
    path: Path, name: str, version: int, file_id: tuple[int, int]
) -> IndexedTable | None:
    """Open a copy read-only, without locks (it never changes), if it is that version's."""
    try:
        uri = path.resolve(strict=True).as_uri() + "?mode=ro&immutable=1"
        con = sqlite3.connect(uri, uri=True, check_same_thread=False)
    except (OSError, sqlite3.Error):
        return None
    try:
        meta = {k: json.loads(v) for k, v in con.execute("SELECT name, value FROM meta")}
        labels = {i: (m, a) for i, m, a in con.execute("SELECT * FROM labels")}
    except (sqlite3.Error, ValueError):
        con.close()
        return None
    if (meta.get("format"), meta.get("table_name"), meta.get("version")) != (
        COPY_FORMAT,
        name,
        version,
    ):
        con.close()
        return None
    return IndexedTable(name, version, path, con, meta, labels, file_id)


def copy_path(root: Path, name: str, version: int) -> Path:
    return root / "tables" / name / f"v{version}.sqlite"


def sweep(table_dir: Path) -> None:
    """Remove copies half-written by killed publishes."""
    for stray in table_dir.glob(".v*.sqlite.tmp"):
        stray.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- building


@dataclass(frozen=True)
class CopySpec:
    """What a copy records about its version besides the rows."""

    table_name: str
    version: int
    model_version: str | None
    as_of: str | None


def queryable(name: str, columns: Iterable[str]) -> bool:
    """Whether `name` is a query table whose frame has every column queries read."""
    if name not in QUERY_TABLES:
        return False
    return set(QUERY_TABLES[name]).union(REQUIRED) <= set(columns)


def build_copy(
    root: Path, spec: CopySpec, frame: pl.DataFrame, shows: ShowList | None = None
) -> Path | None:
    """Write the indexed copy of one version aside, then rename it in; None when the frame
    is not queryable (queries then read the Parquet file and report what is missing)."""
    if not queryable(spec.table_name, frame.columns):
        return None
    final = copy_path(root, spec.table_name, spec.version)
    tmp = final.with_name(f".{final.stem}.{uuid.uuid4().hex[:6]}.sqlite.tmp")
    try:
        _write_copy(tmp, spec, frame, shows)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def _write_copy(path: Path, spec: CopySpec, frame: pl.DataFrame, shows: ShowList | None) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as con:
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        con.executescript(SCHEMA)
        con.execute("BEGIN")
        labels = _insert_rows(con, spec.table_name, frame)
        if shows is not None:
            _insert_shows(con, shows)
        meta = _meta(spec, frame, shows is not None, labels)
        con.executemany("INSERT INTO meta VALUES (?, ?)", _json_items(meta))
        con.execute("COMMIT")
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _insert_rows(con: sqlite3.Connection, name: str, frame: pl.DataFrame) -> int:
    """Rows sorted by (key, rank), (model_version, as_of) pairs stored once; returns how many."""
    import polars as pl

    key, item = QUERY_TABLES[name]
    stamps = ["model_version", "as_of"]
    labels = frame.select(stamps).unique(maintain_order=True).with_row_index("label")
    con.executemany(
        "INSERT INTO labels VALUES (?, ?, ?)",
        ((i, m, str(a)) for i, m, a in labels.iter_rows()),  # as_of as queries print it
    )
    missing = {c: None for c in OPTIONAL if c not in frame.columns}
    rows = (
        frame.with_columns(pl.lit(None).alias(c) for c in missing)
        .select(key, "rank", item, "score", *stamps, *OPTIONAL)
        .join(labels, on=stamps, how="left", nulls_equal=True)
        .select(key, pl.col("rank").cast(pl.Int64), item, "score", "label", *OPTIONAL)
        .sort(key, "rank")
    )
    columns = (rows[c].to_list() for c in rows.columns)
    con.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?)", zip(*columns, strict=True))
    return labels.height


def _insert_shows(con: sqlite3.Connection, shows: ShowList) -> None:
    con.executemany(
        "INSERT INTO shows VALUES (?, ?, ?, ?)",
        zip(shows.ids, shows.titles, shows.premiered, shows.norm, strict=True),
    )


def _meta(spec: CopySpec, frame: pl.DataFrame, has_shows: bool, n_labels: int) -> dict[str, Any]:
    key = QUERY_TABLES[spec.table_name][0]
    first = frame.row(0, named=True) if frame.height else {}
    return {
        "format": COPY_FORMAT,
        "table_name": spec.table_name,
        "version": spec.version,
        "model_version": spec.model_version,
        "as_of": spec.as_of,
        "n_rows": frame.height,
        "n_labels": n_labels,
        "max_rank": frame["rank"].max() if frame.height else None,
        "first_key": first.get(key),
        "first_model_version": first.get("model_version"),
        "has_shows": has_shows,
    }


def _json_items(meta: dict[str, Any]) -> Iterator[tuple[str, str]]:
    return ((k, json.dumps(v, default=str)) for k, v in meta.items())


def read_shows(path: Path) -> ShowList | None:
    """The shows in a shows Parquet file (a lake's or a release's), None when it is absent."""
    import polars as pl

    if not path.exists():
        return None
    present = pl.read_parquet_schema(path)
    wanted = [c for c in ("show_id", "title", "premiered") if c in present]
    return show_list(pl.read_parquet(path, columns=wanted))


def show_list(frame: pl.DataFrame) -> ShowList:
    premiered = frame["premiered"].to_list() if "premiered" in frame.columns else None
    return ShowList.build(frame["show_id"].to_list(), frame["title"].to_list(), premiered)
