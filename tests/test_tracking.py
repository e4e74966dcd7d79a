"""Experiment tracking of `tvrec train` (jobs/tracking.py): an MLflow run and an offline W&B run
hold the model's params, per-epoch curves and tags, read back in each backend's own format;
`none` writes nothing; bad settings stop before training; a tracking failure never costs the
model. Also: the loss-curve plot beside each published model and the curves in the run record."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from typer.testing import CliRunner

from tvrec.jobs import train as train_module
from tvrec.jobs.cli import app
from tvrec.jobs.nightly import _stage_metrics
from tvrec.jobs.tracking import (
    TRAINING_PLOT,
    NullTracker,
    Tracker,
    TrainingRun,
    _redacted,
    build_tracker,
)
from tvrec.jobs.train import model_class
from tvrec.models.base import ModelManifest, Recommender, TrainingData
from tvrec.pipelines.config import TrackingSettings
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.workdir import Workdir

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A few epochs: these tests are about what gets logged, not about the model.
FAST = "[models.collaborative]\nepochs = 3\n"
MLFLOW = '[tracking]\nbackend = "mlflow"\n'


@contextlib.contextmanager
def _environ_kept() -> Iterator[None]:
    """The trackers set their no-telemetry variables process-wide: undo them afterwards."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _clean_environ() -> Iterator[None]:
    with _environ_kept():
        yield


def _train(work: Path) -> ModelManifest:
    res = runner.invoke(app, ["train", "--stage", "collaborative", "--workdir", str(work)])
    assert res.exit_code == 0, res.output
    return ModelManifest.read(work / "models" / "collaborative")


@dataclass(frozen=True)
class Trained:
    work: Path
    manifest: ModelManifest
    data: TrainingData  # its Feast training set, reused by the quicker tests below


