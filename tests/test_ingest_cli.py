"""`tvrec ingest`: good data publishes; each kind of bad input exits 2 with the file, column
and row, and leaves the work directory byte-for-byte as it was."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tvrec.jobs.cli import app
from tvrec.pipelines.workdir import snapshot_tree

runner = CliRunner()

SHOWS = "show_id,title,genres,premiered\n1,Alpha,Drama|Crime,2020-01-05\n2,Beta,Comedy,2021-03-01\n"
EVENTS = (
    "user_id,show_id,event_timestamp,weight\n"
    "u1,1,2024-01-01T20:00:00Z,1\nu2,2,1704139200,0.5\nu1,2,2024-01-03T21:30:00+01:00,1\n"
)


def _dataset(tmp: Path, shows: str | bytes = SHOWS, events: str | bytes = EVENTS) -> Path:
    d = tmp / "data"
    d.mkdir(exist_ok=True)
    for name, body in (("shows.csv", shows), ("events.csv", events)):
        (d / name).write_bytes(body if isinstance(body, bytes) else body.encode())
    return d


def _ingest(src: Path, work: Path, *extra: str) -> object:
    return runner.invoke(app, ["ingest", str(src), "--workdir", str(work), *extra])


def test_ingest_publishes_canonical_tables(tmp_path: Path) -> None:
    work = tmp_path / "work"
    res = _ingest(_dataset(tmp_path), work, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["rows"] == {"shows": 2, "events": 3, "credits": 0, "users": 0}
    events = pl.read_parquet(work / "lake" / "events.parquet")
    # epoch seconds and +01:00 offsets land on the same UTC clock
    assert events["event_timestamp"].dt.strftime("%Y-%m-%dT%H:%M").to_list() == [
        "2024-01-01T20:00",
        "2024-01-01T20:00",
        "2024-01-03T20:30",
    ]
    shows = pl.read_parquet(work / "lake" / "shows.parquet")
    assert shows.filter(pl.col("show_id") == "1")["genres"].to_list() == [["Drama", "Crime"]]


BAD_CASES = {
    "missing column": (
        SHOWS,
        EVENTS.replace("event_timestamp", "when"),
        "events.csv",
        "event_timestamp",
        None,
    ),
    "bad timestamp": (
        SHOWS,
        EVENTS.replace("1704139200", "yesterday"),
        "events.csv",
        "event_timestamp",
        "rows 2",
    ),
    "empty show_id": (SHOWS.replace("2,Beta", ",Beta"), EVENTS, "shows.csv", "show_id", "rows 2"),
    "duplicated show_id": (
        SHOWS.replace("2,Beta", "1,Beta"),
        EVENTS,
        "shows.csv",
        "show_id",
        "rows 1, 2",
    ),
    "unknown show": (SHOWS, EVENTS.replace("u1,2,", "u1,9,"), "events.csv", "show_id", "rows 3"),
    "not utf-8": (SHOWS.encode().replace(b"Beta", b"B\xe9ta"), EVENTS, "shows.csv", None, "line 3"),
    "empty file": (SHOWS, "", "events.csv", None, "empty"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_exits_2_and_changes_nothing(tmp_path: Path, case: str) -> None:
    work = tmp_path / "work"
    assert _ingest(_dataset(tmp_path), work).exit_code == 0
    before = snapshot_tree(work)
    lake_before = (work / "lake" / "shows.parquet").read_bytes()

    shows, events, file, column, where = BAD_CASES[case]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "shows.csv").write_bytes(shows if isinstance(shows, bytes) else shows.encode())
    (bad / "events.csv").write_bytes(events.encode() if isinstance(events, str) else events)
    res = _ingest(bad, work)

    assert res.exit_code == 2
    message = " ".join(res.stderr.split())
    assert file in message
    if column:
        assert f"column '{column}'" in message
    if where:
        assert where in message
    assert snapshot_tree(work) == before
    assert (work / "lake" / "shows.parquet").read_bytes() == lake_before


def test_failed_first_ingest_creates_no_workdir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    res = _ingest(_dataset(tmp_path, events=EVENTS.replace("u1,2,", "u1,9,")), work)
    assert res.exit_code == 2
    assert not work.exists()


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    res = _ingest(_dataset(tmp_path), tmp_path / "w", "--format", "nonsense")
    assert res.exit_code == 2
    assert "unknown --format" in res.stderr


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["ingest", "--help"],
        ["features", "--help"],
        ["features", "build", "--help"],
        ["features", "get", "--help"],
        ["features", "training-set", "--help"],
        ["demo", "--help"],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, args
        assert "Usage" in res.output


def test_help_paragraphs_are_not_broken_mid_sentence() -> None:
    """typer keeps a docstring's line breaks: each paragraph is joined onto one line first,
    so the terminal wraps it (was: 'roll the served release back (model, index and tables' /
    'move together)')."""
    from tvrec.jobs.cli_common import reflowed

    assert reflowed("One line\n    and more.\n\n    Second\n    part.") == (
        "One line and more.\n\nSecond part."
    )
    res = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "With the temporal model, its show forecasts (MASE) and release timing too" in res.output
