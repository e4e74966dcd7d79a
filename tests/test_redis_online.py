"""Feast's online store on a real Redis (a local redis-server per module): the same values
as the embedded SQLite store, the switch a user makes (`tvrec features config --init
--redis`, then `tvrec run`), and a Redis that goes away mid-run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from engines import RedisServer
from typer.testing import CliRunner

from tvrec.jobs.catalog import Catalog
from tvrec.jobs.cli import app
from tvrec.jobs.release import require_release
from tvrec.pipelines.errors import EngineError
from tvrec.pipelines.ingest import read_lake
from tvrec.pipelines.workdir import Workdir

pytestmark = pytest.mark.redis
runner = CliRunner()


@pytest.fixture(scope="module")
def redis_workdir(
    served_workdir: Workdir, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Workdir:
    """A copy of the served work directory switched to Redis: features built and the same
    model's recommendations published again through it."""
    root = tmp_path_factory.mktemp("redis-work") / "work"
    shutil.copytree(served_workdir.root, root, symlinks=True)
    _ok("features", "config", "--init", "--redis", redis.address, "--workdir", str(root))
    _ok("features", "build", "--workdir", str(root))
    _ok("recommend", "--model", "collaborative", "-k", "20", "--workdir", str(root))
    return Workdir(root)


def _ok(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def _features(root: Path, flag: str, key: str) -> dict:
    return json.loads(_ok("features", "get", flag, key, "--workdir", str(root), "--json"))


def _online_recs(root: Path, users: list[str]) -> dict:
    from tvrec.pipelines.store import feature_store

    refs = ["user_recommendations:show_ids", "user_recommendations:scores"]
    rows = [{"user_id": u} for u in users]
    return feature_store(root).get_online_features(features=refs, entity_rows=rows).to_dict()


def test_config_init_points_the_online_store_at_redis(
    redis_workdir: Workdir, redis: RedisServer
) -> None:
    info = json.loads(_ok("features", "config", "--workdir", str(redis_workdir.root), "--json"))
    assert info["feature_store_yaml"] == str(redis_workdir.root / "feature_store.yaml")
    assert (info["online_store"], info["online_endpoint"]) == ("redis", redis.address)
    assert not (redis_workdir.root / "feast" / "online_store.db.new").exists()
    res = runner.invoke(app, ["features", "config", "--init", "--workdir", str(redis_workdir.root)])
    assert res.exit_code == 2 and "exists" in res.stderr  # never overwrites the user's copy


def test_redis_reads_back_what_sqlite_serves(
    served_workdir: Workdir, redis_workdir: Workdir
) -> None:
    lake = read_lake(served_workdir)
    users = lake.events["user_id"].unique().sort().head(5).to_list()
    shows = lake.events["show_id"].unique().sort().head(5).to_list()
    for flag, keys in (("--user", users), ("--show", shows)):
        for key in keys:
            assert _features(redis_workdir.root, flag, key) == _features(
                served_workdir.root, flag, key
            )
    got, want = (_online_recs(w.root, users) for w in (redis_workdir, served_workdir))
    assert got["show_ids"] == want["show_ids"] and all(len(ids) == 20 for ids in got["show_ids"])
    for mine, theirs in zip(got["scores"], want["scores"], strict=True):
        assert mine == pytest.approx(theirs)
    top = Catalog(redis_workdir.root).read_current("user_topk")
    assert (
        got["show_ids"][0]
        == top.filter(pl.col("user_id") == users[0]).sort("rank")["show_id"].to_list()
    )


def test_redis_gone_mid_run_keeps_the_published_release(
    redis_workdir: Workdir, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tvrec.jobs.recommend import recommend_stage
    from tvrec.pipelines import progress
    from tvrec.pipelines.progress import StageLog
    from tvrec.pipelines.store import feature_store

    root = redis_workdir.root
    before = require_release(root)
    releases = sorted(p.name for p in (root / ".releases").iterdir())
    real_pause = progress.pause_point

    def redis_dies(name: str) -> None:  # the real server stops as the online write begins
        real_pause(name)
        if name == "before:feast: serving views":
            redis.stop()

    monkeypatch.setattr(progress, "pause_point", redis_dies)
    try:
        with pytest.raises(EngineError, match=f"redis at {redis.address} went away"):
            recommend_stage(
                redis_workdir, k=20, log=StageLog(quiet=True), model_name="collaborative"
            )
        assert require_release(root).number == before.number  # still the one published
        assert sorted(p.name for p in (root / ".releases").iterdir()) == releases
        view = feature_store(root).get_feature_view("user_recommendations")
        assert view.batch_source.path == str(root / "release" / "user_recommendations.parquet")
        # with Redis down before the run starts: refused before any work, exit status 3
        res = runner.invoke(app, ["recommend", "--model", "collaborative", "-w", str(root)])
        assert res.exit_code == 3 and "cannot connect" in res.stderr
        res = runner.invoke(app, ["features", "get", "--user", "u0001", "-w", str(root)])
        assert res.exit_code == 3 and redis.address in res.stderr
        runs = len(Catalog(root).runs())
        res = runner.invoke(app, ["run", "-w", str(root)])  # the whole job: refused at once too
        assert res.exit_code == 3 and "cannot connect" in res.stderr
        assert len(Catalog(root).runs()) == runs and require_release(root).number == before.number
    finally:
        monkeypatch.undo()
        redis.start()  # the same port, empty: a rerun loads it again
    _ok("recommend", "--model", "collaborative", "-k", "20", "--workdir", str(root))
    assert require_release(root).number == before.number + 1
    user = read_lake(redis_workdir).events["user_id"][0]
    assert len(_online_recs(root, [user])["show_ids"][0]) == 20
