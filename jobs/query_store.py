"""The indexed copy `tvrec query` reads: one SQLite file per published version of a query table.

    tables/<name>/v<N>.parquet   the published version (the catalogue's contract)
    tables/<name>/v<N>.sqlite    its indexed copy: rows clustered by key, plus the lake's shows
    tables/<name>/current.json   {"table", "version", "copy"}: the version queries read

`Catalog.publish` writes the copy aside and renames it in before the catalogue transaction
that makes the version current; after every catalogue connection `sync_pointers` points
`current.json` at the copy of the current version (or removes it when that version has no
copy, so queries fall back to the catalogue and the Parquet file). Copies are immutable, so a
query that read the pointer once reads one version only; a killed publish leaves the previous
pointer, and rollback moves it like the catalogue.

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

COPY_FORMAT = 1  # bump when the schema or normalise_title changes: old copies are ignored
POINTER = "current.json"
SHOWS_FILE = "shows.parquet"
# table -> (key column, item column): the tables `tvrec query` answers from
QUERY_TABLES: dict[str, tuple[str, str]] = {
    "user_topk": ("user_id", "show_id"),
    "show_similar": ("show_id", "similar_show_id"),
}
REQUIRED = ("rank", "score", "model_version", "as_of")  # besides the key and item columns
MAX_OPEN = 8  # copies kept open per process

SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE labels (id INTEGER PRIMARY KEY, model_version TEXT, as_of TEXT);
CREATE TABLE rows (key TEXT, rank INTEGER, item TEXT, score REAL, label INTEGER,
                   PRIMARY KEY (key, rank)) WITHOUT ROWID;
CREATE TABLE shows (show_id TEXT, title TEXT, premiered TEXT, norm TEXT);
"""

LakeId = tuple[int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns) of shows.parquet


class TopRow(NamedTuple):
    rank: int
    item: str
    score: float
    model_version: str | None
    as_of: str


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


def lake_id(lake: Path) -> LakeId | None:
    """Identity of the lake's shows file (a new lake version is a new file), None if absent."""
    try:
        st = os.stat(lake / SHOWS_FILE)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Pointer:
    table: str
    version: int
    copy: Path


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
            "SELECT rank, item, score, label FROM rows WHERE key = ? ORDER BY rank", (key,)
        )
        return [TopRow(r, i, s, *self.labels[lab]) for r, i, s, lab in cur.fetchall()]

    def shows(self, lake: LakeId | None) -> ShowList | None:
        """The lake's shows as of publishing, if the lake is still that one."""
        if lake is None or self.meta.get("lake") != list(lake):
            return None
        cur = self.con.execute("SELECT show_id, title, premiered, norm FROM shows ORDER BY rowid")
        rows = cur.fetchall()
        if not rows:
            return ShowList([], [], [], [])
        ids, titles, premiered, norm = (list(c) for c in zip(*rows, strict=True))
        return ShowList(ids, titles, premiered, norm)


_OPEN: dict[Path, IndexedTable] = {}


