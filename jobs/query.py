"""`tvrec query`: answer one user, show or text query from the current release.

Every answer comes from one release (`jobs/release.py`: the `release` link, resolved once per
query): its `user_topk` / `show_similar` table versions and, when a show has no precomputed
neighbours, its FAISS index; never from the training stack. A table version is read through
its indexed copy (`tables/<name>/v<N>.sqlite`; `jobs/query_store.py`): one B-tree lookup per
query, with the release's show titles. A version without a copy is read from its Parquet file.

`tvrec query --user` / `--show` import the standard library, typer and this package's light
modules only: no polars, DuckDB, numpy, faiss, torch or Feast, unless an answer needs them
(the Parquet fallback, the index, an unknown user's events). `--text` loads the model's text
tower through `encode_text_query`.

Before answering, the tables and the index must come from the release's model
(`release/model/manifest.json`); anything else would serve stale neighbours silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from tvrec.jobs.query_store import (
    OPTIONAL,
    IndexedTable,
    ShowList,
    TopRow,
    normalise_title,
    open_copy,
    read_shows,
)
from tvrec.jobs.release import NO_RELEASE_HINT, Release, current_release
from tvrec.pipelines.errors import ConfigError, DataError, EngineError
from tvrec.pipelines.workdir import WORKDIR_ENV, Workdir, workdir_root

if TYPE_CHECKING:
    import click
    import numpy as np
    from rich.console import Console

    from tvrec.index import ShowIndex

__all__ = ["answer_query", "normalise_title", "query_command", "run_query"]

USER_TABLE = "user_topk"
SIMILAR_TABLE = "show_similar"
MODEL_MANIFEST = "manifest.json"
INDEX_DIR = "index"
TEXT_TOWER_DIR = "text_tower"
RERUN_HINT = "rerun `tvrec run` (or `tvrec recommend`)"
TABLE_COLUMNS = {
    USER_TABLE: ("user_id", "rank", "show_id", "score", "model_version", "as_of"),
    SIMILAR_TABLE: ("show_id", "rank", "similar_show_id", "score", "model_version", "as_of"),
}
FUZZY_CUTOFF = 0.75  # difflib ratio a misspelt title needs to be taken as the answer
SUGGEST_CUTOFF = 0.4  # ... and to be offered as a suggestion when nothing matches
MAX_SUGGESTIONS = 5
MAX_CANDIDATES = 10  # ambiguous matches listed in the error
DEFAULT_K = 10
CONFIG_FILE = "tvrec.toml"
MAX_CACHED_RELEASES = 4

# ----------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answer:
    """One query's results, ready to print as a table or JSON."""

    query: dict[str, Any]
    results: list[dict[str, Any]]  # rank, show_id, title, score; best first
    model_version: str
    as_of: str | None
    heading: str
    confidence_means: str | None = None  # what `confidence` is the chance of (the model says)

    def to_json(self) -> dict[str, Any]:
        means = {"confidence_means": self.confidence_means} if self.confidence_means else {}
        return {
            "query": self.query,
            "results": self.results,
            "model_version": self.model_version,
            "as_of": self.as_of,
        } | means


@dataclass(frozen=True)
class ShowMatch:
    """The show a `--show` argument resolved to, and how (id, title, substring, fuzzy)."""

    show_id: str
    title: str | None
    how: str


@dataclass(frozen=True)
class Context:
    """What every query reads first: the work directory, the current release (resolved
    once) and its model's manifest."""

    wd: Workdir
    release: Release
    model: dict[str, Any]
    strict_k: bool = True  # an explicit -k above what exists is an error; the default caps

    @property
    def model_version(self) -> str:
        return str(self.model["model_version"])


def open_context(workdir: Path | str) -> Context:
    wd = Workdir(workdir)
    release = current_release(wd.root)
    if release is None:
        raise ConfigError(f"nothing is published in {wd.root} yet: {NO_RELEASE_HINT}")
    return Context(wd=wd, release=release, model=read_model_manifest(release))


def read_model_manifest(release: Release) -> dict[str, Any]:
    """The release's model manifest; its model_version is what every answer must match."""
    path = release.model_dir / MODEL_MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"release {release.release_id} has no model ({path}); {RERUN_HINT}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the model manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or not manifest.get("model_version"):
        raise ConfigError(f"{path} has no model_version; {RERUN_HINT}")
    return manifest


