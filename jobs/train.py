"""`tvrec train`: fit a model from the inputs `pipelines/` builds for it, and publish it.

    <workdir>/models/<name> -> .versions/models-<name>-...   each trained model (weights + manifest)
    <workdir>/models/<name>/training.png                     its per-epoch curves, plotted
    <workdir>/release/model                                  the served one's copy (jobs/release.py)
    <workdir>/checkpoints/<name>/                            the trainer's checkpoints while it
                                                             trains (removed once published)

Models come from the registry (`tvrec.models.registry`).
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from tvrec.jobs.tracking import TRAINING_PLOT, TrainingRun, build_tracker, plot_training
from tvrec.models.base import MANIFEST, ModelManifest, Recommender, TrainingData
from tvrec.models.registry import UnknownModelError, load_model, model_class
from tvrec.pipelines.config import Settings
from tvrec.pipelines.errors import ConfigError, DataError, EngineError
from tvrec.pipelines.model_inputs import MemberInputs, model_inputs
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.workdir import Workdir

if TYPE_CHECKING:
    import polars as pl

    from tvrec.models.distributed import World


def registered(name: str) -> type[Recommender]:
    """The model class `name`, or a ConfigError listing the registered ones."""
    try:
        return model_class(name)
    except UnknownModelError as exc:
        raise ConfigError(str(exc)) from None


def training_data(
    wd: Workdir,
    model: type[Recommender] | Recommender,
    settings: Settings | None = None,
    as_member: bool = False,
) -> TrainingData:
    """Everything `model` trains on, as of the current feature build; a model built on other
    models (`Recommender.member_models`) also gets each member's inputs and published copy.
    `as_member`: inputs another model trains it on, before its own cut too (`Recommender.at_cut`:
    a graph keeps the events it was built from)."""
    data = model_inputs(
        wd,
        model.feature_service,
        negatives=model.negatives,
        content=model.needs_content,
        content_service=model.content_service,
        model_name=model.name,
        graph=model.needs_graph,
        graph_events=as_member,
    )
    if not isinstance(model, Recommender):
        return data
    trained = model.member_models()
    for name in dict.fromkeys([*trained, *model.published_models()]):
        member = registered(name)
        params = settings.models.params(name) if settings is not None else {}
        published = wd.root / "models" / name
        data.members[name] = MemberInputs(
            training_data(wd, member, as_member=True) if name in trained else None,
            dict(params),
            load_model(published) if (published / MANIFEST).exists() else None,
        )
    return data


def preflight(
    settings: Settings, stages: Iterable[str], events: pl.DataFrame, shows: pl.DataFrame
) -> None:
    """Each model of `stages` refuses, before any of them trains, a log it certainly cannot
    learn from (`Recommender.preflight`): `events` are those before the as-of."""
    import polars as pl

    from tvrec.pipelines.model_inputs import watched_pairs

    events = events.filter(pl.col("show_id").is_in(shows["show_id"].implode()))
    positives = watched_pairs(events.select("user_id", "show_id", "event_timestamp").to_pandas())
    for stage in stages:
        registered(stage).preflight(positives, settings.models.params(stage))


def train_stage(
    wd: Workdir,
    settings: Settings,
    stage: str = "collaborative",
    log: StageLog | None = None,
    threads: int | None = None,
) -> ModelManifest:
    """Train model `stage` and publish it under models/<stage>. Inside a torch.distributed
    group (jobs/train_parallel.py) every rank trains and rank 0 alone builds the training set
    and publishes; `threads` (default: hardware.threads) is each process's torch threads."""
    from tvrec.models.distributed import World
    from tvrec.models.runtime import Runtime

    log, world = log or StageLog(), World.current()
    cls = registered(stage)
    runtime = Runtime.detect(settings.hardware.profile)
    model = cls.create(runtime, settings.models.params(stage))
    tracker = build_tracker(settings.tracking, wd.root)  # a bad [tracking] fails before training
    with log.stage(f"training set ({model.feature_service})"):
        data = _shared(world, wd, lambda: training_data(wd, model, settings))
    if data.frame.empty:
        raise DataError(
            f"training set {model.feature_service}",
            f"no viewing event before the as-of ({data.as_of.isoformat()}): {stage} has "
            "nothing to learn from; add events to the dataset (a catalogue alone can be "
            "published with `tvrec ingest`)",
        )
    threads = threads or settings.hardware.threads
    with (
        log.stage(f"train {stage}" + (f" ({world.size} processes)" if world.distributed else "")),
        runtime.training(threads, settings.hardware.deterministic) as n,
    ):
        model.fit(data)
    assert model.manifest is not None
    model.manifest.metrics["torch_threads"] = n  # in the run record: what the time was measured on
    model.manifest.metrics["deterministic"] = settings.hardware.deterministic
    model.manifest.metrics["processes"] = world.size
    world.barrier()  # every rank is done with the training set
    if not world.leader:
        return model.manifest
    for name, companion in {**model.companions(), stage: model}.items():
        with wd.publish(f"models/{name}") as staging:
            companion.save(staging)
            plot_training(companion.fitted(companion.manifest), staging / TRAINING_PLOT)
    _remove_inputs(data)
    if tracker.enabled:  # after publishing: a tracking failure warns, the model stays
        plot = wd.root / "models" / stage / TRAINING_PLOT
        run = TrainingRun.of(model.manifest, model.config.model_dump(), runtime.profile, [plot])
        with log.stage(f"track {stage} ({tracker.name})"):
            tracker.log_training(run)
    return model.manifest


