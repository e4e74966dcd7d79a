"""The nightly precompute on the synthetic world: recommendations recover the planted taste
clusters and obey the filters; publishing is atomic, versioned and reversible; Feast serves
the current table; an index never serves a model it was not built from."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from tvrec.index import IndexMismatchError, load_index
from tvrec.jobs.catalog import Catalog
from tvrec.jobs.cli import app
from tvrec.jobs.release import list_releases, publish_release, require_release, stage_release
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
    model = ModelManifest.read(require_release(served_workdir.root).model_dir)
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
    release = require_release(served_workdir.root)
    model = ModelManifest.read(release.model_dir)
    ok = load_index(
        release.index_dir,
        expect={"model_version": model.model_version, "data_snapshot": model.data_snapshot},
    )
    assert ok.manifest.model_version == model.model_version
    with pytest.raises(IndexMismatchError) as err:
        load_index(
            release.index_dir,
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


def _release(root: Path, tag: str, checks: list | None = None) -> None:
    frame = _frame(4, tag)
    shows = pl.DataFrame({"show_id": frame["show_id"], "title": "t", "premiered": None})
    model = {"model_name": "m", "model_version": tag, "as_of": "2024-01-01T00:00:00+00:00"}
    publish_release(root, model=model, tables={"user_topk": frame}, shows=shows)


def test_failed_check_publishes_nothing(tmp_path: Path) -> None:
    _release(tmp_path, "v1")

    def no_duplicates(df: pl.DataFrame) -> None:
        raise ValueError("duplicate ranks")

    with pytest.raises(ValueError), stage_release(tmp_path) as stage:
        Catalog(tmp_path).add_version("user_topk", _frame(5, "v2"), checks=[no_duplicates])
        stage.add_table("never", None)  # type: ignore[arg-type]
    assert [v.version for v in Catalog(tmp_path).versions("user_topk")] == [1]
    assert [r.number for r in list_releases(tmp_path)] == [1]
    assert len(list((tmp_path / ".releases").iterdir())) == 1


def test_a_failed_release_leaves_the_work_directory_as_it_was(tmp_path: Path) -> None:
    """The first release failing leaves no `.releases` behind; a later one keeps the earlier."""
    from tvrec.jobs.release import RELEASES

    with pytest.raises(RuntimeError, match="broke"), stage_release(tmp_path):
        raise RuntimeError("broke")
    assert list(tmp_path.iterdir()) == []
    _release(tmp_path, "a")
    kept = sorted(p.name for p in (tmp_path / RELEASES).iterdir())
    with pytest.raises(RuntimeError, match="broke"), stage_release(tmp_path):
        raise RuntimeError("broke")
    assert sorted(p.name for p in (tmp_path / RELEASES).iterdir()) == kept
    assert require_release(tmp_path).number == 1


def test_rollback_and_cli(tmp_path: Path) -> None:
    for tag in ("a", "b", "c"):
        _release(tmp_path, tag)
    res = runner.invoke(app, ["publish", "--rollback", "2", "--workdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    catalog = Catalog(tmp_path)
    assert catalog.current("user_topk").version == 2  # type: ignore[union-attr]
    assert catalog.read_current("user_topk")["model_version"][0] == "b"
    res = runner.invoke(app, ["publish", "--rollback", "9", "--workdir", str(tmp_path)])
    assert res.exit_code == 2 and "no release 9" in res.stderr
    res = runner.invoke(app, ["publish", "--list", "--json", "--workdir", str(tmp_path)])
    listed = json.loads(res.stdout)
    assert [(r["number"], r["current"], r["model_version"]) for r in listed] == [
        (1, False, "a"),
        (2, True, "b"),
        (3, False, "c"),
    ]
    res = runner.invoke(app, ["publish", "--rollback", "0", "--workdir", str(tmp_path)])
    assert res.exit_code == 0 and require_release(tmp_path).number == 1  # 0: the previous
    out = tmp_path / "export.csv"
    res = runner.invoke(app, ["export", "user-topk", "--out", str(out), "--workdir", str(tmp_path)])
    assert res.exit_code == 0 and pl.read_csv(out)["model_version"][0] == "a"
    for bad, says in (
        (tmp_path / "no-such-dir" / "x.parquet", "no directory"),  # was a traceback
        (tmp_path / "export.txt", "use a .parquet or .csv"),
    ):
        args = ["export", "user-topk", "--out", str(bad), "--workdir", str(tmp_path)]
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and says in res.stderr, res.output
        assert not bad.exists()
    table = Catalog(tmp_path).current("user_topk").path  # type: ignore[union-attr]
    table.write_bytes(table.read_bytes()[:100])  # cut off: it was polars' ComputeError
    res = runner.invoke(app, ["export", "user-topk", "--out", str(out), "--workdir", str(tmp_path)])
    message = " ".join(res.stderr.split())
    assert res.exit_code == 2 and f"{table}: the published 'user_topk' table cannot" in message
    assert "Traceback" not in res.output and not list(tmp_path.glob(".export.csv*"))


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


def test_nightly_run_records_and_refuses_overlap(
    world_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tvrec.jobs import train as train_module
    from tvrec.jobs.locks import run_lock

    work = tmp_path / "work"
    work.mkdir()
    with run_lock(work):  # another run holds the lock: refused at once, exit 2
        res = runner.invoke(app, ["run", "--data", str(world_dir), "--workdir", str(work)])
    assert res.exit_code == 2 and "being written by another tvrec command" in res.stderr
    res = runner.invoke(
        app, ["run", "--data", str(world_dir), "--workdir", str(work), "-k", "5", "--json"]
    )
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)
    assert record["status"] == "succeeded" and record["counts"]["user_topk"] > 0
    # the wall time (rounded to 0.1 s): the stages one after another, and more
    assert record["seconds"] >= sum(record["stages"].values()) - 0.05
    assert record["metrics"]["index"] == {"type": "flat", "recall_at_5": None}  # exact
    runs = Catalog(work).runs()
    assert [r["status"] for r in runs] == ["succeeded"]
    assert json.loads(runs[0]["stages"])["train collaborative"] > 0
    res = runner.invoke(app, ["query", "--user", "u0001", "--workdir", str(work), "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["results"]) == 5
    served = require_release(work).number

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("trainer broke")

    # a run that fails after the features: recorded as failed with its error and the counts
    # of the stages before it; what is served stays
    monkeypatch.setattr(train_module, "train_model", broken)
    res = runner.invoke(app, ["run", "--workdir", str(work), "-k", "5"])
    assert res.exit_code != 0
    failed = Catalog(work).runs()[0]
    assert failed["status"] == "failed" and "trainer broke" in failed["error"]
    assert json.loads(failed["counts"])["features"] and require_release(work).number == served


def test_an_approximate_index_reports_its_recall(served_workdir: Workdir, tmp_path: Path) -> None:
    """Above `[index] exact_max` shows the factory builds HNSW, and the run says how much of
    exact search's top-k it returns, measured on sampled users' own queries."""
    import shutil

    from tvrec.jobs.recommend import recommend_stage
    from tvrec.pipelines.config import IndexSettings
    from tvrec.pipelines.progress import StageLog

    root = tmp_path / "work"
    shutil.copytree(served_workdir.root, root, symlinks=True)
    settings = IndexSettings(exact_max=10, ef_search=16, recall_queries=100)
    summary = recommend_stage(
        Workdir(root), k=20, log=StageLog(quiet=True), model_name="collaborative", index=settings
    )
    assert (summary.index_type, summary.recall_depth) == ("hnsw", 20)
    assert summary.recall is not None and 0.9 <= summary.recall <= 1.0
    assert require_release(root).number == require_release(served_workdir.root).number + 1
