"""The generated bad-input corpus (tests/bad_inputs.py): every case is refused with exit status
2 and a message naming the file, column and first offending rows or lines, without a
traceback, and the work directory (which holds a good lake) is unchanged by content. Then the
awkward inputs tvrec accepts: symlinks out of the dataset, .csv.gz, old Mac files, integral
float ids, zero and blank weights."""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from bad_inputs import (
    EVENTS,
    SHOWS,
    Case,
    build_corpus,
    contract_dir,
    events_with,
    good_events_frame,
    one_viewer,
    tree_digest,
)
from typer.testing import CliRunner

from tvrec.jobs.cli import _finite, app
from tvrec.pipelines.config import MODEL_ENV, IngestSettings
from tvrec.pipelines.ingest import ingest
from tvrec.pipelines.workdir import Workdir

runner = CliRunner()
CASE_SECONDS = 60  # a case that hangs (a FIFO opened for reading) fails instead


def _case_names() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        return [case.name for case in build_corpus(Path(tmp) / "corpus")]


CASE_NAMES = _case_names()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    return {case.name: case for case in build_corpus(tmp_path_factory.mktemp("bad") / "corpus")}


@pytest.fixture(scope="module")
def good_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work directory holding the good dataset's published lake (copied by each test)."""
    root = tmp_path_factory.mktemp("good")
    work = root / "work"
    res = runner.invoke(app, ["ingest", str(contract_dir(root, "data")), "--workdir", str(work)])
    assert res.exit_code == 0, res.output
    return work


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def fail(*_: object) -> None:
        raise TimeoutError(f"the command ran over {seconds}s (blocked on a read?)")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_corpus_is_large_enough() -> None:
    assert len(CASE_NAMES) >= 45
    # `tvrec run` is slower (run-serve-untrained, the eighth, is refused before any read)
    assert sum(name.startswith("run-") for name in CASE_NAMES) <= 8


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_refused_and_changes_nothing(
    name: str,
    corpus: dict[str, Case],
    good_workdir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = corpus[name]
    if case.default_models:
        for env in MODEL_ENV.values():
            monkeypatch.delenv(env, raising=False)
    work = tmp_path / "work"
    shutil.copytree(good_workdir, work, symlinks=True)
    if case.toml is not None:
        (work / "tvrec.toml").write_text(case.toml)
    before = tree_digest(work)  # every byte: lock files and the catalogue included

    with time_limit(CASE_SECONDS):
        res = runner.invoke(app, [*case.args, "--workdir", str(work)])

    message = " ".join(res.output.split())
    assert res.exit_code == case.code, message
    assert "Traceback" not in res.output and not isinstance(res.exception, TimeoutError)
    assert message.startswith("error: "), message
    for pattern in case.expect:
        assert re.search(pattern, message), (pattern, message)
    assert len(message) < 1200, "the message echoes too much input"
    assert tree_digest(work) == before
    if case.is_run:  # failed before training: no model, no features, no published table
        assert not any((work / area).exists() for area in ("models", "features", "tables"))


# ---- what is accepted -----------------------------------------------------------------------
def test_a_viewer_who_has_seen_every_show_is_served_nothing_and_told_why(tmp_path: Path) -> None:
    """One viewer who watched all 30 shows: the night publishes (it was a ValueError, "1
    user_ids have no rows", from the table's check) and `tvrec query --user` says why the
    list is empty instead of "probably new since then"."""
    data = contract_dir(tmp_path, "data", **one_viewer(timed=True))
    work = ["--workdir", str(tmp_path / "work")]
    res = runner.invoke(app, ["run", "--data", str(data), *work])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["query", "--user", "u1", *work])
    assert res.exit_code == 2 and "they had watched every show aired by then" in res.output
    res = runner.invoke(app, ["query", "--show", "1", *work])
    assert res.exit_code == 0, res.output