def train_model(
    wd: Workdir, settings: Settings, stage: str, log: StageLog, processes: int | None = None
) -> ModelManifest:
    """`train_stage` in this process, or in `processes` (default: hardware.processes)
    data-parallel worker processes (jobs/train_parallel.py); the published model's manifest.
    Callers hold the writer lock (the workers know it)."""
    processes = processes or settings.hardware.processes
    if processes == 1:
        return train_stage(wd, settings, stage, log=log)
    from tvrec.jobs.train_parallel import launch

    said = f"training {stage} in {processes} processes failed; the failing process said why above"
    with log.stage(f"train {stage} in {processes} processes"):
        code = launch(wd.root, stage, processes)
        if code == 2:
            raise ConfigError(said)
        if code == 3:
            raise EngineError(said)
        if code:
            raise RuntimeError(f"{said} (exit status {code})")  # a bug: its traceback is above
    return ModelManifest.read(wd.root / "models" / stage)


def _shared(world: World, wd: Workdir, build: Callable[[], TrainingData]) -> TrainingData:
    """The training set: built here, or, in a distributed group, built by rank 0 and read by
    the others from a file in the work directory (removed once all have it). A user error
    while rank 0 builds it (no features yet, say) is raised on every rank."""
    if not world.distributed:
        return build()
    import torch

    handoff = wd.root / f".training-set.tmp-{world.from_leader(uuid.uuid4().hex[:8])}"

    def build_and_hand_off() -> TrainingData:
        data = build()
        torch.save(data, handoff, pickle_protocol=5)
        return data

    data = world.on_leader(build_and_hand_off, (DataError, ConfigError, EngineError))
    if data is None:
        data = torch.load(handoff, weights_only=False)
    world.barrier()
    if world.leader:
        handoff.unlink(missing_ok=True)
    return data


def _remove_inputs(data: TrainingData) -> None:
    """Once the model is published: its checkpoints (nothing left to resume) and its
    training-set parts go, and no empty folder stays behind."""
    folders = {p.parent for p in data.parts}
    if data.checkpoint_dir is not None:
        folders.add(data.checkpoint_dir)
    for member in data.members.values():  # their parts (their own stage's checkpoints stay)
        folders |= {p.parent for p in member.data.parts} if member.data else set()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()


def load_current_model(wd: Workdir) -> Recommender:
    """The served model: the current release's copy (what its index and tables came from)."""
    from tvrec.jobs.release import require_release

    return load_model(require_release(wd.root).model_dir)
