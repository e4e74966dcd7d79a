"""`tvrec query` against a small published layout with known answers: user top-k, title
resolution (exact, ambiguous, fuzzy, no match), the index fallback finding a planted
near-duplicate show, model-version checks, JSON output, and a light import path.

Published versions are read through their indexed copies (`jobs/query_store.py`); the same
answers without copies (the Parquet path) are the oracle they must match, and releases,
killed publishes and rollbacks must move queries as one unit (`jobs/release.py`)."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from tvrec.index import IndexConfig, load_index, make_show_index
from tvrec.jobs import query as query_module
from tvrec.jobs import release as releases
from tvrec.jobs.query import normalise_title, parse_plain, query_click_command, query_command
from tvrec.jobs.query_store import ShowList

MODEL_VERSION = "two_tower-20240501"
AS_OF = "2024-05-01T00:00:00+00:00"
DIM = 16
N_SHOWS = 40
N_USERS = 30
TABLE_K = 5
PLANTED = ("s10", "s11")  # near-identical vectors; s10 has no show_similar rows
# Titles that exercise resolution; the other shows get "Show NN".
TITLES = {
    "s01": "The Office",
    "s02": "The Office",
    "s03": "Breaking Point",
    "s10": "Midnight Harbour",
    "s11": "Quiet Lanterns",
    "s12": "Starship Colony",
}
# u00's recommendations, written verbatim: the known answer of the --user tests.
U00_TOPK = [("s05", 0.91), ("s03", 0.88), ("s12", 0.74), ("s01", 0.52), ("s20", 0.31)]


# ----------------------------------------------------------------------------- the layout


def show_ids() -> list[str]:
    return [f"s{i:02d}" for i in range(N_SHOWS)]


def show_vectors(seed: int = 0) -> np.ndarray:
    """Random unit vectors (n, d) with s11 a near copy of s10."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_SHOWS, DIM)).astype(np.float32)  # (n, d)
    x[11] = x[10] + 0.01 * rng.standard_normal(DIM).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def shows_frame() -> pl.DataFrame:
    ids = show_ids()
    return pl.DataFrame(
        {
            "show_id": ids,
            "title": [TITLES.get(s, f"Show {s[1:]}") for s in ids],
            "premiered": [date(2000 + i % 20, 1, 1) for i in range(N_SHOWS)],
            "genres": [["Drama"]] * N_SHOWS,
        }
    )


def write_lake(root: Path) -> None:
    lake = root / "lake"
    lake.mkdir(parents=True)
    ids = show_ids()
    shows_frame().write_parquet(lake / "shows.parquet")
    events = [(f"u{u:02d}", ids[(u * 7) % N_SHOWS]) for u in range(N_USERS)]
    events.append(("u99", "s03"))  # has history, but joined after the tables were built
    pl.DataFrame(
        {
            "user_id": [u for u, _ in events],
            "show_id": [s for _, s in events],
            "event_timestamp": [datetime(2024, 4, 1, tzinfo=UTC)] * len(events),
        }
    ).write_parquet(lake / "events.parquet")


def user_topk_frame(model_version: str) -> pl.DataFrame:
    """u00 gets U00_TOPK; everyone else the first TABLE_K shows after their own number."""
    rows = [("u00", r, s, v) for r, (s, v) in enumerate(U00_TOPK, start=1)]
    for u in range(1, N_USERS):
        for r in range(1, TABLE_K + 1):
            rows.append((f"u{u:02d}", r, f"s{(u + r) % N_SHOWS:02d}", 1.0 / r))
    return tagged(rows, ("user_id", "rank", "show_id", "score"), model_version)


def show_similar_frame(vectors: np.ndarray, model_version: str) -> pl.DataFrame:
    """Exact cosine top-k of every show but s10 (so s10 needs the index fallback)."""
    ids = show_ids()
    sims = vectors @ vectors.T  # (n, n)
    np.fill_diagonal(sims, -np.inf)
    rows = []
    for i, s in enumerate(ids):
        if s == PLANTED[0]:
            continue
        for r, j in enumerate(np.argsort(-sims[i])[:TABLE_K], start=1):
            rows.append((s, r, ids[j], float(sims[i, j])))
    return tagged(rows, ("show_id", "rank", "similar_show_id", "score"), model_version)


