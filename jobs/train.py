"""`tvrec train`: fit a model from its Feast training set and publish it.

    <workdir>/models/<name> -> .versions/models-<name>-...   each trained model (weights + manifest)
    <workdir>/models/<name>/training.png                     its per-epoch curves, plotted
    <workdir>/model         -> a copy of the served one (what the index and tables came from)

Models are registered by name in MODELS (module:Class), loaded lazily so that a stage only
imports what it trains.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from tvrec.jobs.tracking import TRAINING_PLOT, TrainingRun, build_tracker, plot_training
from tvrec.models.base import ModelManifest, Recommender, TrainingData
from tvrec.pipelines.build import read_manifest
from tvrec.pipelines.config import Settings
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.ingest import read_lake
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.training import training_set
from tvrec.pipelines.workdir import Workdir

MODELS: dict[str, str] = {
    "collaborative": "tvrec.models.collaborative:CollaborativeModel",
    "multimodal": "tvrec.models.multimodal:MultimodalModel",
    "contrastive": "tvrec.models.contrastive:ContrastiveModel",
}
SERVED = "model"


def model_class(name: str) -> type[Recommender]:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def lake_snapshot(wd: Workdir) -> str:
    """Content hash of the published lake: what a model and an index were built from."""
    digest = hashlib.sha256()
    for path in sorted(wd.lake.glob("*.parquet")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def training_data(wd: Workdir, feature_service: str, negatives: int = 0) -> TrainingData:
    """The point-in-time training set of a FeatureService, as of the current feature build."""
    as_of = datetime.fromisoformat(read_manifest(wd)["as_of"])
    frame = training_set(wd, feature_service, as_of=as_of, negatives=negatives)
    shows = read_lake(wd).shows["show_id"].to_list()
    return TrainingData(frame, feature_service, as_of, lake_snapshot(wd), shows, wd.root)


def train_stage(
    wd: Workdir, settings: Settings, stage: str = "collaborative", log: StageLog | None = None
) -> ModelManifest:
    """Train model `stage` and publish it under models/<stage>."""
    from tvrec.models.runtime import Runtime

    log = log or StageLog()
    cls = model_class(stage)
    overrides = settings.models.params(stage).overrides()
    runtime = Runtime.detect(settings.hardware.profile)
    model = cls.create(runtime, overrides)
    tracker = build_tracker(settings.tracking, wd.root)  # a bad [tracking] fails before training
    with log.stage(f"training set ({model.feature_service})"):
        data = training_data(wd, model.feature_service, negatives=model.negatives)
    with log.stage(f"train {stage}"):
        model.fit(data)
    assert model.manifest is not None
    with wd.publish(f"models/{stage}") as staging:
        model.save(staging)
        plot_training(model.manifest, staging / TRAINING_PLOT)
    if tracker.enabled:  # after publishing: a tracking failure warns, the model stays
        plot = wd.root / "models" / stage / TRAINING_PLOT
        run = TrainingRun.of(model.manifest, asdict(model.config), runtime.profile, [plot])
        with log.stage(f"track {stage} ({tracker.name})"):
            tracker.log_training(run)
    return model.manifest


def serve_model(wd: Workdir, name: str) -> ModelManifest:
    """Make trained model `name` the served one (copied, so retraining never pulls it away)."""
    source = wd.require(f"models/{name}", f"train it first: `tvrec train --stage {name}`")
    with wd.publish(SERVED) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    return ModelManifest.read(wd.root / SERVED)


def load_model(directory: Path) -> Recommender:
    manifest = ModelManifest.read(directory)
    return model_class(manifest.model_name).load(directory)


def load_current_model(wd: Workdir) -> Recommender:
    """The served model (what `tvrec recommend` indexed)."""
    path = wd.require(SERVED, "run `tvrec recommend` or `tvrec run` first")
    return load_model(Path(path))