def read_pointer(table_dir: Path) -> Pointer | None:
    try:
        raw = json.loads((table_dir / POINTER).read_text(encoding="utf-8"))
        return Pointer(str(raw["table"]), int(raw["version"]), table_dir / str(raw["copy"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def open_current(root: Path, name: str) -> IndexedTable | None:
    """The current version's copy of `name`, or None (no pointer, or an unreadable copy:
    the caller then reads the catalogue and the Parquet file)."""
    pointer = read_pointer(root / "tables" / name)
    if pointer is None or pointer.table != name:
        return None
    try:
        st = os.stat(pointer.copy)
    except OSError:
        return None
    table = _OPEN.get(pointer.copy)
    if table is None or table.file_id != (st.st_ino, st.st_mtime_ns):  # e.g. a new catalogue
        table = _open_copy(pointer, (st.st_ino, st.st_mtime_ns))
        if table is None:
            return None
        _OPEN.pop(pointer.copy, None)
        while len(_OPEN) >= MAX_OPEN:
            _OPEN.pop(next(iter(_OPEN))).con.close()
        _OPEN[pointer.copy] = table
    return table


def _open_copy(pointer: Pointer, file_id: tuple[int, int]) -> IndexedTable | None:
    """Open a copy read-only, without locks (it never changes), if it is the pointer's."""
    try:
        uri = pointer.copy.resolve(strict=True).as_uri() + "?mode=ro&immutable=1"
        con = sqlite3.connect(uri, uri=True, check_same_thread=False)
    except (OSError, sqlite3.Error):
        return None
    try:
        meta = {k: json.loads(v) for k, v in con.execute("SELECT name, value FROM meta")}
        labels = {i: (m, a) for i, m, a in con.execute("SELECT * FROM labels")}
    except (sqlite3.Error, ValueError):
        con.close()
        return None
    expected = (COPY_FORMAT, pointer.table, pointer.version)
    if (meta.get("format"), meta.get("table_name"), meta.get("version")) != expected:
        con.close()
        return None
    return IndexedTable(pointer.table, pointer.version, pointer.copy, con, meta, labels, file_id)


# ----------------------------------------------------------------------------- pointers


def copy_path(root: Path, name: str, version: int) -> Path:
    return root / "tables" / name / f"v{version}.sqlite"


def sync_pointers(root: Path, current: dict[str, int]) -> None:
    """Point each query table's `current.json` at the copy of its current version, or remove
    it when that version has no copy. Callers hold a catalogue connection, which excludes
    any commit, so the pointers end up matching the catalogue's last commit."""
    for name in QUERY_TABLES:
        table_dir = root / "tables" / name
        version = current.get(name)
        pointer = read_pointer(table_dir)
        if version is not None and copy_path(root, name, version).exists():
            if pointer is None or pointer.version != version:
                _write_pointer(table_dir, name, version)
        elif pointer is not None:
            (table_dir / POINTER).unlink(missing_ok=True)


def _write_pointer(table_dir: Path, name: str, version: int) -> None:
    payload = {"table": name, "version": version, "copy": f"v{version}.sqlite"}
    tmp = table_dir / f".{POINTER}.{uuid.uuid4().hex[:6]}.tmp"
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    os.replace(tmp, table_dir / POINTER)


def sweep(table_dir: Path) -> None:
    """Remove copies and pointers half-written by killed publishes."""
    for pattern in (".v*.sqlite.tmp", f".{POINTER}.*.tmp"):
        for stray in table_dir.glob(pattern):
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


def build_copy(root: Path, spec: CopySpec, frame: pl.DataFrame) -> Path | None:
    """Write the indexed copy of one version aside, then rename it in; None when the frame
    is not queryable (queries then read the Parquet file and report what is missing)."""
    if not queryable(spec.table_name, frame.columns):
        return None
    final = copy_path(root, spec.table_name, spec.version)
    tmp = final.with_name(f".{final.stem}.{uuid.uuid4().hex[:6]}.sqlite.tmp")
    try:
        _write_copy(tmp, spec, frame, read_shows(root / "lake"))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def _write_copy(
    path: Path, spec: CopySpec, frame: pl.DataFrame, shows: tuple[LakeId, ShowList] | None
) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as con:
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        con.executescript(SCHEMA)
        con.execute("BEGIN")
        labels = _insert_rows(con, spec.table_name, frame)
        if shows is not None:
            _insert_shows(con, shows[1])
        meta = _meta(spec, frame, shows[0] if shows else None, labels)
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
    rows = (
        frame.select(key, "rank", item, "score", *stamps)
        .join(labels, on=stamps, how="left", nulls_equal=True)
        .select(key, pl.col("rank").cast(pl.Int64), item, "score", "label")
        .sort(key, "rank")
    )
    columns = (rows[c].to_list() for c in rows.columns)
    con.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?)", zip(*columns, strict=True))
    return labels.height


def _insert_shows(con: sqlite3.Connection, shows: ShowList) -> None:
    con.executemany(
        "INSERT INTO shows VALUES (?, ?, ?, ?)",
        zip(shows.ids, shows.titles, shows.premiered, shows.norm, strict=True),
    )


def _meta(
    spec: CopySpec, frame: pl.DataFrame, lake: LakeId | None, n_labels: int
) -> dict[str, Any]:
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
        "lake": list(lake) if lake else None,
    }


def _json_items(meta: dict[str, Any]) -> Iterator[tuple[str, str]]:
    return ((k, json.dumps(v, default=str)) for k, v in meta.items())


def read_shows(lake: Path) -> tuple[LakeId, ShowList] | None:
    """The lake's shows and the identity of the file they were read from (one open file,
    so the two always agree), or None when there is no shows table."""
    import io

    import polars as pl

    try:
        with open(lake / SHOWS_FILE, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        return None
    present = pl.read_parquet_schema(io.BytesIO(data))
    wanted = [c for c in ("show_id", "title", "premiered") if c in present]
    frame = pl.read_parquet(io.BytesIO(data), columns=wanted)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), show_list(frame)


def show_list(frame: pl.DataFrame) -> ShowList:
    premiered = frame["premiered"].to_list() if "premiered" in frame.columns else None
    return ShowList.build(frame["show_id"].to_list(), frame["title"].to_list(), premiered)


def versions_of(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    return {str(name): int(version) for name, version in rows}