def tagged(rows: list[tuple], columns: tuple[str, ...], model_version: str) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=list(columns), orient="row")
    return frame.with_columns(
        pl.col("rank").cast(pl.Int32),
        pl.col("score").cast(pl.Float32),
        pl.lit(model_version).alias("model_version"),
        pl.lit(AS_OF).alias("as_of"),
    )


def build_workdir(
    root: Path, *, table_version: str = MODEL_VERSION, index_version: str = MODEL_VERSION
) -> Path:
    """The lake and a release (model manifest, index, both tables), as the nightly job
    leaves them."""
    write_lake(root)
    vectors = show_vectors()
    show_index = make_show_index(
        vectors,
        show_ids(),
        model_name="two_tower",
        model_version=index_version,
        feature_service="collaborative_v1",
        data_snapshot="snap-1",
        as_of=AS_OF,
        cfg=IndexConfig(device="cpu"),
    )
    tables = {
        "user_topk": user_topk_frame(table_version),
        "show_similar": show_similar_frame(vectors, table_version),
    }
    publish(root, tables, index=show_index)
    return root


MANIFEST = {
    "model_name": "two_tower",
    "model_version": MODEL_VERSION,
    "feature_service": "collaborative_v1",
    "data_snapshot": "snap-1",
    "as_of": AS_OF,
    "dim": DIM,
}


def publish(root: Path, tables: dict[str, pl.DataFrame], index: object = None) -> None:
    """A release of `tables` (and the index; else the current release's index is kept)."""
    current = releases.current_release(root)
    if index is None and current is not None and current.index_dir.exists():
        index = load_index(current.index_dir, cfg=IndexConfig(device="cpu"))
    releases.publish_release(root, model=MANIFEST, tables=tables, shows=shows_frame(), index=index)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_workdir(tmp_path_factory.mktemp("query") / "work")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("query")(query_command)
    return app


