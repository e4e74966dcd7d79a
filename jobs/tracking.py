"""Experiment tracking of `tvrec train`: optional, local, and off by default.

    [tracking]
    backend = "mlflow"      # or "wandb", or "none" (the default)
    uri = "sqlite:///..."   # MLflow only; default: <workdir>/mlflow.db
    experiment = "tvrec"    # MLflow experiment / W&B project

Each trained model becomes one tracked run: its hyper-parameters as params, each per-epoch
curve of its manifest as a step series, its final scalars, and tags that tie it to its data
(model version, as-of time, data snapshot, hardware profile). Neither backend needs an
account or phones home: MLflow writes a SQLite store in the work directory with its telemetry
off, and W&B runs offline under <workdir>/wandb (`wandb sync` uploads them later, by hand).

The backend is picked once, by `build_tracker`, before training: a backend that is asked for
but not installed, or a store that cannot be opened, fails before any work. Logging happens
after the model is published, and a failure there only warns: the trained model is kept.

Also here: `plot_training`, the loss-curve picture written beside each published model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tvrec.models.base import ModelManifest
from tvrec.pipelines.config import TrackingSettings
from tvrec.pipelines.errors import ConfigError

log = logging.getLogger(__name__)

TRAINING_PLOT = "training.png"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
WANDB_DIR = "wandb"

# MLflow's limits per log_batch call.
_MAX_BATCH_METRICS = 1000
_MAX_BATCH_PARAMS = 100


# ---- what a training run logs -----------------------------------------------------------------
def _number(value: Any) -> float | None:
    """`value` as a float, or None where it is no number (None, text, NaN from a failed epoch)."""
    if isinstance(value, bool | int | float) and not (
        isinstance(value, float) and math.isnan(value)
    ):
        return float(value)
    return None


def curves(metrics: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The per-epoch curves of a manifest's metrics: every value that is a list."""
    return {k: list(v) for k, v in metrics.items() if isinstance(v, list)}


@dataclass(frozen=True)
class TrainingRun:
    """One trained model as a tracker sees it."""

    name: str  # the model version
    params: dict[str, Any]
    curves: dict[str, list[Any]]  # key -> value per epoch (step = epoch index)
    scalars: dict[str, float]  # final numeric values (n_users, ...)
    tags: dict[str, str]
    artifacts: tuple[Path, ...] = field(default=())

    @classmethod
    def of(
        cls,
        manifest: ModelManifest,
        params: Mapping[str, Any],
        profile: str,
        artifacts: Sequence[Path] = (),
    ) -> TrainingRun:
        """The run of `manifest`, trained with hyper-parameters `params` on `profile`."""
        scalars: dict[str, float] = {}
        tags = {
            "model_name": manifest.model_name,
            "model_version": manifest.model_version,
            "feature_service": manifest.feature_service,
            "as_of": manifest.as_of,
            "data_snapshot": manifest.data_snapshot,
            "hardware_profile": profile,
        }
        for key, value in manifest.metrics.items():
            if isinstance(value, list):
                continue
            number = _number(value)
            if number is not None:
                scalars[key] = number
            elif isinstance(value, str):
                tags.setdefault(key, value)  # text scalars (profile): tags, never over the above
        return cls(
            name=manifest.model_version,
            params=dict(params),
            curves=curves(manifest.metrics),
            scalars=scalars,
            tags=tags,
            artifacts=tuple(p for p in artifacts if p.exists()),
        )


# ---- trackers --------------------------------------------------------------------------------
class Tracker(ABC):
    """Where training runs are logged; built by `build_tracker`."""

    name: str = "none"
    enabled: bool = True

    def log_training(self, run: TrainingRun) -> bool:
        """Log `run`; True if it was logged. Never raises: the model is already published."""
        try:
            self._write(run)
        except Exception as exc:
            log.warning(
                "experiment tracking (%s) failed for %s; the model is published all the same: %s",
                self.name,
                run.name,
                exc,
            )
            return False
        return True

    @abstractmethod
    def _write(self, run: TrainingRun) -> None:
        """Log `run` to the backend (may raise)."""


class NullTracker(Tracker):
    """`backend = "none"`: nothing is logged and nothing is written."""

    name = "none"
    enabled = False

    def _write(self, run: TrainingRun) -> None:
        return None


def _redacted(uri: str) -> str:
    """`uri` without the password of a database URI (postgresql://user:secret@host/db)."""
    return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", uri)


def _not_installed(backend: str) -> ConfigError:
    return ConfigError(
        f"tracking.backend = {backend!r} needs {backend}, which is not installed: install "
        f"tvrec's {backend!r} extra, pip install 'tvrec[{backend}]' "
        '(or set tracking.backend = "none")'
    )