# ----------------------------------------------------------------------------- tables


class TopTable(Protocol):
    """One published version of `user_topk` or `show_similar`, as queries read it."""

    @property
    def table_name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def path(self) -> Path: ...
    @property
    def model_version(self) -> str | None: ...  # the catalogue entry's
    @property
    def as_of(self) -> str | None: ...
    @property
    def max_rank(self) -> int | None: ...
    @property
    def first_key(self) -> str | None: ...

    def first_model_versions(self) -> set[str | None]: ...
    def rows(self, key: str) -> list[TopRow]: ...


@dataclass(frozen=True)
class TableEntry:
    """What a release says of one table version."""

    table_name: str
    version: int
    path: Path
    model_version: str | None
    as_of: str | None


@dataclass(frozen=True)
class ParquetTable:
    """A version without an indexed copy, read from its Parquet file (polars, predicate
    pushdown)."""

    entry: TableEntry

    @property
    def table_name(self) -> str:
        return self.entry.table_name

    @property
    def version(self) -> int:
        return self.entry.version

    @property
    def path(self) -> Path:
        return self.entry.path

    @property
    def model_version(self) -> str | None:
        return self.entry.model_version

    @property
    def as_of(self) -> str | None:
        return self.entry.as_of

    @property
    def max_rank(self) -> int | None:
        import polars as pl

        top = pl.scan_parquet(self.path).select(pl.col("rank").max()).collect().item()
        return int(top) if top is not None else None

    @property
    def first_key(self) -> str | None:
        return self._head(TABLE_COLUMNS[self.table_name][0])

    def first_model_versions(self) -> set[str | None]:
        import polars as pl

        head = pl.scan_parquet(self.path).select("model_version").head(1).collect()
        return set(head["model_version"].to_list())

    def _head(self, column: str) -> str | None:
        import polars as pl

        values = pl.scan_parquet(self.path).select(column).head(1).collect()[column]
        return values[0] if len(values) else None

    def rows(self, key: str) -> list[TopRow]:
        """Rows of one user / show, best first; the filter is pushed into the Parquet scan."""
        import polars as pl

        key_column, _, item_column = TABLE_COLUMNS[self.table_name][:3]
        scan = pl.scan_parquet(self.path)
        try:
            self._check_columns(list(scan.collect_schema()))
            found = scan.filter(pl.col(key_column) == key).sort("rank").collect()
        except (FileNotFoundError, pl.exceptions.ComputeError) as exc:
            raise ConfigError(
                f"cannot read {self.table_name} v{self.version} at {self.path}: {exc}"
            ) from exc
        columns = ("rank", item_column, "score", "model_version", "as_of")
        extra = [c for c in OPTIONAL if c in found.columns]
        return [
            TopRow(r, i, s, m, str(a), *rest)
            for r, i, s, m, a, *rest in found.select(*columns, *extra).iter_rows()
        ]

    def _check_columns(self, present: list[str]) -> None:
        missing = [c for c in TABLE_COLUMNS[self.table_name] if c not in present]
        if missing:
            raise ConfigError(
                f"{self.path} ({self.table_name} v{self.version}) lacks column(s) "
                f"{', '.join(missing)}; {RERUN_HINT}"
            )


def current_table(ctx: Context, name: str) -> TopTable | None:
    """The release's version of `name`: its indexed copy, else its Parquet file."""
    ref = ctx.release.table(name)
    if ref is None:
        return None
    if ref.copy is not None:
        indexed = open_copy(ctx.wd.root / ref.copy, name, ref.version)
        if indexed is not None:
            return indexed
    path = ctx.wd.root / ref.parquet
    return ParquetTable(TableEntry(name, ref.version, path, ref.model_version, ctx.release.as_of))


def require_table(ctx: Context, name: str) -> TopTable:
    table = current_table(ctx, name)
    if table is None:
        raise ConfigError(f"no published {name!r} table yet: run `tvrec run` or `tvrec recommend`")
    return table


