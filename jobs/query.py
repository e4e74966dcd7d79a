"""`tvrec query`: answer one user, show or text query from what the nightly job published.

Answers come from the catalogue's current `user_topk` / `show_similar` tables and, when a
show has no precomputed neighbours, from the FAISS index in `<workdir>/index/`: never from
the training stack. The command must start and answer well under a second, so this module
imports neither torch, transformers, sentence-transformers nor feast, and loads faiss only
when the index is searched. The one exception is `encode_text_query`, the hook through which
a text query will load the model's text tower (and its heavy libraries) once one exists.

Before answering, the tables and the index must come from the current model
(`<workdir>/model/manifest.json`); anything else would serve stale neighbours silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import polars as pl
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tvrec.jobs.catalog import Catalog, TableVersion
from tvrec.pipelines.config import Settings
from tvrec.pipelines.errors import ConfigError, DataError
from tvrec.pipelines.workdir import Workdir

if TYPE_CHECKING:
    import numpy as np

    from tvrec.index import ShowIndex

USER_TABLE = "user_topk"
SIMILAR_TABLE = "show_similar"
MODEL_DIR = "model"
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
LOCK_WAIT_S = 3.0  # how long to wait for a publishing job to release the catalogue

# ----------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answer:
    """One query's results, ready to print as a table or JSON."""

    query: dict[str, Any]
    results: list[dict[str, Any]]  # rank, show_id, title, score; best first
    model_version: str
    as_of: str | None
    heading: str

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "results": self.results,
            "model_version": self.model_version,
            "as_of": self.as_of,
        }


@dataclass(frozen=True)
class ShowMatch:
    """The show a `--show` argument resolved to, and how (id, title, substring, fuzzy)."""

    show_id: str
    title: str | None
    how: str


@dataclass(frozen=True)
class Context:
    """What every query reads first: the work directory and the current model's version."""

    wd: Workdir
    catalog: Catalog
    model: dict[str, Any]
    strict_k: bool = True  # an explicit -k above what exists is an error; the default caps

    @property
    def model_version(self) -> str:
        return str(self.model["model_version"])


def open_context(workdir: Path | str) -> Context:
    wd = Workdir(workdir)
    return Context(
        wd=wd, catalog=Catalog(wd.root, lock_timeout=LOCK_WAIT_S), model=read_model_manifest(wd)
    )


def read_model_manifest(wd: Workdir) -> dict[str, Any]:
    """The current model's manifest; its model_version is what every answer must match."""
    path = wd.root / MODEL_DIR / MODEL_MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no current model at {path.parent}: train one and publish its tables with `tvrec run`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the model manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or not manifest.get("model_version"):
        raise ConfigError(f"{path} has no model_version; {RERUN_HINT}")
    return manifest


# ----------------------------------------------------------------------------- tables


def current_table(catalog: Catalog, name: str) -> TableVersion | None:
    """The current version of `name` (the catalogue waits briefly for a publishing job)."""
    return catalog.current(name)


def require_table(catalog: Catalog, name: str) -> TableVersion:
    table = current_table(catalog, name)
    if table is None:
        raise ConfigError(f"no published {name!r} table yet: run `tvrec run` or `tvrec recommend`")
    return table


def read_rows(table: TableVersion, key_column: str, key: str) -> pl.DataFrame:
    """Rows of one user / show, best first; the filter is pushed into the Parquet scan."""
    scan = pl.scan_parquet(table.path)
    try:
        missing = [c for c in TABLE_COLUMNS[table.table_name] if c not in scan.collect_schema()]
        if missing:
            raise ConfigError(
                f"{table.path} ({table.table_name} v{table.version}) lacks column(s) "
                f"{', '.join(missing)}; {RERUN_HINT}"
            )
        return scan.filter(pl.col(key_column) == key).sort("rank").collect()
    except (FileNotFoundError, pl.exceptions.ComputeError) as exc:
        raise ConfigError(
            f"cannot read {table.table_name} v{table.version} at {table.path}: {exc}"
        ) from exc


def check_table_model(table: TableVersion, rows: pl.DataFrame, model_version: str) -> None:
    """The table (its catalogue entry and the rows read) must come from the current model."""
    found = set(rows["model_version"].unique().to_list()) if rows.height else set()
    if table.model_version is not None:
        found.add(table.model_version)
    if not found:  # no catalogue entry and no row for this key: look at any row
        head = pl.scan_parquet(table.path).select("model_version").head(1).collect()
        found = set(head["model_version"].to_list())
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


def first_as_of(rows: pl.DataFrame, table: TableVersion) -> str | None:
    return str(rows["as_of"][0]) if rows.height else table.as_of


# ----------------------------------------------------------------------------- lake