class MlflowTracker(Tracker):
    """An MLflow store: by default a SQLite file in the work directory, with no server."""

    name = "mlflow"

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None) -> None:
        # Telemetry off before mlflow is first imported (MLflow reads DO_NOT_TRACK as "true").
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        os.environ["DO_NOT_TRACK"] = "true"
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _not_installed("mlflow") from None
        self.uri = uri
        try:  # open the store now, so that a bad URI fails before training
            self._client = MlflowClient(tracking_uri=uri)
            self.experiment_id = self._experiment(experiment, artifact_root)
        except Exception as exc:
            raise ConfigError(
                f"tracking.uri {_redacted(uri)!r}: cannot open the MLflow store: {exc}"
            ) from None

    def _experiment(self, name: str, artifact_root: Path | None) -> str:
        found = self._client.get_experiment_by_name(name)
        if found is None:
            location = (artifact_root / name).as_uri() if artifact_root else None
            return self._client.create_experiment(name, artifact_location=location)
        if found.lifecycle_stage == "deleted":  # deleted in the UI: bring it back, not fail
            self._client.restore_experiment(found.experiment_id)
        return found.experiment_id

    def _write(self, run: TrainingRun) -> None:
        from mlflow.entities import Metric, Param

        client = self._client
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, number, now, step)
            for key, values in run.curves.items()
            for step, value in enumerate(values)
            if (number := _number(value)) is not None
        ]
        metrics += [Metric(key, value, now, 0) for key, value in run.scalars.items()]
        params = [Param(key, str(value)) for key, value in run.params.items()]
        created = client.create_run(self.experiment_id, run_name=run.name, tags=run.tags)
        run_id = created.info.run_id
        try:
            for i in range(0, len(params), _MAX_BATCH_PARAMS):
                client.log_batch(run_id, params=params[i : i + _MAX_BATCH_PARAMS])
            for i in range(0, len(metrics), _MAX_BATCH_METRICS):
                client.log_batch(run_id, metrics=metrics[i : i + _MAX_BATCH_METRICS])
            for path in run.artifacts:
                client.log_artifact(run_id, str(path))
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED")


class WandbTracker(Tracker):
    """Weights & Biases in offline mode: each run is a folder `<workdir>/wandb/offline-run-*`
    (`wandb sync` uploads one, by hand); nothing is sent."""

    name = "wandb"

    def __init__(self, workdir: Path, project: str) -> None:
        self.workdir = workdir
        self.directory = workdir / WANDB_DIR  # where wandb puts its runs, under its `dir`
        self.project = project
        # Offline, quiet, no error reports, and every W&B directory inside the work directory
        # (its service process inherits these), all before wandb is first imported.
        os.environ.update(
            {
                "WANDB_MODE": "offline",
                "WANDB_SILENT": "true",
                "WANDB_ERROR_REPORTING": "false",
                "WANDB_DIR": str(workdir),
                "WANDB_CACHE_DIR": str(self.directory / ".cache"),
                "WANDB_CONFIG_DIR": str(self.directory / ".config"),
                "WANDB_DATA_DIR": str(self.directory / ".data"),
                "WANDB_ARTIFACT_DIR": str(self.directory / ".artifacts"),
            }
        )
        try:
            import wandb
        except ImportError:
            raise _not_installed("wandb") from None
        self._wandb = wandb
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the W&B directory {self.directory}: {exc}") from None

    def _write(self, run: TrainingRun) -> None:
        wandb = self._wandb
        settings = wandb.Settings(
            mode="offline",
            silent=True,
            console="off",  # leave stdout alone: `tvrec train --json` prints there
            disable_git=True,
            save_code=False,
            x_disable_stats=True,  # no system-metrics sampler for a run logged after the fact
        )
        config = json.loads(json.dumps(run.params, default=str)) | {"tvrec": run.tags}
        with wandb.init(
            project=self.project,
            name=run.name,
            group=run.tags["model_name"],
            job_type="train",
            dir=str(self.workdir),
            config=config,
            tags=[run.tags["model_name"], run.tags["hardware_profile"]],
            settings=settings,
        ) as tracked:
            epochs = max((len(v) for v in run.curves.values()), default=0)
            for step in range(epochs):
                row = {
                    key: number
                    for key, values in run.curves.items()
                    if step < len(values) and (number := _number(values[step])) is not None
                }
                tracked.log(row, step=step)
            tracked.summary.update(run.scalars)


def build_tracker(settings: TrackingSettings, workdir: Path) -> Tracker:
    """The tracker of `[tracking]`; raises ConfigError for one that cannot work."""
    if settings.backend != "mlflow" and settings.uri is not None:
        raise ConfigError(
            f"tracking.uri is an MLflow setting, but tracking.backend = {settings.backend!r}"
        )
    if settings.backend == "none":
        return NullTracker()
    if settings.backend == "mlflow":
        root = Path(workdir).resolve()
        uri = settings.uri or f"sqlite:///{root / MLFLOW_DB}"
        # A local store keeps its artifacts in the work directory too, not in the current one.
        local = urlparse(uri).scheme in ("sqlite", "file", "")
        artifacts = root / MLFLOW_ARTIFACTS if local else None
        return MlflowTracker(uri, settings.experiment, artifacts)
    if settings.backend == "wandb":
        return WandbTracker(Path(workdir).resolve(), settings.experiment)
    raise ConfigError(f"unknown tracking.backend {settings.backend!r}")  # pydantic stops this


# ---- loss-curve plot --------------------------------------------------------------------------
def plot_training(manifest: ModelManifest, path: Path) -> bool:
    """Write each per-epoch curve of `manifest` to `path` (PNG), one panel per curve.

    True if written; False where there is no curve. A failure only warns: the picture must
    never cost the model it describes."""
    series = {k: v for k, v in curves(manifest.metrics).items() if v}
    if not series:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(
            len(series), 1, figsize=(6.4, 2.2 * len(series) + 0.6), sharex=True, squeeze=False
        )
        try:
            for ax, (key, values) in zip(axes[:, 0], series.items(), strict=True):
                ys = [math.nan if (n := _number(v)) is None else n for v in values]
                ax.plot(range(1, len(ys) + 1), ys, marker="." if len(ys) <= 30 else None)
                ax.set_ylabel(key)
                ax.grid(alpha=0.3)
            axes[-1, 0].set_xlabel("epoch")
            axes[0, 0].set_title(manifest.model_version, fontsize=9)
            fig.tight_layout()
            fig.savefig(path, dpi=100)
        finally:
            plt.close(fig)
    except Exception as exc:
        log.warning("could not plot the training curves to %s: %s", path, exc)
        return False
    return True