def check_table_model(table: TopTable, rows: list[TopRow], model_version: str) -> None:
    """The table (its catalogue entry and the rows read) must come from the current model."""
    found = {r.model_version for r in rows}
    if table.model_version is not None:
        found.add(table.model_version)
    if not found:  # no catalogue entry and no row for this key: look at any row
        found = table.first_model_versions()
    stale = sorted(str(v) for v in found if v != model_version)
    if stale:
        raise ConfigError(
            f"table {table.table_name!r} (v{table.version}) was built by model "
            f"{', '.join(map(repr, stale))} but the current model is {model_version!r}; "
            f"{RERUN_HINT} to republish the tables for the current model"
        )


def check_k(ctx: Context, k: int, available: int, what: str) -> int:
    """The k to answer with: an explicit -k must fit; the default is capped silently."""
    if k > available and not ctx.strict_k:
        return available
    if k > available:
        raise ConfigError(
            f"-k {k} asks for more than the {available} results available for {what}; "
            f"use -k {available} or less"
        )
    return k


def first_as_of(rows: list[TopRow], table: TopTable) -> str | None:
    return rows[0].as_of if rows else table.as_of


# ----------------------------------------------------------------------------- lake

_SHOWS: dict[Path, ShowList] = {}  # this process's shows, by the release they came from


def release_shows(ctx: Context, table: TopTable | None = None) -> ShowList:
    """The release's shows (titles): from the table's copy when it has them, else from the
    release's shows file (kept for the next query of this process)."""
    key = ctx.release.path
    shows = _SHOWS.get(key)
    if shows is not None:
        return shows
    if isinstance(table, IndexedTable):
        shows = table.shows()
    if shows is None:
        shows = read_shows(ctx.release.shows_file)
    if shows is None:
        raise ConfigError(f"release {ctx.release.release_id} has no shows; {RERUN_HINT}")
    while len(_SHOWS) >= MAX_CACHED_RELEASES:
        _SHOWS.pop(next(iter(_SHOWS)))
    _SHOWS[key] = shows
    return shows


def user_events(wd: Workdir, user: str) -> int:
    """How many lake events `user` has (0 when there is no events table)."""
    import polars as pl

    path = wd.lake / "events.parquet"
    if not path.exists():
        return 0
    scan = pl.scan_parquet(path).filter(pl.col("user_id") == user)
    return int(scan.select(pl.len()).collect().item())


def unwatched_aired_shows(wd: Workdir, user: str, as_of: str) -> int:
    """Shows of the lake premiered by `as_of` (or undated) that `user` had not watched
    before it: what the nightly job could recommend them (jobs/recommend.py excludes the
    rest)."""
    import polars as pl

    from tvrec.pipelines.contract import aired_by

    moment = datetime.fromisoformat(as_of)
    shows = pl.scan_parquet(wd.lake / "shows.parquet").filter(aired_by(moment.date()))
    watched = pl.scan_parquet(wd.lake / "events.parquet").filter(
        (pl.col("user_id") == user) & (pl.col("event_timestamp") < moment)
    )
    rest = shows.join(watched.select("show_id").unique(), on="show_id", how="anti")
    return int(rest.select(pl.len()).collect().item())


