"""Feast's Ray offline store and Ray materialization engine over tvrec's Parquet feature
tables, with Redis online: the switch a user makes (`tvrec features config --init --ray local
--redis HOST:PORT`, then `tvrec run`) gives the same training rows, online values and
published tables as the embedded default. A local Ray runtime (2 CPUs) and a local
redis-server, both real."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import polars as pl
import pytest
from engines import RedisServer, require_module
from typer.testing import CliRunner

from tvrec.jobs.catalog import Catalog
from tvrec.jobs.cli import app
from tvrec.jobs.release import require_release
from tvrec.pipelines.config import MODEL_ENV
from tvrec.pipelines.ingest import read_lake
from tvrec.pipelines.training import training_set
from tvrec.pipelines.workdir import Workdir

pytestmark = pytest.mark.ray
runner = CliRunner()


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[None]:
    ray = require_module("ray", "pip install -e '.[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def switched(
    served_workdir: Workdir,
    redis: RedisServer,
    ray_runtime: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Workdir:
    """A copy of the served work directory switched to Ray + Redis as docs/scale-out.md says,
    then `tvrec run` again: features through Ray into Redis, the users' top-k in two user
    shards on Ray tasks, the served model published anew (`[models] train = []`: what is
    compared is the engines' work, not a second training)."""
    root = tmp_path_factory.mktemp("ray-work") / "work"
    shutil.copytree(served_workdir.root, root, symlinks=True)
    args = ["--init", "--ray", "local", "--redis", redis.address]
    _ok("features", "config", *args, "--workdir", str(root))
    (root / "tvrec.toml").write_text(
        '[models]\ntrain = []\nserve = "collaborative"\nk = 20\n'
        '[recommend]\nshards = 2\nengine = "ray"\n'
    )
    with pytest.MonkeyPatch.context() as mp:
        for env in MODEL_ENV.values():  # the session's collaborative-only override
            mp.delenv(env, raising=False)
        record = json.loads(_ok("run", "--workdir", str(root), "--json"))
    assert record["status"] == "succeeded"
    assert record["metrics"]["recommend_shards"] == 2
    return Workdir(root)


def _ok(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def test_config_names_ray_and_redis(switched: Workdir, redis: RedisServer) -> None:
    info = json.loads(_ok("features", "config", "--workdir", str(switched.root), "--json"))
    assert info["offline_store"] == "ray" and info["batch_engine"] == "ray.engine"
    assert (info["online_store"], info["online_endpoint"]) == ("redis", redis.address)


@pytest.mark.parametrize("service", ["collaborative_v1", "temporal_v1"])
def test_ray_training_sets_are_the_embedded_stores_rows(
    switched: Workdir, served_workdir: Workdir, service: str
) -> None:
    keys = ["user_id", "show_id", "event_timestamp", "label"]
    frames = [
        pl.from_pandas(training_set(w, service, negatives=1, limit=300)).sort(keys)
        for w in (switched, served_workdir)
    ]
    ray_rows, duckdb_rows = frames
    assert ray_rows.height == duckdb_rows.height >= 500
    assert ray_rows.columns == duckdb_rows.columns
    assert ray_rows.equals(duckdb_rows.select(ray_rows.columns))


def test_rerun_on_ray_and_redis_serves_the_same(switched: Workdir, served_workdir: Workdir) -> None:
    lake = read_lake(served_workdir)
    for flag, column in (("--user", "user_id"), ("--show", "show_id")):
        for key in lake.events[column].unique().sort().head(4).to_list():
            got, want = (
                json.loads(_ok("features", "get", flag, key, "--workdir", str(w.root), "--json"))
                for w in (switched, served_workdir)
            )
            assert got == want
    for table in ("user_topk", "show_similar"):
        got, want = (
            Catalog(w.root).read_current(table).drop("run_id", strict=False)
            for w in (switched, served_workdir)
        )
        assert got.equals(want.select(got.columns)), table
    assert require_release(switched.root).number == require_release(served_workdir.root).number + 1
    user = lake.events["user_id"][0]
    query = json.loads(_ok("query", "--user", user, "-k", "20", "-w", str(switched.root), "--json"))
    online = _online_recs(switched, user)
    assert online == [r["show_id"] for r in query["results"]]


def _online_recs(wd: Workdir, user: str) -> list[str]:
    from tvrec.pipelines.store import feature_store

    resp = feature_store(wd.root).get_online_features(
        features=["user_recommendations:show_ids"], entity_rows=[{"user_id": user}]
    )
    return resp.to_dict()["show_ids"][0]
