"""`tvrec query` against a small published layout with known answers: user top-k, title
resolution (exact, ambiguous, fuzzy, no match), the index fallback finding a planted
near-duplicate show, model-version checks, JSON output, and a light import path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from tvrec.index import IndexConfig, make_show_index, save_index
from tvrec.jobs import query as query_module
from tvrec.jobs.catalog import Catalog
from tvrec.jobs.query import normalise_title, query_command

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


def write_lake(root: Path) -> None:
    lake = root / "lake"
    lake.mkdir(parents=True)
    ids = show_ids()
    pl.DataFrame(
        {
            "show_id": ids,
            "title": [TITLES.get(s, f"Show {s[1:]}") for s in ids],
            "premiered": [date(2000 + i % 20, 1, 1) for i in range(N_SHOWS)],
            "genres": [["Drama"]] * N_SHOWS,
        }
    ).write_parquet(lake / "shows.parquet")
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
    """lake, catalogue tables, index and model manifest, as the nightly job leaves them."""
    write_lake(root)
    vectors = show_vectors()
    catalog = Catalog(root)
    for name, frame in (
        ("user_topk", user_topk_frame(table_version)),
        ("show_similar", show_similar_frame(vectors, table_version)),
    ):
        catalog.publish(name, frame, model_version=table_version, as_of=AS_OF)
    manifest = {
        "model_name": "two_tower",
        "model_version": MODEL_VERSION,
        "feature_service": "collaborative_v1",
        "data_snapshot": "snap-1",
        "as_of": AS_OF,
        "dim": DIM,
    }
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
    save_index(show_index, root / "index")
    (root / "model").mkdir()
    (root / "model" / "manifest.json").write_text(json.dumps(manifest))
    return root


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
        assert code == 2 and "exactly one of --user, --show or --text" in err


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


def test_text_hook_feeds_the_index(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a text tower exists, its vector is searched in the index (no exclusion)."""
    work = build_workdir(tmp_path / "work")
    (work / "model" / "text_tower").mkdir()
    code, _, err = run(app, work, "--text", "harbour at night")
    assert code == 2 and "text_tower" in err  # an empty tower directory is refused clearly
    seen: list[tuple[Path, str]] = []

    def fake_encoder(workdir: Path, text: str) -> np.ndarray:
        seen.append((Path(workdir), text))
        return show_vectors()[10]  # (dim,)

    monkeypatch.setattr(query_module, "encode_text_query", fake_encoder)
    payload = as_json(app, work, "--text", "harbour at night", "-k", "2")
    assert seen == [(work.resolve(), "harbour at night")]
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


def test_missing_model_manifest(app: typer.Typer, tmp_path: Path) -> None:
    code, _, err = run(app, tmp_path / "empty", "--user", "u00")
    assert code == 2 and "no current model" in err


def test_catalogue_locked_by_a_writer(
    app: typer.Typer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query_module, "LOCK_WAIT_S", 0.2)
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
        code, _, err = run(app, workdir, "--user", "u00")
        assert code == 2 and "locked by another process" in err
    finally:
        holder.kill()
        holder.wait()


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