def results_frame(
    shows: ShowList, ranked: Sequence[tuple[str, float]], ranks: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """[{rank, show_id, title, score}] for (show_id, score) pairs, titles from the lake."""
    ranks = ranks or range(1, len(ranked) + 1)
    return [
        {"rank": int(r), "show_id": s, "title": shows.title(s), "score": round(float(v), 6)}
        for r, (s, v) in zip(ranks, ranked, strict=True)
    ]


def with_reasons(results: list[dict[str, Any]], rows: Sequence[TopRow]) -> list[dict[str, Any]]:
    """Each result with its row's confidence and leading member, where the model gave them."""
    if all(r.confidence is None for r in rows):
        return results
    for result, row in zip(results, rows, strict=True):
        conf = row.confidence
        result |= {"confidence": None if conf is None else round(conf, 4), "because": row.because}
    return results


# ----------------------------------------------------------------------------- --user


def user_query(ctx: Context, user: str, k: int) -> Answer:
    """The user's top-k from the current `user_topk` table."""
    table = require_table(ctx, USER_TABLE)
    rows = table.rows(user)
    check_table_model(table, rows, ctx.model_version)
    if not rows:
        raise ConfigError(unknown_user_message(ctx, table, user))
    k = check_k(ctx, k, len(rows), f"user {user!r}")
    top = rows[:k]
    return Answer(
        query={"user": user, "k": k},
        results=with_reasons(
            results_frame(
                release_shows(ctx, table), [(r.item, r.score) for r in top], [r.rank for r in top]
            ),
            top,
        ),
        model_version=ctx.model_version,
        as_of=first_as_of(rows, table),
        heading=f"top {k} for user {user}",
        confidence_means=confidence_means(ctx.model),  # None: a model without confidence
    )


def confidence_means(manifest: dict[str, Any]) -> str | None:
    """The model's own words for what its `confidence` is (older models have none)."""
    means = (manifest.get("metrics") or {}).get("confidence_means")
    return means if isinstance(means, str) and means else None


def unknown_user_message(ctx: Context, table: TopTable, user: str) -> str:
    """Why a user has no row: new since the as-of time, or no such id at all."""
    n_events = user_events(ctx.wd, user)
    if n_events and table.as_of and not unwatched_aired_shows(ctx.wd, user, table.as_of):
        return (
            f"no recommendations for user {user!r} in {USER_TABLE} v{table.version} (as of "
            f"{table.as_of}): they had watched every show aired by then; similar shows and "
            "text queries still answer (`tvrec query --show`, `--text`)"
        )
    if n_events:
        return (
            f"unknown user {user!r}: they have {n_events} event(s) in the lake but no "
            f"recommendations in {USER_TABLE} v{table.version} (as of {table.as_of}); "
            "probably new since then: rerun `tvrec recommend`"
        )
    example = table.first_key
    hint = f"user ids look like {example!r}" if example is not None else "the table is empty"
    return f"unknown user {user!r}: not in {USER_TABLE} nor in the lake's events ({hint})"


# ----------------------------------------------------------------------------- --show


def resolve_show(shows: ShowList, query: str) -> ShowMatch:
    """An exact show_id, else exact / substring / fuzzy title match; errors name candidates."""
    row = shows.position.get(query)
    if row is not None:
        return ShowMatch(query, shows.titles[row], "id")
    q = normalise_title(query)
    if not q:
        raise ConfigError("--show needs a show id or (part of) a title")
    matchers: tuple[tuple[str, Callable[[], list[int]]], ...] = (
        ("title", lambda: shows.rows_of_norm.get(q, [])),
        ("substring", lambda: [i for i, n in enumerate(shows.norm) if q in n]),
        ("fuzzy", lambda: fuzzy_hits(q, shows)),
    )
    for how, matcher in matchers:  # each only when the ones before found nothing
        hits = matcher()
        if len(hits) == 1:
            return ShowMatch(shows.ids[hits[0]], shows.titles[hits[0]], how)
        if hits:
            raise ConfigError(ambiguous_message(query, shows, hits))
    raise ConfigError(no_match_message(query, q, shows))


def close_titles(q: str, shows: ShowList, cutoff: float) -> list[str]:
    """`difflib.get_close_matches` over the distinct normalised titles, asked only about
    those that can reach `cutoff` (numpy bounds them all at once; same answer)."""
    candidates = shows.close_candidates(q, cutoff)
    return difflib.get_close_matches(q, candidates, n=MAX_SUGGESTIONS, cutoff=cutoff)


def fuzzy_hits(q: str, shows: ShowList) -> list[int]:
    """Rows whose normalised title is the closest to q (several when tied), if close enough."""
    rows_of = shows.rows_of_norm
    close = close_titles(q, shows, FUZZY_CUTOFF)
    if not close:
        return []
    # get_close_matches compares with the candidate as `a` and the query as `b`
    ratio = {c: difflib.SequenceMatcher(None, c, q).ratio() for c in close}
    best = max(ratio.values())
    return [i for c in close if ratio[c] == best for i in rows_of[c]]


def describe_show(shows: ShowList, row: int) -> str:
    """'s12  The Office (2005)' for candidate lists."""
    premiered = shows.premiered[row]
    year = f" ({premiered[:4]})" if premiered is not None else ""
    return f"{shows.ids[row]}  {shows.titles[row]}{year}"


def ambiguous_message(query: str, shows: ShowList, rows: list[int]) -> str:
    listed = "\n".join("  " + describe_show(shows, r) for r in rows[:MAX_CANDIDATES])
    more = f"\n  ... and {len(rows) - MAX_CANDIDATES} more" if len(rows) > MAX_CANDIDATES else ""
    return (
        f"{query!r} is ambiguous: it matches {len(rows)} shows equally well; "
        f"give one by its show_id:\n{listed}{more}"
    )


def no_match_message(query: str, q: str, shows: ShowList) -> str:
    rows_of = shows.rows_of_norm
    near = close_titles(q, shows, SUGGEST_CUTOFF)
    if not near:
        return f"no show matches {query!r}; give a show_id or (part of) its title"
    listed = "\n".join("  " + describe_show(shows, rows_of[n][0]) for n in near)
    return f"no show matches {query!r}; did you mean:\n{listed}"


def show_query(ctx: Context, show: str, k: int) -> Answer:
    """Shows similar to `show`: its `show_similar` rows, else the index's neighbours."""
    table = current_table(ctx, SIMILAR_TABLE)
    shows = release_shows(ctx, table)
    match = resolve_show(shows, show)
    query = {"show": show, "show_id": match.show_id, "title": match.title, "k": k}
    heading = f"shows like {match.title or match.show_id} ({match.show_id})"
    if table is None:  # nothing precomputed at all: the index answers
        return index_show_answer(ctx, shows, match.show_id, k, None, query, heading)
    rows = table.rows(match.show_id)
    check_table_model(table, rows, ctx.model_version)
    if not rows:  # e.g. a show added after the tables were built
        return index_show_answer(ctx, shows, match.show_id, k, table.max_rank, query, heading)
    k = check_k(ctx, k, len(rows), f"show {match.show_id!r}")
    top = rows[:k]
    return Answer(
        query={**query, "source": SIMILAR_TABLE},
        results=results_frame(shows, [(r.item, r.score) for r in top], [r.rank for r in top]),
        model_version=ctx.model_version,
        as_of=first_as_of(rows, table),
        heading=heading,
    )


def index_show_answer(
    ctx: Context,
    shows: ShowList,
    show_id: str,
    k: int,
    limit: int | None,
    query: dict[str, Any],
    heading: str,
) -> Answer:
    """Neighbours of the show's own index vector, itself excluded."""
    show_index = load_current_index(ctx)
    available = show_index.index.ntotal - 1
    if available < 1:  # a search for k = 0 is refused by the index
        raise ConfigError(
            f"no shows like {show_id!r}: the release's index holds no other show "
            f"({show_index.index.ntotal} in all)"
        )
    k = check_k(ctx, k, min(available, limit) if limit else available, f"show {show_id!r}")
    vector = own_vector(show_index, show_id)  # (dim,)
    hits = show_index.search_ids(vector[None, :], k, exclude_ids=[{show_id}])[0]
    return Answer(
        query={**query, "source": INDEX_DIR},
        results=results_frame(shows, hits),
        model_version=ctx.model_version,
        as_of=show_index.manifest.as_of,
        heading=heading + " (from the index)",
    )


def load_current_index(ctx: Context, similar: bool = False) -> ShowIndex:
    """The index (`similar`: the similar-shows one), refused unless it was built by the
    current model (faiss loads only here)."""
    from tvrec.index import IndexConfig, load_index

    # device="cpu": no hardware probe (which could import torch); one query needs no GPU
    return load_index(
        ctx.release.similar_index_dir if similar else ctx.release.index_dir,
        expect={"model_version": ctx.model_version},
        cfg=IndexConfig(device="cpu"),
    )


def own_vector(show_index: ShowIndex, show_id: str) -> np.ndarray:
    """The show's stored vector (dim,), reconstructed from the faiss index."""
    import faiss

    from tvrec.index.backends import faiss_index_type

    rows = show_index.rows([show_id])
    if not rows:
        raise ConfigError(
            f"show {show_id!r} is in the lake but not in the index "
            f"({show_index.index.ntotal} shows); {RERUN_HINT}"
        )
    cpu = show_index.index.to_cpu_faiss()
    if faiss_index_type(cpu) in ("ivf", "ivfpq"):  # IVF lists need a direct map to reconstruct
        faiss.extract_index_ivf(cpu).make_direct_map()
    return cpu.reconstruct(rows[0])


# ----------------------------------------------------------------------------- --text

TEXT_TOWER_MISSING = (
    "text queries need a model with a text tower, and the current model has none "
    "({path} does not exist); train the multimodal model with "
    "`tvrec train --stage multimodal`, then `tvrec run`"
)


def encode_text_query(model_dir: Path, text: str) -> np.ndarray:
    """HOOK: embed `text` with the current model's text tower, as a (dim,) float32 vector
    in the show index's space.

    The only place `tvrec query` may import heavy libraries (torch, sentence-transformers),
    and only when a text tower exists. The loader it expects is
    `tvrec.models.text_tower.encode_query(directory: Path, text: str) -> np.ndarray`.
    """
    tower = Path(model_dir) / TEXT_TOWER_DIR
    if not tower.is_dir():
        raise ConfigError(TEXT_TOWER_MISSING.format(path=tower))
    try:
        from tvrec.models.text_tower import encode_query  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ConfigError(
            f"{tower} exists but this tvrec cannot load text towers yet "
            f"(no tvrec.models.text_tower.encode_query): {exc}"
        ) from exc
    return encode_query(tower, text)


def text_query(ctx: Context, text: str, k: int) -> Answer:
    """Shows nearest to the text's embedding in the similar-shows index (the space of the
    model's text tower; a release from before it has one: the index)."""
    vector = encode_text_query(ctx.release.model_dir, text)  # (dim,) or (dim + prior,)
    similar = ctx.release.similar_index_dir.is_dir()
    show_index = load_current_index(ctx, similar)
    vector = vector[: show_index.index.dim] if similar else vector  # prior columns: zeros
    k = check_k(ctx, k, show_index.index.ntotal, "a text query")
    hits = show_index.search_ids(vector.reshape(1, -1), k)[0]
    return Answer(
        query={"text": text, "k": k, "source": INDEX_DIR},
        results=results_frame(release_shows(ctx), hits),
        model_version=ctx.model_version,
        as_of=show_index.manifest.as_of,
        heading=f"shows for {text!r}",
    )


# ----------------------------------------------------------------------------- --trending

FORECAST_TABLE = "show_forecast"
NO_FORECAST = (
    "the current release has no show forecast: forecasts come from the temporal model; add "
    '"temporal" to [models] train in tvrec.toml (or `tvrec train --stage temporal`), then '
    "`tvrec run`"
)


def trending_query(ctx: Context, k: int, genre: str | None) -> Answer:
    """The shows with the largest forecast growth over the next 7 days (views forecast
    after the as-of minus views in the 7 days before it), from the release's forecast."""
    import polars as pl

    ref = ctx.release.table(FORECAST_TABLE)
    if ref is None:
        raise ConfigError(NO_FORECAST)
    frame = pl.read_parquet(ctx.wd.root / ref.parquet)
    if genre is not None:
        frame = _in_genre(ctx, frame, genre)
    k = check_k(ctx, k, frame.height, "the forecast" + (f" of genre {genre!r}" if genre else ""))
    top = frame.sort(["growth_7d", "show_id"], descending=[True, False]).head(k)
    shows = release_shows(ctx)
    results = results_frame(shows, list(zip(top["show_id"], top["growth_7d"], strict=True)))
    for row, extra in zip(results, top.select("views_7d", "views_30d", "growth_30d").iter_rows(
            named=True), strict=True):  # fmt: skip
        row.update({name: round(float(v), 3) for name, v in extra.items()})
    return Answer(
        query={"trending": True, "genre": genre, "k": k, "source": FORECAST_TABLE},
        results=results,
        model_version=str(top["model_version"][0]) if top.height else ctx.model_version,
        as_of=ctx.release.as_of,
        heading="trending: largest forecast growth over the next 7 days"
        + (f" in {genre}" if genre else ""),
    )


def _in_genre(ctx: Context, frame: Any, genre: str) -> Any:
    """Forecast rows of shows in `genre` (case-insensitive), or a ConfigError listing them."""
    import polars as pl

    shows = pl.read_parquet(ctx.release.shows_file)
    if "genres" not in shows.columns:
        raise ConfigError(f"release {ctx.release.release_id} has no genres; {RERUN_HINT}")
    known = sorted({g for gs in shows["genres"].drop_nulls().to_list() for g in gs})
    match = next((g for g in known if g.casefold() == genre.casefold()), None)
    if match is None:
        raise ConfigError(f"no genre {genre!r}; genres: {', '.join(known) or 'none'}")
    ids = shows.filter(pl.col("genres").list.contains(match))["show_id"]
    return frame.filter(pl.col("show_id").is_in(ids.implode()))


# ----------------------------------------------------------------------------- command


def answer_query(
    workdir: Path | str,
    *,
    user: str | None,
    show: str | None,
    text: str | None,
    k: int | None,
    trending: bool = False,
    genre: str | None = None,
) -> Answer:
    """Check the arguments and the model, then answer the one query given.

    `k` None means "up to DEFAULT_K"; an explicit k must not exceed what exists."""
    if sum(x is not None for x in (user, show, text)) + trending != 1:
        raise ConfigError("give exactly one of --user, --show, --text or --trending")
    if genre is not None and not trending:
        raise ConfigError("--genre goes with --trending")
    if text is not None and not text.strip():  # it would embed near every show alike
        raise ConfigError('--text needs words to search for, e.g. --text "detective london"')
    if k is not None and k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    ctx = dataclasses.replace(open_context(workdir), strict_k=k is not None)
    k = k or DEFAULT_K
    if user is not None:
        return user_query(ctx, user, k)
    if show is not None:
        return show_query(ctx, show, k)
    if trending:
        return trending_query(ctx, k, genre)
    return text_query(ctx, text or "", k)


def resolve_workdir(workdir: str | None) -> Path:
    """The work directory exactly as `Settings.load` resolves it (flag, $TVREC_WORKDIR,
    default). Its `tvrec.toml` is validated when there is one, as for every command; without
    one there is nothing to validate and pydantic is not imported."""
    root = workdir_root(workdir)  # an empty -w refused
    if not (root / CONFIG_FILE).exists():
        return root
    from tvrec.pipelines.config import Settings

    return Settings.load(workdir).workdir


def render(answer: Answer, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    caption = f"model {answer.model_version}, as of {answer.as_of}"
    if answer.confidence_means:
        caption += f"\nconfidence: {answer.confidence_means}"
    table = Table(
        title=Text(answer.heading),
        caption=Text(caption),
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("rank", justify="right")
    table.add_column("show_id", no_wrap=True)
    table.add_column("title")
    table.add_column("score", justify="right")
    reasons = any("confidence" in r for r in answer.results)
    if reasons:
        table.add_column("confidence", justify="right")
        table.add_column("because")
    for r in answer.results:
        title = Text(r["title"] if r["title"] is not None else "?")  # Text: no markup parsing
        cells = [str(r["rank"]), Text(r["show_id"]), title, f"{r['score']:.4f}"]
        if reasons:
            conf = r.get("confidence")
            cells += ["" if conf is None else f"{conf:.2f}", Text(r.get("because") or "")]
        table.add_row(*cells)
    console.print(table)


def print_error(exc: Exception) -> None:
    from rich.console import Console
    from rich.text import Text

    message = Text.assemble(("error:", "bold red"), " ", str(exc))
    Console(stderr=True, highlight=False, soft_wrap=True).print(message)


def query_command(
    user: Annotated[str | None, typer.Option("--user", help="A user_id: their top-k.")] = None,
    show: Annotated[
        str | None, typer.Option("--show", help="A show_id or title: shows like it.")
    ] = None,
    text: Annotated[
        str | None, typer.Option("--text", help="Free text (needs a model with a text tower).")
    ] = None,
    trending: Annotated[
        bool,
        typer.Option("--trending", help="Shows with the largest forecast growth (7 days)."),
    ] = False,
    genre: Annotated[
        str | None, typer.Option("--genre", help="With --trending: only this genre.")
    ] = None,
    k: Annotated[
        int | None,
        typer.Option("-k", "--k", min=1, help=f"How many results (default: up to {DEFAULT_K})."),
    ] = None,
    workdir: Annotated[
        str | None,  # a string: `-w ""` is refused, not read as Path(".")
        typer.Option(
            "--workdir", "-w", envvar="TVREC_WORKDIR", help="Work directory (default ./tvrec-work)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Recommendations for a user, shows like a show, or shows for a text, from the
    published tables and the index (no training stack: answers in well under a second)."""
    try:
        answer = answer_query(
            resolve_workdir(workdir),
            user=user,
            show=show,
            text=text,
            k=k,
            trending=trending,
            genre=genre,
        )
    except (ConfigError, DataError, EngineError) as exc:
        print_error(exc)
        raise typer.Exit(3 if isinstance(exc, EngineError) else 2) from None
    if as_json:
        sys.stdout.write(json.dumps(answer.to_json(), indent=2) + "\n")
        return
    from rich.console import Console

    render(answer, Console(highlight=False))


QUERY_HELP = (
    "Recommendations for a user, similar shows, a text query, or trending shows, "
    "from the current release's tables and FAISS index."
)
# `tvrec query` options, by spelling: the query_command argument each one sets
VALUE_OPTIONS = {
    "--user": "user",
    "--show": "show",
    "--text": "text",
    "--genre": "genre",
    "-k": "k",
    "--k": "k",
    "--workdir": "workdir",
    "-w": "workdir",
}
FLAG_OPTIONS = {"--json": "as_json", "--trending": "trending"}


@cache
def query_click_command() -> click.Command:
    """`query_command` as a click command named `query`, built once per process (typer
    builds a pydantic adapter per option: about as long as answering a query)."""
    app = typer.Typer(add_completion=False)
    app.command("query", help=QUERY_HELP)(query_command)
    return typer.main.get_group(app).commands["query"]


def parse_plain(args: Sequence[str]) -> dict[str, Any] | None:
    """`query_command`'s arguments for a plain command line: known options, each at most
    once, as `--opt value` or `--opt=value`, values not starting with `-`, a valid -k.
    None for anything else (`--help`, mistakes, unusual forms): typer parses those, with
    its own messages, so the two parsers never disagree on an answer."""
    kwargs: dict[str, Any] = {}
    tokens = list(args)
    while tokens:
        token = tokens.pop(0)
        name, sep, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if name in FLAG_OPTIONS and not sep:
            field, value = FLAG_OPTIONS[name], True
        elif name in VALUE_OPTIONS:
            field = VALUE_OPTIONS[name]
            if not sep:
                if not tokens or tokens[0].startswith("-"):
                    return None
                value = tokens.pop(0)
        else:
            return None
        if field in kwargs:
            return None
        kwargs[field] = value
    return typed_options(kwargs)


def typed_options(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """-k as an int of at least 1 (None: let typer report it)."""
    k = kwargs.get("k")
    if k is not None:
        if not (k.isascii() and k.isdigit() and int(k) >= 1):
            return None
        kwargs["k"] = int(k)
    if "workdir" not in kwargs and os.environ.get(WORKDIR_ENV) == "":
        return None  # how typer reads an empty $TVREC_WORKDIR is its business
    return kwargs


def run_query(argv: Sequence[str] | None = None, prog_name: str = "tvrec query") -> int:
    """Run `tvrec query ARGS` without building the rest of the `tvrec` CLI (what
    `tvrec.jobs.cli.main` does for `tvrec query`, and what benchmarks time); returns the exit
    status (2 for bad input) instead of exiting. A plain command line calls
    `query_command` directly; anything else goes through typer."""
    args = list(argv) if argv is not None else sys.argv[1:]
    kwargs = parse_plain(args)
    try:
        if kwargs is None:
            query_click_command().main(args=args, prog_name=prog_name)
        else:
            query_command(**kwargs)
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # click's standalone mode always ends this way
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


main_for_bench = run_query  # the name benchmarks and older scripts use


if __name__ == "__main__":
    sys.exit(run_query())