def read_shows(wd: Workdir, show_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """show_id, title and premiered of the lake's shows (only `show_ids` when given)."""
    path = wd.lake / "shows.parquet"
    if not path.exists():
        raise ConfigError(f"no shows at {path}: run `tvrec ingest` or `tvrec demo` first")
    scan = pl.scan_parquet(path)
    wanted = [c for c in ("show_id", "title", "premiered") if c in scan.collect_schema()]
    if show_ids is not None:
        scan = scan.filter(pl.col("show_id").is_in(list(show_ids)))
    return scan.select(wanted).collect()


def titles_of(wd: Workdir, show_ids: Sequence[str]) -> dict[str, str | None]:
    shows = read_shows(wd, show_ids)
    return dict(zip(shows["show_id"].to_list(), shows["title"].to_list(), strict=True))


def user_events(wd: Workdir, user: str) -> int:
    """How many lake events `user` has (0 when there is no events table)."""
    path = wd.lake / "events.parquet"
    if not path.exists():
        return 0
    scan = pl.scan_parquet(path).filter(pl.col("user_id") == user)
    return int(scan.select(pl.len()).collect().item())


def results_frame(
    wd: Workdir, ranked: Sequence[tuple[str, float]], ranks: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """[{rank, show_id, title, score}] for (show_id, score) pairs, titles from the lake."""
    titles = titles_of(wd, [s for s, _ in ranked])
    ranks = ranks or range(1, len(ranked) + 1)
    return [
        {"rank": int(r), "show_id": s, "title": titles.get(s), "score": round(float(v), 6)}
        for r, (s, v) in zip(ranks, ranked, strict=True)
    ]


# ----------------------------------------------------------------------------- --user


def user_query(ctx: Context, user: str, k: int) -> Answer:
    """The user's top-k from the current `user_topk` table."""
    table = require_table(ctx.catalog, USER_TABLE)
    rows = read_rows(table, "user_id", user)
    check_table_model(table, rows, ctx.model_version)
    if rows.height == 0:
        raise ConfigError(unknown_user_message(ctx, table, user))
    k = check_k(ctx, k, rows.height, f"user {user!r}")
    top = rows.head(k)
    pairs = list(zip(top["show_id"].to_list(), top["score"].to_list(), strict=True))
    return Answer(
        query={"user": user, "k": k},
        results=results_frame(ctx.wd, pairs, top["rank"].to_list()),
        model_version=ctx.model_version,
        as_of=first_as_of(rows, table),
        heading=f"top {k} for user {user}",
    )


def unknown_user_message(ctx: Context, table: TableVersion, user: str) -> str:
    """Why a user has no row: new since the as-of time, or no such id at all."""
    n_events = user_events(ctx.wd, user)
    if n_events:
        return (
            f"unknown user {user!r}: they have {n_events} event(s) in the lake but no "
            f"recommendations in {USER_TABLE} v{table.version} (as of {table.as_of}); "
            "probably new since then: rerun `tvrec recommend`"
        )
    example = pl.scan_parquet(table.path).select("user_id").head(1).collect()["user_id"]
    hint = f"user ids look like {example[0]!r}" if len(example) else "the table is empty"
    return f"unknown user {user!r}: not in {USER_TABLE} nor in the lake's events ({hint})"


# ----------------------------------------------------------------------------- --show


def normalise_title(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form: "Grey's  Anatomy!" -> "greys anatomy"."""
    folded = unicodedata.normalize("NFKD", text).casefold()
    kept = []
    for ch in folded:
        if unicodedata.combining(ch) or ch in "'’`":
            continue
        kept.append(ch if ch.isalnum() else " ")
    return " ".join("".join(kept).split())


def resolve_show(shows: pl.DataFrame, query: str) -> ShowMatch:
    """An exact show_id, else exact / substring / fuzzy title match; errors name candidates."""
    ids: list[str] = shows["show_id"].to_list()
    titles: list[str | None] = shows["title"].to_list()
    if query in set(ids):
        return ShowMatch(query, titles[ids.index(query)], "id")
    q = normalise_title(query)
    if not q:
        raise ConfigError("--show needs a show id or (part of) a title")
    norm = [normalise_title(t or "") for t in titles]
    for how, hits in (
        ("title", [i for i, n in enumerate(norm) if n == q]),
        ("substring", [i for i, n in enumerate(norm) if q in n]),
        ("fuzzy", fuzzy_hits(q, norm)),
    ):
        if len(hits) == 1:
            return ShowMatch(ids[hits[0]], titles[hits[0]], how)
        if hits:
            raise ConfigError(ambiguous_message(query, shows, hits))
    raise ConfigError(no_match_message(query, q, shows, norm))


def fuzzy_hits(q: str, norm: list[str]) -> list[int]:
    """Rows whose normalised title is the closest to q (several when tied), if close enough."""
    rows_of: dict[str, list[int]] = {}
    for i, n in enumerate(norm):
        rows_of.setdefault(n, []).append(i)
    close = difflib.get_close_matches(q, list(rows_of), n=MAX_SUGGESTIONS, cutoff=FUZZY_CUTOFF)
    if not close:
        return []
    # get_close_matches compares with the candidate as `a` and the query as `b`
    ratio = {c: difflib.SequenceMatcher(None, c, q).ratio() for c in close}
    best = max(ratio.values())
    return [i for c in close if ratio[c] == best for i in rows_of[c]]


def describe_show(shows: pl.DataFrame, row: int) -> str:
    """'s12  The Office (2005)' for candidate lists."""
    show_id, title = shows["show_id"][row], shows["title"][row]
    year = ""
    if "premiered" in shows.columns and shows["premiered"][row] is not None:
        year = f" ({str(shows['premiered'][row])[:4]})"
    return f"{show_id}  {title}{year}"


def ambiguous_message(query: str, shows: pl.DataFrame, rows: list[int]) -> str:
    listed = "\n".join("  " + describe_show(shows, r) for r in rows[:MAX_CANDIDATES])
    more = f"\n  ... and {len(rows) - MAX_CANDIDATES} more" if len(rows) > MAX_CANDIDATES else ""
    return (
        f"{query!r} is ambiguous: it matches {len(rows)} shows equally well; "
        f"give one by its show_id:\n{listed}{more}"
    )


def no_match_message(query: str, q: str, shows: pl.DataFrame, norm: list[str]) -> str:
    rows_of: dict[str, int] = {}
    for i, n in enumerate(norm):
        rows_of.setdefault(n, i)
    near = difflib.get_close_matches(q, list(rows_of), n=MAX_SUGGESTIONS, cutoff=SUGGEST_CUTOFF)
    if not near:
        return f"no show matches {query!r}; give a show_id or (part of) its title"
    listed = "\n".join("  " + describe_show(shows, rows_of[n]) for n in near)
    return f"no show matches {query!r}; did you mean:\n{listed}"


def show_query(ctx: Context, show: str, k: int) -> Answer:
    """Shows similar to `show`: its `show_similar` rows, else the index's neighbours."""
    match = resolve_show(read_shows(ctx.wd), show)
    query = {"show": show, "show_id": match.show_id, "title": match.title, "k": k}
    heading = f"shows like {match.title or match.show_id} ({match.show_id})"
    table = current_table(ctx.catalog, SIMILAR_TABLE)
    if table is None:  # nothing precomputed at all: the index answers
        return index_show_answer(ctx, match.show_id, k, None, query, heading)
    rows = read_rows(table, "show_id", match.show_id)
    check_table_model(table, rows, ctx.model_version)
    if rows.height == 0:  # e.g. a show added after the tables were built
        return index_show_answer(ctx, match.show_id, k, table_k(table), query, heading)
    k = check_k(ctx, k, rows.height, f"show {match.show_id!r}")
    top = rows.head(k)
    pairs = list(zip(top["similar_show_id"].to_list(), top["score"].to_list(), strict=True))
    return Answer(
        query={**query, "source": SIMILAR_TABLE},
        results=results_frame(ctx.wd, pairs, top["rank"].to_list()),
        model_version=ctx.model_version,
        as_of=first_as_of(rows, table),
        heading=heading,
    )


def table_k(table: TableVersion) -> int | None:
    """The table's k (its largest rank), which also caps index fallbacks."""
    top = pl.scan_parquet(table.path).select(pl.col("rank").max()).collect().item()
    return int(top) if top is not None else None


def index_show_answer(
    ctx: Context,
    show_id: str,
    k: int,
    limit: int | None,
    query: dict[str, Any],
    heading: str,
) -> Answer:
    """Neighbours of the show's own index vector, itself excluded."""
    show_index = load_current_index(ctx)
    available = show_index.index.ntotal - 1
    k = check_k(ctx, k, min(available, limit) if limit else available, f"show {show_id!r}")
    vector = own_vector(show_index, show_id)  # (dim,)
    hits = show_index.search_ids(vector[None, :], k, exclude_ids=[{show_id}])[0]
    return Answer(
        query={**query, "source": INDEX_DIR},
        results=results_frame(ctx.wd, hits),
        model_version=ctx.model_version,
        as_of=show_index.manifest.as_of,
        heading=heading + " (from the index)",
    )


def load_current_index(ctx: Context) -> ShowIndex:
    """The index, refused unless it was built by the current model (faiss loads only here)."""
    from tvrec.index import IndexConfig, load_index

    # device="cpu": no hardware probe (which could import torch); one query needs no GPU
    return load_index(
        ctx.wd.root / INDEX_DIR,
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
    if faiss_index_type(cpu) == "ivf":  # IVF lists need a direct map to reconstruct
        faiss.extract_index_ivf(cpu).make_direct_map()
    return cpu.reconstruct(rows[0])


# ----------------------------------------------------------------------------- --text

TEXT_TOWER_MISSING = (
    "text queries need a model with a text tower, and the current model has none "
    "({path} does not exist); train the multimodal model with "
    "`tvrec train --stage multimodal`, then `tvrec run`"
)


def encode_text_query(workdir: Path | str, text: str) -> np.ndarray:
    """HOOK: embed `text` with the current model's text tower, as a (dim,) float32 vector
    in the show index's space.

    The only place `tvrec query` may import heavy libraries (torch, sentence-transformers),
    and only when a text tower exists. The loader it expects is
    `tvrec.models.text_tower.encode_query(directory: Path, text: str) -> np.ndarray`.
    """
    tower = Path(workdir) / MODEL_DIR / TEXT_TOWER_DIR
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
    """Shows nearest to the text's embedding in the index."""
    vector = encode_text_query(ctx.wd.root, text)  # (dim,)
    show_index = load_current_index(ctx)
    k = check_k(ctx, k, show_index.index.ntotal, "a text query")
    hits = show_index.search_ids(vector.reshape(1, -1), k)[0]
    return Answer(
        query={"text": text, "k": k, "source": INDEX_DIR},
        results=results_frame(ctx.wd, hits),
        model_version=ctx.model_version,
        as_of=show_index.manifest.as_of,
        heading=f"shows for {text!r}",
    )


# ----------------------------------------------------------------------------- command


def answer_query(
    workdir: Path | str,
    *,
    user: str | None,
    show: str | None,
    text: str | None,
    k: int | None,
) -> Answer:
    """Check the arguments and the model, then answer the one query given.

    `k` None means "up to DEFAULT_K"; an explicit k must not exceed what exists."""
    if sum(x is not None for x in (user, show, text)) != 1:
        raise ConfigError("give exactly one of --user, --show or --text")
    if k is not None and k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    ctx = dataclasses.replace(open_context(workdir), strict_k=k is not None)
    k = k or DEFAULT_K
    if user is not None:
        return user_query(ctx, user, k)
    if show is not None:
        return show_query(ctx, show, k)
    return text_query(ctx, text or "", k)


def render(answer: Answer, console: Console) -> None:
    table = Table(
        title=Text(answer.heading),
        caption=f"model {answer.model_version}, as of {answer.as_of}",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("rank", justify="right")
    table.add_column("show_id", no_wrap=True)
    table.add_column("title")
    table.add_column("score", justify="right")
    for r in answer.results:
        title = Text(r["title"] if r["title"] is not None else "?")  # Text: no markup parsing
        table.add_row(str(r["rank"]), Text(r["show_id"]), title, f"{r['score']:.4f}")
    console.print(table)


def query_command(
    user: Annotated[str | None, typer.Option("--user", help="A user_id: their top-k.")] = None,
    show: Annotated[
        str | None, typer.Option("--show", help="A show_id or title: shows like it.")
    ] = None,
    text: Annotated[
        str | None, typer.Option("--text", help="Free text (needs a model with a text tower).")
    ] = None,
    k: Annotated[
        int | None,
        typer.Option("-k", "--k", min=1, help=f"How many results (default: up to {DEFAULT_K})."),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir", "-w", envvar="TVREC_WORKDIR", help="Work directory (default ./tvrec-work)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Recommendations for a user, shows like a show, or shows for a text, from the
    published tables and the index (no training stack: answers in well under a second)."""
    try:
        answer = answer_query(Settings.load(workdir).workdir, user=user, show=show, text=text, k=k)
    except (ConfigError, DataError) as exc:
        message = Text.assemble(("error:", "bold red"), " ", str(exc))
        Console(stderr=True, highlight=False, soft_wrap=True).print(message)
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(answer.to_json(), indent=2) + "\n")
        return
    render(answer, Console(highlight=False))


def main_for_bench(argv: Sequence[str] | None = None) -> int:
    """Run `query_command` as a stand-alone command (until `tvrec query` is wired in);
    returns the exit status (2 for bad input) instead of exiting."""
    app = typer.Typer(add_completion=False)
    app.command()(query_command)
    try:
        app(args=list(argv) if argv is not None else None, prog_name="tvrec query")
    except SystemExit as exc:  # standalone mode always ends this way
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main_for_bench())