@pytest.fixture(scope="module")
def trained(built_workdir: Workdir, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The collaborative model trained end to end with `backend = "mlflow"`, from an unrelated
    current directory (`<root>/cwd`, which must stay empty)."""
    root = tmp_path_factory.mktemp("tracking")
    work = root / "work"
    shutil.copytree(built_workdir.root, work, symlinks=True)
    (work / "tvrec.toml").write_text(MLFLOW + FAST, encoding="utf-8")
    (root / "cwd").mkdir()
    seen: list[TrainingData] = []
    real = train_module.training_data

    def recorded(
        wd: Workdir, model: type[Recommender] | Recommender, settings: object = None
    ) -> TrainingData:
        seen.append(real(wd, model, settings))  # type: ignore[arg-type]
        return seen[-1]

    with _environ_kept(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "training_data", recorded)
        mp.chdir(root / "cwd")
        manifest = _train(work)
    return Trained(work, manifest, seen[-1])


@pytest.fixture()
def train_quick(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, str], Path]:
    """`tvrec train` into a fresh work directory with this `tvrec.toml`, on the training set
    that `trained` built (Feast takes most of a training's time), checkpointing into the
    fresh work directory as `tvrec train` would."""

    def inputs(
        wd: Workdir, model: type[Recommender] | Recommender, settings: object = None
    ) -> TrainingData:
        checkpoints = wd.root / "checkpoints" / model.name
        return dataclasses.replace(trained.data, checkpoint_dir=checkpoints)

    monkeypatch.setattr(train_module, "training_data", inputs)

    def run(work: Path, toml: str) -> Path:
        work.mkdir(parents=True, exist_ok=True)
        (work / "tvrec.toml").write_text(toml + FAST, encoding="utf-8")
        _train(work)
        return work

    return run


# ---- MLflow ------------------------------------------------------------------------------------
def test_mlflow_run_holds_params_curves_and_tags(trained: Trained) -> None:
    work, manifest = trained.work, trained.manifest
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # before this test's own import of mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tvrec")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == manifest.model_version

    losses = manifest.metrics["train_loss"]
    history = sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)
    assert len(losses) == 3 and [m.step for m in history] == [0, 1, 2]
    assert [m.value for m in history] == losses
    assert run.data.metrics["n_users"] == manifest.metrics["n_users"]

    fields = set(model_class("collaborative").config_class.model_fields)
    assert set(run.data.params) == fields
    assert run.data.params == {k: str(v) for k, v in manifest.config.items()}
    assert run.data.params["epochs"] == "3"

    tags = run.data.tags
    assert tags["model_version"] == manifest.model_version
    assert tags["model_name"] == "collaborative" and tags["as_of"] == manifest.as_of
    assert tags["data_snapshot"] == manifest.data_snapshot
    assert tags["hardware_profile"] == manifest.metrics["profile"]

    # the loss-curve plot is the run's artifact, kept in the work directory as well
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == [TRAINING_PLOT]
    assert Path(urlparse(experiment.artifact_location).path).is_relative_to(work)


def test_tracking_writes_nothing_outside_the_workdir(trained: Trained) -> None:
    assert not any((trained.work.parent / "cwd").iterdir())  # no ./mlruns, ./mlflow.db, ...
    assert (trained.work / "mlflow.db").is_file()


def test_training_plot_beside_the_model(trained: Trained) -> None:
    plot = trained.work / "models" / "collaborative" / TRAINING_PLOT
    assert plot.read_bytes()[:8] == PNG_MAGIC and plot.stat().st_size > 5_000


def test_run_record_keeps_whole_curves(trained: Trained) -> None:
    manifest = trained.manifest
    record = json.loads(json.dumps(_stage_metrics(manifest)))  # as the catalogue stores it
    assert record["model_version"] == manifest.model_version
    assert record["curves"] == {
        "train_loss": manifest.metrics["train_loss"],
        "epoch_seconds": manifest.metrics["epoch_seconds"],  # every trainer times its epochs
    }
    assert len(record["curves"]["epoch_seconds"]) == len(record["curves"]["train_loss"])
    assert record["train_loss"] == manifest.metrics["train_loss"][-1]  # last values stay
    assert record["n_users"] == manifest.metrics["n_users"]


def test_tracking_failure_keeps_the_trained_model(
    train_quick: Callable[[Path, str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Tracker):
        name = "broken"

        def _write(self, run: TrainingRun) -> None:
            raise RuntimeError("store went away")

    monkeypatch.setattr(train_module, "build_tracker", lambda settings, workdir: Broken())
    with caplog.at_level(logging.WARNING, logger="tvrec.jobs.tracking"):
        work = train_quick(tmp_path / "work", "")
    model = work / "models" / "collaborative"
    assert ModelManifest.read(model).metrics["train_loss"] and (model / TRAINING_PLOT).is_file()
    assert "store went away" in caplog.text and "published all the same" in caplog.text


# ---- off by default ----------------------------------------------------------------------------
def test_backend_none_writes_no_tracking_files(
    train_quick: Callable[[Path, str], Path], tmp_path: Path
) -> None:
    assert isinstance(build_tracker(TrackingSettings(), tmp_path), NullTracker)
    assert not any(tmp_path.iterdir())
    work = train_quick(tmp_path / "work", "")  # no [tracking] section: off
    # (`tvrec train` removes its checkpoints once the model is published; run.lock: the
    # writer lock it held, left empty)
    assert {p.name for p in work.iterdir()} == {"tvrec.toml", "models", ".versions", "run.lock"}
    assert (work / "models" / "collaborative" / TRAINING_PLOT).is_file()


# ---- bad settings stop before training --------------------------------------------------------
def test_unknown_backend_is_refused_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "tvrec.toml").write_text('[tracking]\nbackend = "comet"\n', encoding="utf-8")
    res = runner.invoke(app, ["train", "--workdir", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert "tracking.backend" in res.output and "tvrec.toml" in res.output


@pytest.mark.parametrize("backend", ["mlflow", "wandb"])
def test_backend_not_installed_names_the_extra(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == backend or m.startswith(f"{backend}.")]:
        monkeypatch.setitem(sys.modules, name, None)  # imported by an earlier test: hide it
    monkeypatch.setitem(sys.modules, backend, None)  # `import <backend>` fails as if absent
    (tmp_path / "tvrec.toml").write_text(f'[tracking]\nbackend = "{backend}"\n', encoding="utf-8")
    res = runner.invoke(app, ["train", "--workdir", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert "not installed" in res.output and f"pip install 'tvrec[{backend}]'" in res.output
    assert not (tmp_path / "models").exists()  # refused before any training
    with pytest.raises(ConfigError, match=re.escape(f"pip install 'tvrec[{backend}]'")):
        build_tracker(TrackingSettings(backend=backend), tmp_path)  # type: ignore[arg-type]


def test_unusable_mlflow_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a-file").touch()  # the store's directory cannot be made
    uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    with pytest.raises(ConfigError, match=r"tracking\.uri .*cannot open the MLflow store"):
        build_tracker(TrackingSettings(backend="mlflow", uri=uri), tmp_path)


def test_store_errors_hide_database_passwords() -> None:
    assert (
        _redacted("postgresql://bob:s3:cret@db:5432/mlflow")
        == "postgresql://bob:***@db:5432/mlflow"
    )
    assert _redacted("sqlite:////srv/mlflow.db") == "sqlite:////srv/mlflow.db"


@pytest.mark.parametrize("backend", ["none", "wandb"])
def test_uri_is_an_mlflow_setting(backend: str, tmp_path: Path) -> None:
    settings = TrackingSettings(backend=backend, uri="sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"tracking\.uri is an MLflow setting"):
        build_tracker(settings, tmp_path)


# ---- W&B, offline ------------------------------------------------------------------------------
def _wandb_records(path: Path) -> Iterator[bytes]:
    """Records of a W&B transaction log (`run-*.wandb`): a 7-byte header, then LevelDB's log
    format (32 KiB blocks of chunks, each with a 7-byte header: crc, length, type)."""
    data, block, pos, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a FULL chunk, or the LAST of a split record
            yield pending
            pending = b""


def _wandb_history(path: Path) -> dict[str, list[float]]:
    from wandb.proto import wandb_internal_pb2

    series: dict[str, list[float]] = {}
    for raw in _wandb_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") != "history":
            continue
        for item in record.history.item:
            key = item.nested_key[0] if item.nested_key else item.key
            series.setdefault(key, []).append(json.loads(item.value_json))
    return series


def test_wandb_offline_run_under_the_workdir(
    train_quick: Callable[[Path, str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"  # W&B must not write its cache or settings into $HOME either
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    work = train_quick(tmp_path / "work", '[tracking]\nbackend = "wandb"\n')
    manifest = ModelManifest.read(work / "models" / "collaborative")
    (log,) = (work / "wandb").glob("offline-run-*/run-*.wandb")
    assert _wandb_history(log)["train_loss"] == manifest.metrics["train_loss"]
    assert not any(home.iterdir())