def run(app: typer.Typer, workdir: Path, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one query; errors are read unwrapped."""
    result = CliRunner().invoke(app, ["--workdir", str(workdir), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


def as_json(app: typer.Typer, workdir: Path, *args: str) -> dict:
    code, out, err = run(app, workdir, *args, "--json")
    assert code == 0, err
    return json.loads(out)


# ----------------------------------------------------------------------------- --user


def test_user_topk_known_answer_with_titles(app: typer.Typer, workdir: Path) -> None:
    payload = as_json(app, workdir, "--user", "u00", "-k", "3")
    assert payload["query"] == {"user": "u00", "k": 3}
    assert payload["model_version"] == MODEL_VERSION
    assert payload["as_of"] == AS_OF
    assert [(r["rank"], r["show_id"], r["title"]) for r in payload["results"]] == [
        (1, "s05", "Show 05"),
        (2, "s03", "Breaking Point"),
        (3, "s12", "Starship Colony"),
    ]
    assert [r["score"] for r in payload["results"]] == pytest.approx([0.91, 0.88, 0.74])


def test_user_table_output(app: typer.Typer, workdir: Path) -> None:
    code, out, _ = run(app, workdir, "--user", "u00", "-k", str(TABLE_K))
    assert code == 0
    assert [s for s, _ in U00_TOPK] == [w for w in out.split() if w in dict(U00_TOPK)]
    assert "Breaking Point" in out and MODEL_VERSION in out


def test_unknown_user_exits_2_with_hint(app: typer.Typer, workdir: Path) -> None:
    code, out, err = run(app, workdir, "--user", "nobody")
    assert code == 2 and out == ""
    assert "unknown user 'nobody'" in err and "'u00'" in err  # shows what ids look like
    code, _, err = run(app, workdir, "--user", "u99")
    assert code == 2
    assert "unknown user 'u99'" in err and "1 event(s)" in err and "tvrec recommend" in err


def test_k_above_the_table_says_how_many(app: typer.Typer, workdir: Path) -> None:
    code, _, err = run(app, workdir, "--user", "u00", "-k", "9")
    assert code == 2 and "5 results available" in err and "-k 5" in err


def test_exactly_one_query(app: typer.Typer, workdir: Path) -> None:
    for args in ([], ["--user", "u00", "--show", "s01"]):
        code, _, err = run(app, workdir, *args)
        assert code == 2 and "exactly one of --user, --show, --text or --trending" in err


# ----------------------------------------------------------------------------- --show


def test_show_by_id_uses_show_similar(app: typer.Typer, workdir: Path) -> None:
    vectors = show_vectors()
    sims = vectors[3] @ vectors.T  # (n,)
    sims[3] = -np.inf
    expected = [show_ids()[j] for j in np.argsort(-sims)[:TABLE_K]]
    payload = as_json(app, workdir, "--show", "s03", "-k", str(TABLE_K))
    assert payload["query"]["source"] == "show_similar"
    assert [r["show_id"] for r in payload["results"]] == expected


def test_planted_twin_found_through_index_fallback(app: typer.Typer, workdir: Path) -> None:
    payload = as_json(app, workdir, "--show", "midnight HARBOUR", "-k", str(TABLE_K))
    assert payload["query"]["show_id"] == "s10"
    assert payload["query"]["source"] == "index"
    results = payload["results"]
    assert results[0]["show_id"] == "s11" and results[0]["title"] == "Quiet Lanterns"
    assert results[0]["score"] > 0.99
    assert "s10" not in [r["show_id"] for r in results] and len(results) == TABLE_K
    # the fallback is capped at the table's k too
    code, _, err = run(app, workdir, "--show", "s10", "-k", str(TABLE_K + 1))
    assert code == 2 and f"{TABLE_K} results available" in err


def test_ambiguous_title_lists_candidates(app: typer.Typer, workdir: Path) -> None:
    code, _, err = run(app, workdir, "--show", "the office")
    assert code == 2 and "ambiguous" in err
    assert "s01 The Office (2001)" in err and "s02 The Office (2002)" in err


def test_substring_and_fuzzy_matches(app: typer.Typer, workdir: Path) -> None:
    assert as_json(app, workdir, "--show", "starship", "-k", "1")["query"]["show_id"] == "s12"
    payload = as_json(app, workdir, "--show", "Midnite Harbor", "-k", "1")
    assert payload["query"]["show_id"] == "s10" and payload["results"][0]["show_id"] == "s11"


def test_no_match_suggests(app: typer.Typer, workdir: Path) -> None:
    code, _, err = run(app, workdir, "--show", "Lanterns Quiet")
    assert code == 2 and "no show matches 'Lanterns Quiet'" in err
    assert "did you mean" in err and "s11 Quiet Lanterns" in err


def test_normalise_title() -> None:
    assert normalise_title("  Grey's   ANATOMY! ") == "greys anatomy"
    assert normalise_title("Amélie: Part-2") == "amelie part 2"


# ----------------------------------------------------------------------------- --text


def test_text_without_text_tower(app: typer.Typer, workdir: Path) -> None:
    code, _, err = run(app, workdir, "--text", "space opera")
    assert code == 2
    assert "text tower" in err and "tvrec train --stage multimodal" in err
    for blank in ("", "   "):  # refused before anything is loaded
        code, _, err = run(app, workdir, "--text", blank)
        assert code == 2 and "--text needs words" in err, err


def test_text_hook_feeds_the_index(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a text tower exists, its vector is searched in the index (no exclusion)."""
    work = build_workdir(tmp_path / "work")
    model_dir = releases.require_release(work).model_dir
    (model_dir / "text_tower").mkdir()
    code, _, err = run(app, work, "--text", "harbour at night")
    assert code == 2 and "text_tower" in err  # an empty tower directory is refused clearly
    seen: list[tuple[Path, str]] = []

    def fake_encoder(model: Path, text: str) -> np.ndarray:
        seen.append((Path(model), text))
        return show_vectors()[10]  # (dim,)

    monkeypatch.setattr(query_module, "encode_text_query", fake_encoder)
    payload = as_json(app, work, "--text", "harbour at night", "-k", "2")
    assert seen == [(model_dir, "harbour at night")]
    assert [r["show_id"] for r in payload["results"]] == ["s10", "s11"]
    assert payload["query"] == {"text": "harbour at night", "k": 2, "source": "index"}


# ----------------------------------------------------------------------------- versions


def test_tables_from_another_model_exit_2(app: typer.Typer, tmp_path: Path) -> None:
    stale = build_workdir(tmp_path / "work", table_version="two_tower-20240401")
    for args in (["--user", "u00"], ["--user", "nobody"], ["--show", "s03"]):
        code, _, err = run(app, stale, *args)
        assert code == 2, args
        assert "two_tower-20240401" in err and MODEL_VERSION in err and "tvrec run" in err


def test_index_from_another_model_exit_2(app: typer.Typer, tmp_path: Path) -> None:
    stale = build_workdir(tmp_path / "work", index_version="two_tower-20240401")
    assert run(app, stale, "--show", "s03", "-k", "5")[0] == 0  # the table answers: no index
    code, _, err = run(app, stale, "--show", "s10")  # needs the index
    assert code == 2
    assert "two_tower-20240401" in err and MODEL_VERSION in err and "tvrec run" in err


def test_nothing_published_yet(app: typer.Typer, tmp_path: Path) -> None:
    code, _, err = run(app, tmp_path / "empty", "--user", "u00")
    assert code == 2 and "nothing is published" in err and "tvrec run" in err


def test_show_in_a_one_show_catalogue_exit_2(app: typer.Typer, tmp_path: Path) -> None:
    """A release of one show has no similar shows: said, not a traceback from the index's
    search for k = 0 (the default k is capped at what the index holds)."""
    work = tmp_path / "work"
    one = shows_frame().head(1)
    show_index = make_show_index(
        show_vectors()[:1], ["s00"], model_name="two_tower", model_version=MODEL_VERSION,
        feature_service="collaborative_v1", data_snapshot="snap-1", as_of=AS_OF,
        cfg=IndexConfig(device="cpu"),
    )  # fmt: skip
    empty = show_similar_frame(show_vectors(), MODEL_VERSION).clear()
    releases.publish_release(
        work, model=MANIFEST, tables={"show_similar": empty}, shows=one, index=show_index
    )
    for args in (["--show", "s00"], ["--show", "s00", "-k", "1"]):
        code, _, err = run(app, work, *args)
        assert code == 2, args
        assert "no shows like 's00'" in err and "no other show" in err, err


@contextlib.contextmanager
def catalogue_held(workdir: Path) -> Iterator[None]:
    """Another process holds catalog.duckdb open for writing (as a publishing job does)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"con = duckdb.connect({str(workdir / 'catalog.duckdb')!r})\n"
            "print('locked', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()


def drop_copies(root: Path) -> Path:
    """Queries read the Parquet files instead of the indexed copies."""
    for path in (root / "tables").glob("*/v*.sqlite"):
        path.unlink()
    return root


def test_catalogue_locked_by_a_writer(app: typer.Typer, tmp_path: Path) -> None:
    """Queries read the release, never the catalogue: a writer holding the catalogue
    neither delays nor fails them, through the copies or the Parquet files."""
    work = build_workdir(tmp_path / "work")
    with catalogue_held(work):
        assert as_json(app, work, "--user", "u00", "-k", "1")["results"][0]["show_id"] == "s05"
        assert u00_best(app, drop_copies(work)) == "s05"


# ----------------------------------------------------------------------------- indexed copy

ORACLE_QUERIES = (
    ["--user", "u00"],
    ["--user", "u07", "-k", "3"],
    ["--user", "u00", "-k", "9"],
    ["--user", "nobody"],
    ["--user", "u99"],
    ["--show", "s03", "-k", "5"],
    ["--show", "starship"],
    ["--show", "Midnite Harbor", "-k", "2"],
    ["--show", "the office"],
    ["--show", "Lanterns Quiet"],
    ["--show", "s10", "-k", "5"],
    ["--show", "s10", "-k", "6"],
    ["--show", "!!!"],
    ["--text", "space opera"],
)


@pytest.mark.parametrize("table_version", [MODEL_VERSION, "two_tower-20240401"])
def test_copies_answer_as_the_parquet_path(
    app: typer.Typer, tmp_path: Path, table_version: str
) -> None:
    """Every answer and every error, read through the copies and without them."""
    work = build_workdir(tmp_path / "work", table_version=table_version)
    assert sorted(p.name for p in (work / "tables" / "user_topk").iterdir()) == [
        "v1.parquet",
        "v1.sqlite",
    ]
    legacy = tmp_path / "legacy"
    for args in ([*q, "--json"] for q in ORACLE_QUERIES):
        with_copies = run(app, work, *args)
        shutil.copytree(work, legacy, symlinks=True)
        without = run(app, drop_copies(legacy), *args)
        shutil.rmtree(legacy)
        code, out, err = without
        assert with_copies == (code, out, err.replace(str(legacy), str(work))), args


def u00_frame(first_show: str) -> pl.DataFrame:
    """The user table with u00's best show replaced: tells versions apart in answers."""
    frame = user_topk_frame(MODEL_VERSION)
    first = (pl.col("user_id") == "u00") & (pl.col("rank") == 1)
    return frame.with_columns(
        pl.when(first).then(pl.lit(first_show)).otherwise("show_id").alias("show_id")
    )


def u00_best(app: typer.Typer, work: Path) -> str:
    return as_json(app, work, "--user", "u00", "-k", "1")["results"][0]["show_id"]


def both_tables(first_show: str) -> dict[str, pl.DataFrame]:
    vectors = show_vectors()
    return {
        "user_topk": u00_frame(first_show),
        "show_similar": show_similar_frame(vectors, MODEL_VERSION),
    }


def test_publish_and_rollback_move_queries(app: typer.Typer, tmp_path: Path) -> None:
    work = build_workdir(tmp_path / "work")  # release 1: s05 first
    publish(work, both_tables("s30"))  # release 2
    assert u00_best(app, work) == "s30"
    assert releases.rollback(work).number == 1
    assert u00_best(app, work) == "s05"
    (work / "tables" / "user_topk" / "v2.sqlite").unlink()  # its Parquet file still answers
    assert releases.rollback(work, 2).number == 2
    assert u00_best(app, work) == "s30"
    assert [(r.number, r.current) for r in releases.list_releases(work)] == [(1, False), (2, True)]


def test_old_releases_and_their_tables_are_pruned(app: typer.Typer, tmp_path: Path) -> None:
    work = build_workdir(tmp_path / "work")
    for i in range(releases.KEEP + 1):
        publish(work, both_tables(f"s{30 + i}"))
    kept = releases.list_releases(work)
    assert [r.number for r in kept] == list(range(3, releases.KEEP + 3))
    assert u00_best(app, work) == f"s{30 + releases.KEEP}"
    served = {f"v{r.tables['user_topk'].version}.parquet" for r in kept}
    assert {p.name for p in (work / "tables" / "user_topk").glob("*.parquet")} == served


def test_version_without_queryable_columns_falls_back(app: typer.Typer, tmp_path: Path) -> None:
    """No copy for a version whose table lacks columns: the Parquet path reports them."""
    work = build_workdir(tmp_path / "work")
    tables = both_tables("s05") | {"user_topk": user_topk_frame(MODEL_VERSION).drop("as_of")}
    publish(work, tables)
    assert releases.require_release(work).tables["user_topk"].copy is None
    code, _, err = run(app, work, "--user", "u00")
    assert code == 2 and "lacks column(s) as_of" in err


@pytest.mark.parametrize(
    "point", ["table:user_topk:copy", "table:show_similar:copy", "release:switch"]
)
def test_killed_publish_keeps_serving_the_previous_release(
    app: typer.Typer, tmp_path: Path, point: str
) -> None:
    """A publish killed after a table's Parquet file, or just before the switch: queries
    still answer from release 1, whole; the next publish sweeps what the killed one left."""
    work = build_workdir(tmp_path / "work")
    kill_publish(work, point, u00_frame("s30"))
    assert u00_best(app, work) == "s05"
    assert releases.require_release(work).number == 1
    publish(work, both_tables("s31"))
    assert u00_best(app, work) == "s31"
    assert [r.number for r in releases.list_releases(work)] == [1, 2]  # 2: reused
    assert sorted(p.name for p in (work / ".releases").iterdir())[0].startswith("r0001")
    assert len(list((work / ".releases").iterdir())) == 2
    assert not list(work.rglob(".*.tmp"))


def kill_publish(work: Path, stage: str, frame: pl.DataFrame) -> None:
    """Start publishing `frame` as user_topk in another process; SIGKILL it at `stage`."""
    source = work / "next.parquet"
    frame.write_parquet(source)
    marker = work / "paused"
    code = (
        "import polars as pl, sys; from pathlib import Path; sys.path.insert(0, {tests!r}); "
        "from test_query import publish, both_tables; "
        f"publish(Path({str(work)!r}), both_tables('s30') | "
        f"{{'user_topk': pl.read_parquet({str(source)!r})}})"
    ).replace("{tests!r}", repr(str(Path(__file__).parent)))
    env = {
        **os.environ,
        "TVREC_TEST_PAUSE_MARKER": str(marker),
        "TVREC_TEST_PAUSE_AT": stage,
    }
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), f"publisher never reached {stage}"