def _ingest(src: Path, work: Path, *extra: str) -> dict:
    res = runner.invoke(app, ["ingest", str(src), "--workdir", str(work), "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _manifest(work: Path) -> dict:
    return json.loads((work / "lake" / "manifest.json").read_text())


def test_symlink_out_of_the_dataset_is_followed_and_recorded(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "events.csv"
    target.parent.mkdir()
    target.write_text(EVENTS)
    data = contract_dir(tmp_path, "data", events_csv=None)
    (data / "events.csv").symlink_to(target)
    summary = _ingest(data, tmp_path / "work")
    note = f"events.csv is a symlink out of the dataset directory; read {target.resolve()}"
    assert summary["rows"]["events"] == 4 and note in summary["notes"]
    assert note in _manifest(tmp_path / "work")["notes"]


def test_csv_gz_is_read(tmp_path: Path) -> None:
    data = contract_dir(
        tmp_path, "data", events_csv=None, events_csv_gz=gzip.compress(EVENTS.encode())
    )
    assert _ingest(data, tmp_path / "work")["rows"]["events"] == 4


def test_old_mac_file_with_encoding(tmp_path: Path) -> None:
    shows = "show_id,title\r1,Caf\u00e9 Society\r2,Beta\r3,Na\u00efve\r".encode("mac-roman")
    data = contract_dir(tmp_path, "data", shows_csv=shows, events_csv=EVENTS.replace("\n", "\r"))
    summary = _ingest(data, tmp_path / "work", "--encoding", "mac-roman")
    assert summary["rows"] == {"shows": 3, "events": 4, "credits": 0, "users": 0}
    titles = pl.read_parquet(tmp_path / "work" / "lake" / "shows.parquet")["title"].to_list()
    assert titles == ["Caf\u00e9 Society", "Beta", "Na\u00efve"]


def test_run_passes_encoding_to_its_ingest(tmp_path: Path) -> None:
    """`tvrec run --encoding` reaches the ingest inside the run: the Mac-Roman data parses
    (else this would be an encoding error), then the run stops at the as-of check, before the
    lake is replaced."""
    shows = SHOWS.replace("Beta", "B\u00eata").encode("mac-roman")
    data = contract_dir(tmp_path, "data", shows_csv=shows)
    work = tmp_path / "work"
    args = ["run", "--data", str(data), "--workdir", str(work), "--as-of", "1990-01-01"]
    res = runner.invoke(app, [*args, "--encoding", "mac-roman"])
    assert res.exit_code == 2 and "is not after the first event" in res.output, res.output
    assert not (work / "lake").exists()
    res = runner.invoke(
        app, ["ingest", str(data), "--workdir", str(work), "--encoding", "mac-roman"]
    )
    assert res.exit_code == 0, res.output
    assert "B\u00eata" in pl.read_parquet(work / "lake" / "shows.parquet")["title"].to_list()


def test_training_on_a_catalogue_alone_says_so(tmp_path: Path) -> None:
    """A catalogue without events ingests and builds features; training then says there is
    nothing to learn from (it was a pandas merge traceback), and so does an evaluation (it
    was a LinAlgError from EASE); exit 2."""
    data = tmp_path / "tvmaze"
    data.mkdir()
    (data / "tvmaze_shows.json").write_text('[{"id": 1, "name": "A"}, {"id": 2, "name": "B"}]')
    work = ["--workdir", str(tmp_path / "work")]
    assert runner.invoke(app, ["ingest", str(data), "--format", "tvmaze", *work]).exit_code == 0
    assert runner.invoke(app, ["features", "build", *work]).exit_code == 0
    res = runner.invoke(app, ["train", "--stage", "multimodal", *work])
    assert res.exit_code == 2, res.output
    assert "training set multimodal_v1: no viewing event before the as-of" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["evaluate", "--data", str(data), "--format", "tvmaze", *work])
    assert res.exit_code == 2 and "has no viewing events (2 shows" in res.output, res.output


def test_ingest_options_reach_ingest(tmp_path: Path) -> None:
    data = contract_dir(tmp_path, "data", events_csv=events_with("event_timestamp", [
        "1950-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]))  # fmt: skip
    options = IngestSettings(min_year=1940, max_year=2030)
    assert ingest(data, "contract", Workdir(tmp_path / "work"), options).rows["events"] == 4


def test_parquet_integral_float_ids_and_zero_or_blank_weights(tmp_path: Path) -> None:
    data = contract_dir(tmp_path, "data", events_csv=None)
    frame = good_events_frame().with_columns(
        pl.Series("show_id", [1.0, 2.0, 2.0, 3.0]), pl.Series("weight", [0.0, None, 1.0, 2.0])
    )
    frame.write_parquet(data / "events.parquet")
    _ingest(data, tmp_path / "work")
    events = pl.read_parquet(tmp_path / "work" / "lake" / "events.parquet")
    assert sorted(events["show_id"].to_list()) == ["1", "2", "2", "3"]
    assert sorted(events["weight"].to_list()) == [0.0, 1.0, 1.0, 2.0]


def test_show_numbers_blank_zero_and_whole_are_accepted(tmp_path: Path) -> None:
    """Blank is unknown (null), 0 is a number, 3.0 seasons are 3; anime's "Unknown" episode
    count is its export's own blank."""
    shows = "show_id,title,seasons,episodes,runtime_minutes\n1,A,,0,45\n2,B,3.0,,0\n3,C,1,8,\n"
    _ingest(contract_dir(tmp_path, "data", shows_csv=shows), tmp_path / "work")
    lake = pl.read_parquet(tmp_path / "work" / "lake" / "shows.parquet")
    assert lake.select("seasons", "episodes", "runtime_minutes").rows() == [
        (None, 0, 45.0), (3, None, 0.0), (1, 8, None)
    ]  # fmt: skip


def test_blank_unnamed_columns_are_dropped_and_an_attributes_column_kept(tmp_path: Path) -> None:
    """A spreadsheet's trailing separators (blank names over blank values) are dropped: they
    were kept as attributes '{"": null}' (two of them as polars' '_duplicated_0'); an input
    column named `attributes` is kept among the attributes (it was dropped)."""
    shows = SHOWS.replace("premiered\n", "premiered,attributes,,\n")
    shows = shows.replace("-05\n", "-05,gold,,\n").replace("-01\n", "-01,,,\n")
    _ingest(contract_dir(tmp_path, "data", shows_csv=shows), tmp_path / "work")
    lake = pl.read_parquet(tmp_path / "work" / "lake" / "shows.parquet")
    assert lake["attributes"].to_list() == ['{"attributes": "gold"}', *['{"attributes": null}'] * 2]


def test_features_json_never_holds_nan() -> None:
    values = {"a": float("nan"), "b": [1.0, float("inf")], "c": np.float32("nan"), "d": "x"}
    text = json.dumps(_finite(values), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": None, "d": "x"}
    assert not math.isnan(_finite(np.array([0.5]))[0])


# ---- the work directory and tvrec.toml themselves -------------------------------------------
def test_a_work_directory_that_is_a_file_or_missing_is_named(tmp_path: Path) -> None:
    """`-w` naming a file (or a path through one) is refused in one line (it was a
    FileExistsError traceback); a missing one is refused by the commands that need what a
    work directory holds, and is not created with a lock file by their failure (`publish
    --list` listed nothing and exited 0)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x\n")
    for work, command in ((a_file, "ingest"), (a_file / "sub", "train")):
        args = ["ingest", str(tmp_path)] if command == "ingest" else ["train", "--stage", "ease"]
        res = runner.invoke(app, [*args, "--workdir", str(work)])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert f"{a_file} is a file, not a directory" in " ".join(res.output.split())
    missing = tmp_path / "mistyped"
    for args in (
        ["train", "--stage", "ease"],
        ["recommend", "--model", "ease"],
        ["features", "build"],
        ["publish", "--rollback", "0"],
        ["publish", "--list"],
    ):
        res = runner.invoke(app, [*args, "--workdir", str(missing)])
        assert res.exit_code == 2, (args, res.output)
        assert f"{missing}: no work directory there" in " ".join(res.output.split()), args
        assert not missing.exists(), args


def test_a_tvrec_toml_that_is_not_utf8_or_a_directory_is_named(tmp_path: Path) -> None:
    """TOML is UTF-8: a Latin-1 comment or a UTF-16 file is refused naming the file (it was
    a UnicodeDecodeError traceback), and so is a directory called tvrec.toml."""
    work = tmp_path / "work"
    work.mkdir()
    toml = work / "tvrec.toml"
    for body in ("# caf\u00e9\n".encode("latin-1"), "[ingest]\n".encode("utf-16")):
        toml.write_bytes(body)
        res = runner.invoke(app, ["publish", "--list", "--workdir", str(work)])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert f"{toml}: not UTF-8 text" in " ".join(res.output.split())
    toml.unlink()
    toml.mkdir()
    res = runner.invoke(app, ["publish", "--list", "--workdir", str(work)])
    assert res.exit_code == 2 and f"{toml}: cannot be read" in " ".join(res.output.split())


@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "data"],
        ["publish", "--list"],
        ["features", "config", "--init"],
        ["schedule", "status"],
        ["query", "--user", "u1"],
    ],
)
def test_an_empty_work_directory_argument_is_refused(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-w ""` (an unset shell variable) is refused in one line; it was the current
    directory, which got a lake, a lock file or a feature_store.yaml."""
    contract_dir(tmp_path, "data")
    monkeypatch.chdir(tmp_path)
    before = tree_digest(tmp_path)
    res = runner.invoke(app, [*args, "-w", ""])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines() == [
        "error: -w / TVREC_WORKDIR '': an empty path; name a directory (. for the current one)"
    ]
    assert tree_digest(tmp_path) == before


def test_query_fast_path_refuses_an_empty_work_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tvrec.jobs.query import run_query

    monkeypatch.chdir(tmp_path)
    assert run_query(["--user", "u1", "-w", ""]) == 2
    assert "-w / TVREC_WORKDIR '': an empty path" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_feature_repo_resolves_the_work_directory_as_the_commands_do(tmp_path: Path) -> None:
    """feature_repo/definitions.py, imported as the `feast` CLI imports it (a top-level
    module), takes an empty $TVREC_WORKDIR as unset, as every tvrec command does: its
    feature sources were under the current directory itself instead of ./tvrec-work."""
    repo = Path(__file__).resolve().parents[1] / "feature_repo"
    code = (
        f"import sys; sys.path.insert(0, {str(repo)!r}); import definitions as d; print(d.WORKDIR)"
    )
    env = {**os.environ, "TVREC_WORKDIR": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path.resolve() / "tvrec-work")


@pytest.mark.parametrize("had_releases", [False, True])
def test_recommend_of_a_damaged_model_leaves_the_work_directory_as_it_was(
    had_releases: bool, good_workdir: Path, tmp_path: Path
) -> None:
    """The staged release is removed, and so is the `.releases` directory the call made for
    it (it was left behind, empty); one that was there before stays."""
    work = tmp_path / "work"
    shutil.copytree(good_workdir, work, symlinks=True)
    (work / "models" / "ease").mkdir(parents=True)
    (work / "models" / "ease" / "manifest.json").write_text("{")
    if had_releases:
        (work / ".releases").mkdir()
    before = tree_digest(work)
    res = runner.invoke(app, ["recommend", "--model", "ease", "--workdir", str(work)])
    assert res.exit_code == 2 and "not a tvrec model manifest" in res.output, res.output
    assert tree_digest(work) == before


@pytest.mark.parametrize(
    ("node", "said_then"),
    [
        ("localhost", "'localhost': give the port too, as localhost:PORT"),
        ("[::1]:6379", "'[::1]:6379': an IPv6 address, which Feast's Redis connection"),
        ("localhost:99999", "'localhost:99999': port 99999 is not 1-65535"),
    ],
)
def test_a_hand_edited_redis_node_is_refused_before_any_write(
    tmp_path: Path, node: str, said_then: str
) -> None:
    """A feature_store.yaml edited by hand to a Redis node Feast cannot use gets the checks
    `--redis` gets. A bare host: the connection check added Redis's own port and passed where
    Redis listened there, then Feast's Redis store failed with KeyError 'port' at its first
    write. Refused naming the file, nothing written."""
    work = tmp_path / "work"
    res = runner.invoke(
        app, ["features", "config", "--init", "--redis", "localhost:6379", "--workdir", str(work)]
    )
    assert res.exit_code == 0, res.output
    config = next(work.glob("**/feature_store.yaml"))
    text = config.read_text()
    assert "localhost:6379" in text
    config.write_text(text.replace("localhost:6379", node))
    before = tree_digest(work)
    res = runner.invoke(app, ["run", "--data", str(contract_dir(tmp_path, "d")), "-w", str(work)])
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())
    assert f"{config}: online_store connection_string {said_then}" in said, said
    assert "Traceback" not in res.output
    assert tree_digest(work) == before


def test_a_url_online_store_is_probed_at_its_host_and_port() -> None:
    """A store configured by URL (MongoDB's mongodb://HOST:PORT/...) is probed at HOST:PORT,
    not at 'mongodb://HOST' (the connection check split the URL at its last ':')."""
    from types import SimpleNamespace
    from typing import Any

    from tvrec.pipelines.store import online_endpoint

    def store(kind: str, conn: str) -> Any:  # a FeatureStore as far as it reads
        online = SimpleNamespace(type=kind, connection_string=conn)
        return SimpleNamespace(config=SimpleNamespace(online_store=online))

    assert online_endpoint(store("mongodb", "mongodb://db.example:27017/feast")) == (
        "mongodb",
        "db.example:27017",
    )
    assert online_endpoint(store("mongodb", "mongodb://db.example")) == ("mongodb", "db.example")
    assert online_endpoint(store("redis", "cache:6380,db=1")) == ("redis", "cache:6380")
