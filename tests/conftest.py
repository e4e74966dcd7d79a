"""Shared fixtures: the synthetic TV world is generated once per session and copied per test
(sentence-transformers' conftest does the same with its tiny model)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from engines import RedisServer, redis_server
from real_data import SplitRun, split_run
from sched_procs import Proc, launcher

from tvrec.pipelines.config import MODEL_ENV, Settings
from tvrec.pipelines.synthetic import PlantedTruth, WorldConfig, write_world
from tvrec.pipelines.workdir import Workdir

if TYPE_CHECKING:
    from tvrec.pipelines.model_inputs import TrainingData


DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n 2`: one core per worker, before torch
    for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_threads, "1")


def pytest_configure(config: pytest.Config) -> None:
    """Under CI=true the real datasets must be there: a missing ../shared/datasets fails the
    run instead of letting the real-data tests skip."""
    if os.environ.get("CI", "").lower() == "true" and not DATASETS.is_dir():
        pytest.exit(f"CI=true but the shared datasets are missing: {DATASETS}", returncode=1)
    # The nightly job's default trains three models and serves the ensemble: minutes a run.
    # Tests of the job's plumbing run it with the collaborative model alone (seconds); the
    # default itself is tested with `default_models` (tests/test_ensemble.py, the demo).
    os.environ.setdefault(MODEL_ENV["train"], "collaborative")
    os.environ.setdefault(MODEL_ENV["serve"], "collaborative")


@pytest.fixture()
def default_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The nightly job's own model defaults (not this session's collaborative-only ones)."""
    for env in MODEL_ENV.values():
        monkeypatch.delenv(env, raising=False)


@pytest.fixture(scope="session")
def world_config() -> WorldConfig:
    return WorldConfig.small()


@pytest.fixture(scope="session")
def _world_master(
    tmp_path_factory: pytest.TempPathFactory, world_config: WorldConfig
) -> tuple[Path, PlantedTruth]:
    directory = tmp_path_factory.mktemp("world") / "synthetic"
    truth = write_world(directory, world_config)
    return directory, truth


@pytest.fixture()
def world_dir(_world_master: tuple[Path, PlantedTruth], tmp_path: Path) -> Path:
    """A private copy of the small synthetic world (contract layout)."""
    dest = tmp_path / "synthetic"
    shutil.copytree(_world_master[0], dest)
    return dest


@pytest.fixture(scope="session")
def truth(_world_master: tuple[Path, PlantedTruth]) -> PlantedTruth:
    return _world_master[1]


@pytest.fixture(scope="session")
def built_workdir(
    tmp_path_factory: pytest.TempPathFactory, _world_master: tuple[Path, PlantedTruth]
) -> Workdir:
    """A work directory with the small world ingested and features built (read-only use)."""
    from tvrec.pipelines.build import build_features
    from tvrec.pipelines.ingest import ingest
    from tvrec.pipelines.progress import StageLog

    wd = Workdir(tmp_path_factory.mktemp("built") / "work")
    ingest(_world_master[0], "contract", wd)
    build_features(wd, Settings.load(wd.root), log=StageLog(quiet=True))
    return wd


@pytest.fixture(scope="session")
def served_workdir(built_workdir: Workdir) -> Workdir:
    """`built_workdir` after training the collaborative model and publishing top-k tables."""
    from tvrec.jobs.recommend import recommend_stage
    from tvrec.jobs.train import train_stage
    from tvrec.pipelines.progress import StageLog

    settings = Settings.load(built_workdir.root)
    log = StageLog(quiet=True)
    train_stage(built_workdir, settings, "collaborative", log=log)
    recommend_stage(built_workdir, k=20, log=log, model_name="collaborative")
    return built_workdir


@pytest.fixture(scope="session")
def inputs_of(built_workdir: Workdir) -> Callable[[str], TrainingData]:
    """`inputs_of(name)`: what registered model `name` trains on in `built_workdir` (built
    once per session), without a checkpoint directory: `training_data` would point it into
    the shared work directory, where one test's checkpoint would be resumed by another.
    Tests that checkpoint give their own (`dataclasses.replace(data, checkpoint_dir=...)`)."""
    from tvrec.jobs.train import training_data
    from tvrec.models.registry import model_class

    built: dict[str, TrainingData] = {}

    def inputs(name: str) -> TrainingData:
        if name not in built:
            data = training_data(built_workdir, model_class(name))
            built[name] = dataclasses.replace(data, checkpoint_dir=None)
        return built[name]

    return inputs


@pytest.fixture()
def launch(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """`launch(*args)`: a `tvrec schedule` process (tests/sched_procs.py), killed at the end
    if still running."""
    start, cleanup = launcher(tmp_path)
    yield start
    cleanup()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the test module's own on 127.0.0.1 (tests/engines.py)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """The test models are small: on a shared 2-core machine one intra-op thread is several
    times faster than two fighting other jobs for the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def movielens_split(tmp_path: Path) -> SplitRun:
    """MovieLens-100k's temporal split with a fresh `SplitPipeline` (slow tests); skipped when
    the shared datasets are absent (under CI=true their absence already failed the run)."""
    return split_run(DATASETS / "movielens-100k", "movielens-100k", tmp_path)