def test_titles_come_from_the_release(app: typer.Typer, tmp_path: Path) -> None:
    """A lake changed after publishing does not change answers: titles are the release's,
    until the next release."""
    work = build_workdir(tmp_path / "work")
    (work / "lake" / "shows.parquet").unlink()
    assert as_json(app, work, "--user", "u00", "-k", "1")["results"][0]["title"] == "Show 05"
    assert (
        as_json(app, drop_copies(work), "--show", "show 05", "-k", "1")["query"]["show_id"] == "s05"
    )


@pytest.mark.parametrize(
    ("args", "plain"),
    [
        (["--user", "u00", "--json"], True),
        (["--user=u00", "-k", "3"], True),
        (["-w", "elsewhere", "--show", "the office", "--k", "2"], True),
        (["--workdir=elsewhere", "--text", "crime drama", "--json"], True),
        (["--user", ""], True),
        (["--user", "u00", "--user", "u01"], False),
        (["--user", "-x"], False),
        (["-k", "0", "--user", "u00"], False),
        (["-k", "+3", "--user", "u00"], False),
        (["-k3", "--user", "u00"], False),
        (["-w=elsewhere", "--user", "u00"], False),
        (["--json=1", "--user", "u00"], False),
        (["--help"], False),
        (["--user"], False),
        (["extra", "--user", "u00"], False),
    ],
)
def test_plain_parser_agrees_with_typer(
    args: list[str],
    plain: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`tvrec query` parses plain command lines itself (typer takes about as long to build
    as a query takes to answer), exactly as typer does; anything else goes to typer."""
    seen: list[dict] = []

    def record(workdir: Path, **kwargs: object) -> query_module.Answer:
        seen.append({"workdir": workdir, **kwargs})
        return query_module.Answer({}, [], "m", None, "h")

    monkeypatch.setattr(query_module, "answer_query", record)
    monkeypatch.chdir(Path(__file__).parent)
    assert (parse_plain(args) is not None) == plain
    outcomes = []
    for runner_ in (query_module.run_query, run_click):
        code = runner_(args)
        outcomes.append((code, seen[-1] if seen else None, capsys.readouterr().out))
        seen.clear()
    assert outcomes[0] == outcomes[1]


def run_click(args: list[str]) -> int:
    try:
        query_click_command().main(args=args, prog_name="tvrec query")
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


# ----------------------------------------------------------------------------- import path


def test_query_path_never_loads_the_training_stack(workdir: Path) -> None:
    """Import the module, answer a user and an index-fallback show query, then look."""
    script = textwrap.dedent(
        f"""
        import io, json, sys, contextlib
        import tvrec.jobs.query as q
        with contextlib.redirect_stdout(io.StringIO()):
            codes = [q.main_for_bench(["-w", {str(workdir)!r}, *a])
                     for a in (["--user", "u00", "-k", "5"], ["--show", "s10", "-k", "5"])]
        heavy = ("torch", "transformers", "sentence_transformers", "feast", "torch_geometric")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        print(json.dumps({{"codes": codes, "loaded": loaded, "faiss": "faiss" in sys.modules}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"codes": [0, 0], "loaded": [], "faiss": True}


def test_cli_user_and_show_import_no_heavy_library(workdir: Path) -> None:
    """`tvrec query --user` / `--show` through the real entry point (`tvrec.jobs.cli:main`)
    read the indexed copies with the standard library: no polars, DuckDB, numpy, pyarrow,
    pandas, faiss, torch, Feast, pydantic (settings, typer's adapters) or APScheduler; rich
    only to draw a table."""
    script = textwrap.dedent(
        f"""
        import io, json, sys, contextlib
        from tvrec.jobs.cli import main
        heavy = ("polars", "duckdb", "numpy", "pyarrow", "pandas", "faiss", "torch", "feast",
                 "pydantic", "apscheduler", "rich")
        report = []
        for args in (["--user", "u00", "--json"], ["--show", "starship", "--json"]):
            sys.argv = ["tvrec", "query", "-w", {str(workdir)!r}, *args]
            with contextlib.redirect_stdout(io.StringIO()) as out:
                try:
                    main()
                except SystemExit as exc:
                    code = exc.code
            loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
            answer = json.loads(out.getvalue())
            report.append([code, answer["query"].get("show_id"), len(answer["results"]), loaded])
        print(json.dumps(report))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [[0, None, 5, []], [0, "s12", 5, []]]


def test_close_titles_equal_difflib() -> None:
    """The numpy bound only skips titles difflib would reject: same matches, same order."""
    rng = np.random.default_rng(3)
    words = ["midnight", "harbour", "quiet", "lantern", "office", "crown", "río", "été", "9"]
    titles = [" ".join(rng.choice(words, size=rng.integers(1, 4))) for _ in range(300)]
    shows = ShowList.build([f"s{i}" for i in range(300)], list(titles), None)
    norms = list(shows.rows_of_norm)
    for title in titles[:60]:
        cut = int(rng.integers(0, len(title)))
        for q in (title[:cut] + title[cut + 1 :], title[::-1], title + "x", "zzz"):
            for cutoff in (query_module.FUZZY_CUTOFF, query_module.SUGGEST_CUTOFF):
                expected = difflib.get_close_matches(q, norms, n=5, cutoff=cutoff)
                assert query_module.close_titles(q, shows, cutoff) == expected, (q, cutoff)


# ----------------------------------------------------------------------------- --trending


def forecast_frame() -> pl.DataFrame:
    """s07 grows most over 7 days, then s02, then s30; every other show is flat."""
    growth = {"s07": 40.0, "s02": 25.0, "s30": 10.0}
    ids = show_ids()
    return pl.DataFrame(
        {
            "show_id": ids,
            "views_7d": [50.0 + growth.get(s, 0.0) for s in ids],
            "views_30d": [200.0] * N_SHOWS,
            "recent_7d": [50.0] * N_SHOWS,
            "recent_30d": [200.0] * N_SHOWS,
            "growth_7d": [growth.get(s, 0.0) for s in ids],
            "growth_30d": [0.0] * N_SHOWS,
            "model_version": ["temporal-1"] * N_SHOWS,
            "as_of": [AS_OF] * N_SHOWS,
        }
    ).with_columns(pl.col(pl.Float64).cast(pl.Float32))


def test_trending_ranks_forecast_growth(app: typer.Typer, tmp_path: Path) -> None:
    work = build_workdir(tmp_path / "work")
    code, _, err = run(app, work, "--trending")
    assert code == 2 and "no show forecast" in err and "temporal" in err
    shows = shows_frame().with_columns(
        pl.when(pl.col("show_id").is_in(["s02", "s30"]))
        .then(pl.lit(["Comedy"]))
        .otherwise(pl.col("genres"))
        .alias("genres")
    )
    tables = both_tables("s05") | {"show_forecast": forecast_frame()}
    releases.publish_release(work, model=MANIFEST, tables=tables, shows=shows)
    payload = as_json(app, work, "--trending", "-k", "3")
    assert [(r["show_id"], r["score"]) for r in payload["results"]] == [
        ("s07", 40.0),
        ("s02", 25.0),
        ("s30", 10.0),
    ]
    assert payload["results"][1]["title"] == "The Office"
    assert payload["model_version"] == "temporal-1"
    comedy = as_json(app, work, "--trending", "--genre", "comedy")
    assert [r["show_id"] for r in comedy["results"]] == ["s02", "s30"]
    code, _, err = run(app, work, "--trending", "--genre", "Western")
    assert code == 2 and "no genre 'Western'" in err and "Comedy" in err
    code, _, err = run(app, work, "--user", "u00", "--genre", "Comedy")
    assert code == 2 and "--genre goes with --trending" in err
