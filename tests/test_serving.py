"""The nightly precompute on the synthetic world: recommendations recover the planted taste
clusters and obey the filters; publishing is atomic, versioned and reversible; Feast serves
the current table; an index never serves a model it was not built from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from tvrec.index import IndexMismatchError, load_index
from tvrec.jobs.catalog import Catalog
from tvrec.jobs.cli import app
from tvrec.jobs.train import load_current_model
from tvrec.models.base import ModelManifest
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.ingest import read_lake
from tvrec.pipelines.store import feature_store
from tvrec.pipelines.synthetic import PlantedTruth
from tvrec.pipelines.workdir import Workdir

runner = CliRunner()


def test_recommendations_recover_taste_clusters(
    served_workdir: Workdir, truth: PlantedTruth
) -> None:
    top = Catalog(served_workdir.root).read_current("user_topk").filter(pl.col("rank") <= 10)
    clusters = pl.DataFrame(
        {"show_id": list(truth.show_cluster), "show_c": list(truth.show_cluster.values())}
    )
    users = pl.DataFrame(
        {"user_id": list(truth.user_cluster), "user_c": list(truth.user_cluster.values())}
    )
    joined = top.join(clusters, on="show_id").join(users, on="user_id")
    in_cluster = (joined["show_c"] == joined["user_c"]).mean()
    chance = 1 / len(set(truth.show_cluster.values()))
    assert in_cluster > 0.6 > 3 * chance, in_cluster


def test_no_watched_or_unaired_show_is_recommended(
    served_workdir: Workdir, truth: PlantedTruth
) -> None:
    catalog = Catalog(served_workdir.root)
    top = catalog.read_current("user_topk")
    events = read_lake(served_workdir).events.select("user_id", "show_id").unique()
    assert top.join(events, on=["user_id", "show_id"]).height == 0
    assert not set(truth.upcoming_shows) & set(top["show_id"].to_list())
    similar = catalog.read_current("show_similar")
    assert not set(truth.upcoming_shows) & set(similar["similar_show_id"].to_list())
    assert (similar["show_id"] != similar["similar_show_id"]).all()


def test_tables_are_complete_and_stamped(served_workdir: Workdir) -> None:
    top = Catalog(served_workdir.root).read_current("user_topk")
    model = ModelManifest.read(served_workdir.root / "model")
    per_user = top.group_by("user_id").agg(pl.len().alias("n"), pl.col("rank").max().alias("m"))
    assert per_user["n"].unique().to_list() == [20] and per_user["m"].unique().to_list() == [20]
    assert top["model_version"].unique().to_list() == [model.model_version]
    assert top["as_of"].unique().to_list() == [model.as_of]
    # scores are the model's own, best first
    first = top.filter(pl.col("user_id") == top["user_id"][0]).sort("rank")
    assert first["score"].to_list() == sorted(first["score"].to_list(), reverse=True)


def test_index_scores_equal_model_scores(served_workdir: Workdir) -> None:
    model = load_current_model(served_workdir)
    top = Catalog(served_workdir.root).read_current("user_topk").head(50)
    expected = model.score(top["user_id"].to_list(), top["show_id"].to_list())
    np.testing.assert_allclose(top["score"].to_numpy(), expected, rtol=1e-4, atol=1e-4)


def test_recommendations_served_through_feast(served_workdir: Workdir) -> None:
    top = Catalog(served_workdir.root).read_current("user_topk")
    user = top["user_id"][0]
    store = feature_store(served_workdir.root)
    got = store.get_online_features(
        features=["user_recommendations:show_ids", "user_recommendations:model_version"],
        entity_rows=[{"user_id": user}],
    ).to_dict()
    assert (
        got["show_ids"][0]
        == top.filter(pl.col("user_id") == user).sort("rank")["show_id"].to_list()
    )


def test_index_refuses_another_model(served_workdir: Workdir) -> None:
    model = ModelManifest.read(served_workdir.root / "model")
    ok = load_index(
        served_workdir.root / "index",
        expect={"model_version": model.model_version, "data_snapshot": model.data_snapshot},
    )
    assert ok.manifest.model_version == model.model_version
    with pytest.raises(IndexMismatchError) as err:
        load_index(
            served_workdir.root / "index",
            expect={"model_version": "collaborative-other", "as_of": "2001-01-01"},
        )
    assert "model_version" in str(err.value) and "collaborative-other" in str(err.value)


# ---- publishing --------------------------------------------------------------------------
def _frame(n: int, tag: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "rank": [1] * n,
            "show_id": [f"s{i}" for i in range(n)],
            "score": [1.0] * n,
            "model_version": [tag] * n,
        }
    )


def test_killed_publish_leaves_previous_version_current(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    catalog.publish("user_topk", _frame(5, "v1"), model_version="v1")
    marker = tmp_path / "writing"
    code = (
        "import polars as pl, sys; from tvrec.jobs.catalog import Catalog; "
        "from pathlib import Path; "
        f"Catalog(Path({str(tmp_path)!r})).publish('user_topk', pl.DataFrame("
        "{'user_id': ['x'] * 9, 'rank': [1] * 9, 'show_id': ['y'] * 9, 'score': [0.0] * 9,"
        " 'model_version': ['v2'] * 9}), model_version='v2')"
    )
    env = {**os.environ, "TVREC_TEST_PUBLISH_PAUSE": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "publisher never reached the write"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    current = catalog.current("user_topk")
    assert current is not None and current.version == 1
    assert catalog.read_current("user_topk")["model_version"].unique().to_list() == ["v1"]
    assert list((tmp_path / "tables" / "user_topk").glob(".v*.tmp"))  # the half-written file
    catalog.publish("user_topk", _frame(3, "v3"), model_version="v3")  # next publish sweeps it
    assert not list((tmp_path / "tables" / "user_topk").glob(".v*.tmp"))
    assert catalog.current("user_topk").version == 2  # type: ignore[union-attr]


def test_failed_check_publishes_nothing(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    catalog.publish("user_topk", _frame(5, "v1"))

    def no_duplicates(df: pl.DataFrame) -> None:
        raise ValueError("duplicate ranks")

    with pytest.raises(ValueError):
        catalog.publish("user_topk", _frame(5, "v2"), checks=[no_duplicates])
    assert [v.version for v in catalog.versions("user_topk")] == [1]


def test_rollback_and_cli(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    for tag in ("a", "b", "c"):
        catalog.publish("user_topk", _frame(4, tag), model_version=tag)
    res = runner.invoke(app, ["publish", "--rollback", "2", "--workdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert catalog.current("user_topk").version == 2  # type: ignore[union-attr]
    assert catalog.read_current("user_topk")["model_version"][0] == "b"
    res = runner.invoke(app, ["publish", "--rollback", "9", "--workdir", str(tmp_path)])
    assert res.exit_code == 2 and "no version 9" in res.stderr
    res = runner.invoke(app, ["publish", "--list", "--json", "--workdir", str(tmp_path)])
    listed = json.loads(res.stdout)
    assert [(v["version"], v["current"]) for v in listed] == [(1, False), (2, True), (3, False)]
    out = tmp_path / "export.csv"
    res = runner.invoke(app, ["export", "user-topk", "--out", str(out), "--workdir", str(tmp_path)])
    assert res.exit_code == 0 and pl.read_csv(out)["model_version"][0] == "b"


def test_unknown_table_has_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no published"):
        Catalog(tmp_path).read_current("user_topk")


def test_served_model_is_as_of_the_feature_build(served_workdir: Workdir) -> None:
    """(Save/load round trips of every model: test_model_contract.py.)"""
    model = load_current_model(served_workdir)
    assert model.manifest is not None
    assert datetime.fromisoformat(model.manifest.as_of) <= datetime.fromisoformat(
        json.loads((served_workdir.features / "manifest.json").read_text())["as_of"]
    )


def test_nightly_run_records_and_refuses_overlap(world_dir: Path, tmp_path: Path) -> None:
    from tvrec.jobs.locks import run_lock

    work = tmp_path / "work"
    work.mkdir()
    with run_lock(work):  # another run holds the lock: refused at once, exit 2
        res = runner.invoke(app, ["run", "--data", str(world_dir), "--workdir", str(work)])
    assert res.exit_code == 2 and "already running" in res.stderr
    res = runner.invoke(
        app, ["run", "--data", str(world_dir), "--workdir", str(work), "-k", "5", "--json"]
    )
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)
    assert record["status"] == "succeeded" and record["counts"]["user_topk"] > 0
    runs = Catalog(work).runs()
    assert [r["status"] for r in runs] == ["succeeded"]
    assert json.loads(runs[0]["stages"])["train collaborative"] > 0
    res = runner.invoke(app, ["query", "--user", "u0001", "--workdir", str(work), "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["results"]) == 5
