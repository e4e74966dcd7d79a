"""`tvrec train`: fit a model from its Feast training set and publish it as the current model.

<workdir>/model -> .versions/model-...   weights + manifest.json of the current model
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from tvrec.models.base import ModelManifest, Recommender, TrainingData
from tvrec.pipelines.build import read_manifest
from tvrec.pipelines.config import Settings
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.ingest import read_lake
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.training import training_set
from tvrec.pipelines.workdir import Workdir

STAGES = ("collaborative",)


def lake_snapshot(wd: Workdir) -> str:
    """Content hash of the published lake: what a model and an index were built from."""
    digest = hashlib.sha256()
    for path in sorted(wd.lake.glob("*.parquet")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def new_model(stage: str, settings: Settings) -> Recommender:
    """The model behind a training stage, on the hardware profile the settings pick."""
    from tvrec.models.runtime import Runtime

    runtime = Runtime.detect(settings.hardware.profile)
    if stage == "collaborative":
        from tvrec.models.collaborative import CollaborativeModel

        return CollaborativeModel(runtime=runtime)
    raise ConfigError(f"unknown training stage {stage!r}; available: {', '.join(STAGES)}")


def train_stage(
    wd: Workdir, settings: Settings, stage: str = "collaborative", log: StageLog | None = None
) -> ModelManifest:
    log = log or StageLog()
    model = new_model(stage, settings)
    as_of = datetime.fromisoformat(read_manifest(wd)["as_of"])
    with log.stage(f"training set ({model.feature_service})"):
        frame = training_set(wd, model.feature_service, as_of=as_of, negatives=0)
        data = TrainingData(
            frame,
            model.feature_service,
            as_of,
            lake_snapshot(wd),
            read_lake(wd).shows["show_id"].to_list(),
        )
    with log.stage(f"train {stage}"):
        model.fit(data)
    with wd.publish("model") as staging:
        model.save(staging)
    assert model.manifest is not None
    return model.manifest


def load_current_model(wd: Workdir) -> Recommender:
    path = wd.require("model", "run `tvrec train` or `tvrec run` first")
    manifest = ModelManifest.read(Path(path))
    if manifest.model_name == "collaborative":
        from tvrec.models.collaborative import CollaborativeModel

        return CollaborativeModel.load(path)
    raise ConfigError(f"{path}: unknown model {manifest.model_name!r}")
