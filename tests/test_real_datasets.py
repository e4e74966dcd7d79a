"""End to end on the real public datasets in ../shared/datasets (slow: run by `make test-slow`
and in CI)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tvrec.jobs.cli import app
from tvrec.pipelines.build import read_manifest
from tvrec.pipelines.ingest import read_lake
from tvrec.pipelines.store import feature_store, online_features
from tvrec.pipelines.training import training_set
from tvrec.pipelines.workdir import Workdir

pytestmark = pytest.mark.slow
runner = CliRunner()
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def shared_dataset(name: str) -> Path:
    if not (SHARED / name).exists():
        pytest.skip(f"shared dataset {name} not at {SHARED}")
    return SHARED / name


def _run(*args: str) -> None:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output


def test_movielens_features_in_feast(tmp_path: Path) -> None:
    work = tmp_path / "work"
    _run(
        "ingest",
        str(shared_dataset("movielens-100k")),
        "--format",
        "movielens-100k",
        "--workdir",
        str(work),
    )
    _run("features", "build", "--workdir", str(work))
    wd = Workdir(work)
    store = feature_store(wd.root)
    assert len(store.list_feature_views()) == 7
    events = read_lake(wd).events
    # user 196 rated 39 films; all of them count online (the as-of is after the last rating)
    got = online_features(store, user="196")
    assert got["user_activity__events_total"] == [events.filter(pl.col("user_id") == "196").height]
    got = online_features(store, show="50")  # Star Wars (1977): the most-rated film
    assert (
        got["show_popularity__views_total"]
        == [events.filter(pl.col("show_id") == "50").height]
        == [583]
    )
    assert len(got["show_text__text_embedding"][0]) == 384
    # training rows never count their own rating or later ones
    df = pl.from_pandas(training_set(wd, "temporal_v1", negatives=0, limit=2000))
    for r in df.sample(100, seed=0).iter_rows(named=True):
        day = r["event_timestamp"].replace(hour=0, minute=0, second=0, microsecond=0)
        expected = events.filter(
            (pl.col("user_id") == r["user_id"]) & (pl.col("event_timestamp") < day)
        ).height
        assert (r["user_activity__events_total"] or 0) == expected
    assert datetime.fromisoformat(read_manifest(wd)["as_of"]) > events["event_timestamp"].max()


@pytest.mark.parametrize(
    ("folder", "fmt"),
    [
        ("anime-caserec-5k-users", "anime"),
        ("netflix-titles-credits", "netflix-titles"),
        ("streaming-catalogues", "streaming-catalogue"),
        ("tvmaze-shows-240", "tvmaze"),
    ],
)
def test_every_shared_dataset_ingests_through_the_cli(
    tmp_path: Path, folder: str, fmt: str
) -> None:
    work = tmp_path / "work"
    _run("ingest", str(shared_dataset(folder)), "--format", fmt, "--workdir", str(work))
    lake = read_lake(Workdir(work))
    assert lake.shows.height > 200
