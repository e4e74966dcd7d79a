"""The contract every registered model keeps (`tvrec.models.registry.names()`), checked once
here instead of once per model: it fits on the small world, serves embeddings of the right
shapes (unknown users included), survives save/load and refuses a directory it cannot read,
exports its show encoder to ONNX exactly (where it has an export), and resumes an interrupted
training mid-epoch to the very run it would have finished.

Each model is fitted once per module (a few short epochs, `FAST`); that fit, checkpointing
into its own directory, is the uninterrupted run the resume test compares against.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tvrec.jobs.train import training_data
from tvrec.models import registry
from tvrec.models.base import MANIFEST, STATE, ModelFormatError, Recommender, TrainingData
from tvrec.models.runtime import Runtime
from tvrec.models.trainer import History, Trainer
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.workdir import Workdir

# Short runs: two epochs of at least two steps each (the resume test stops mid-epoch 2),
# a checkpoint after every step, small networks, short later phases.
FAST: dict[str, dict[str, Any]] = {
    "ensemble": {"epochs": 2, "candidates": 50, "batch_size": 16, "checkpoint_every": 1},
    "collaborative": {"epochs": 2, "dim": 16, "checkpoint_every": 1},
    "multimodal": {
        "epochs": 2, "dim": 16, "heads": 2, "meta_layers": 1, "val_users": 50,
        "prior_steps": 50, "checkpoint_every": 1,
    },
    "contrastive": {
        "epochs": 2, "dim": 16, "field_dim": 8, "proj_dim": 16, "text_hidden": 32,
        "user_epochs": 1, "prior_steps": 50, "checkpoint_every": 1,
    },
    "temporal": {
        "epochs": 2, "dim": 16, "heads": 2, "layers": 1, "seasonal_epochs": 1,
        "seasonal_steps": 2, "checkpoint_every": 1,
    },
    "graph": {
        "epochs": 2, "dim": 16, "heads": 2, "batch_size": 512, "checkpoint_every": 1,
        "min_steps": 0,
    },
    "ease": {"rank": 64},
    "meta": {"epochs": 2, "dim": 16, "heads": 2, "tasks_per_epoch": 256, "checkpoint_every": 1},
}  # fmt: skip
# Models whose users without history get a learned "cold user" vector rather than zeros
# (still [.., 1] in the prior column): the multimodal user tower learns one.
LEARNED_COLD_USER = {"multimodal"}
UNKNOWN_USERS = ["nobody-1", "nobody-2"]


class _Interrupted(Exception):
    """A kill, simulated between two optimiser steps."""


@dataclass
class _Watch:
    steps: int = 0  # optimiser steps run by the watched trainer
    histories: list[History] = field(default_factory=list)


@contextlib.contextmanager
def _watch(checkpoint: Path, stop_after: int | None = None) -> Iterator[_Watch]:
    """Count the steps of the trainer that checkpoints into `checkpoint` (one phase of one
    fit), keep the History it returns, and with `stop_after` raise before step
    `stop_after + 1` of it."""
    watch, real_step, real_fit = _Watch(), Trainer._step, Trainer.fit

    def step(self: Trainer, *args: Any) -> Any:
        if self.checkpoint == checkpoint:
            if stop_after is not None and watch.steps >= stop_after:
                raise _Interrupted
            watch.steps += 1
        return real_step(self, *args)

    def fit(self: Trainer, *args: Any, **kwargs: Any) -> History:
        history = real_fit(self, *args, **kwargs)
        if self.checkpoint == checkpoint:
            watch.histories.append(history)
        return history

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "_step", step)
        patch.setattr(Trainer, "fit", fit)
        yield watch


def _fresh(name: str, **changes: Any) -> Recommender:
    return registry.model_class(name).create(Runtime.cpu(), FAST[name] | changes)


@dataclass
class Fitted:
    name: str
    model: Recommender
    data: TrainingData  # checkpoint_dir: the uninterrupted run's
    metrics: dict[str, Any]
    history: History | None  # of the main training phase (None: a closed-form model)
    steps_per_epoch: int
    saved: Path


@pytest.fixture(scope="module", params=registry.names())
def fitted(
    request: pytest.FixtureRequest,
    inputs_of: Callable[[str], TrainingData],
    tmp_path_factory: pytest.TempPathFactory,
    one_torch_thread: None,
) -> Fitted:
    name: str = request.param
    root = tmp_path_factory.mktemp(f"contract-{name}")
    data = dataclasses.replace(inputs_of(name), checkpoint_dir=root / "checkpoints")
    model = _fresh(name)
    with _watch(root / "checkpoints" / "train.pt") as watch:
        metrics = model.fit(data)
    model.save(root / "saved")
    if not model.iterative:  # a closed form: no trainer ran
        assert not watch.histories and watch.steps == 0
        return Fitted(name, model, data, metrics, None, 0, root / "saved")
    (history,) = watch.histories
    epochs = model.config.epochs
    assert watch.steps % epochs == 0, (watch.steps, epochs)
    return Fitted(name, model, data, metrics, history, watch.steps // epochs, root / "saved")


def _needs_trainer(fitted: Fitted) -> History:
    """The main phase's history; a closed-form model skips the trainer's tests."""
    if fitted.history is None:
        pytest.skip(f"{fitted.name} is a closed form: no epochs, checkpoints or resume")
    return fitted.history


def test_every_registered_model_has_fast_settings() -> None:
    """A new model must say here how it trains fast (its defaults may take minutes)."""
    assert set(FAST) == set(registry.names())


# ---- fit -------------------------------------------------------------------------------------
def test_fits_on_the_small_world(fitted: Fitted) -> None:
    model, data, metrics = fitted.model, fitted.data, fitted.metrics
    cls = type(model)
    assert cls.name == fitted.name and registry.config_class(fitted.name) is cls.config_class
    manifest = model.manifest
    assert manifest is not None and manifest.metrics == metrics
    assert (manifest.model_name, manifest.feature_service) == (cls.name, cls.feature_service)
    assert manifest.data_snapshot == data.data_snapshot
    assert manifest.as_of == data.as_of.isoformat()
    assert manifest.format_version == cls.format_version
    history = _needs_trainer(fitted)
    losses = metrics["train_loss"]
    assert len(losses) == model.config.epochs and np.isfinite(losses).all()
    assert history.resumed_from is None
    assert (metrics["resumed_from_epoch"], metrics["resumed_from_step"]) == (0, 0)
    assert (data.checkpoint_dir / "train.pt").is_file()  # type: ignore[operator]
    assert fitted.steps_per_epoch >= 2  # the resume test stops in the middle of an epoch


# ---- embeddings ------------------------------------------------------------------------------
def test_embedding_shapes(fitted: Fitted) -> None:
    model = fitted.model
    ids, shows = model.show_embeddings()
    assert ids == fitted.data.show_ids  # the whole catalogue, in its order
    assert shows.dtype == np.float32 and shows.shape[0] == len(ids)
    assert np.isfinite(shows).all()
    known = model.known_users()
    assert known and set(known) <= set(fitted.data.positives()["user_id"])
    users = model.user_embeddings(known[:10])
    assert users.dtype == np.float32 and users.shape == (10, shows.shape[1])
    assert np.isfinite(users).all()
    similarity = model.similarity_vectors()
    if model.prior_column:  # show-to-show similarity leaves the show prior out
        np.testing.assert_array_equal(similarity, shows[:, :-1])
    else:
        np.testing.assert_array_equal(similarity, shows)
    # a score is the inner product of the served vectors (what the index searches)
    scores = model.score(known[:10], ids[:10])
    np.testing.assert_allclose(scores, np.einsum("nd,nd->n", users, shows[:10]), atol=1e-5)


def test_unknown_users(fitted: Fitted) -> None:
    model = fitted.model
    width = model.show_embeddings()[1].shape[1]
    users = model.user_embeddings(UNKNOWN_USERS)
    assert users.dtype == np.float32 and users.shape == (2, width)
    assert np.isfinite(users).all()
    np.testing.assert_array_equal(users[0], users[1])  # nothing tells them apart
    assert model.user_embeddings([]).shape == (0, width)
    if model.prior_column:  # the show prior alone ranks for them
        assert (users[:, -1] == 1.0).all()
        if fitted.name not in LEARNED_COLD_USER:
            assert not users[:, :-1].any(), users


# ---- persistence -----------------------------------------------------------------------------
def test_manifest_on_disk(fitted: Fitted) -> None:
    cls, model = type(fitted.model), fitted.model
    manifest = json.loads((fitted.saved / MANIFEST).read_text())
    assert manifest["model_name"] == fitted.name
    assert manifest["format_version"] == cls.format_version
    assert manifest["config"] == model.config.model_dump()
    assert cls.parse_config(manifest["config"]) == model.config  # the config round-trips


def test_save_load_round_trip(fitted: Fitted) -> None:
    model, cls = fitted.model, type(fitted.model)
    ids, shows = model.show_embeddings()
    users = [*model.known_users()[:20], *UNKNOWN_USERS]
    vectors = model.user_embeddings(users)
    pairs = (users[:20], [ids[i % len(ids)] for i in range(0, 140, 7)])
    for loaded in (cls.load(fitted.saved), registry.load_model(fitted.saved)):
        assert type(loaded) is cls
        assert loaded.manifest == model.manifest and loaded.config == model.config
        loaded_ids, loaded_shows = loaded.show_embeddings()
        assert loaded_ids == ids and loaded_shows.dtype == np.float32
        np.testing.assert_array_equal(loaded_shows, shows)
        np.testing.assert_array_equal(loaded.user_embeddings(users), vectors)
        np.testing.assert_array_equal(loaded.score(*pairs), model.score(*pairs))
        assert loaded.known_users() == model.known_users()


def _edited_copy(saved: Path, directory: Path, **changes: Any) -> Path:
    shutil.copytree(saved, directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    (directory / MANIFEST).write_text(json.dumps(manifest | changes))
    return directory


def test_load_refuses_another_models_directory(fitted: Fitted, tmp_path: Path) -> None:
    name, cls = fitted.name, type(fitted.model)
    other = next(n for n in registry.names() if n != name)
    with pytest.raises(ModelFormatError) as err:
        registry.model_class(other).load(fitted.saved)
    assert str(fitted.saved) in str(err.value)
    assert repr(name) in str(err.value) and repr(other) in str(err.value)
    claims_other = _edited_copy(fitted.saved, tmp_path / "claims-other", model_name=other)
    with pytest.raises(ModelFormatError) as err:
        cls.load(claims_other)
    assert str(claims_other) in str(err.value)
    assert repr(name) in str(err.value) and repr(other) in str(err.value)


def test_load_refuses_another_format_version(fitted: Fitted, tmp_path: Path) -> None:
    name, cls = fitted.name, type(fitted.model)
    bumped = _edited_copy(fitted.saved, tmp_path / "bumped", format_version=cls.format_version + 1)
    for load in (cls.load, registry.load_model):
        with pytest.raises(ModelFormatError) as err:
            load(bumped)
        message = str(err.value)
        assert str(bumped) in message and f"{name} model format" in message, message
        assert f"tvrec train --stage {name}" in message  # and says how to get a readable one
    assert issubclass(ModelFormatError, ConfigError)  # the CLI reports it, exit code 2
    with pytest.raises(ModelFormatError, match="not a saved tvrec model"):
        registry.load_model(tmp_path)


# ---- ONNX ------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_load_names_a_damaged_file(fitted: Fitted, tmp_path: Path) -> None:
    """A saved model whose weights are cut off, overwritten or gone, or whose manifest is not
    JSON, is refused with the file named and the stage to retrain (it was torch's or json's
    traceback, one of them advising `weights_only=False`)."""
    name = fitted.name
    state = (fitted.saved / STATE).read_bytes()
    for label, damage in (
        ("truncated or damaged", lambda p: p.write_bytes(state[: len(state) // 2])),
        ("not a model file tvrec wrote", lambda p: p.write_bytes(b"garbage\n")),
        ("missing", lambda p: p.unlink()),
    ):
        copy = tmp_path / label.replace(" ", "-")
        shutil.copytree(fitted.saved, copy)
        damage(copy / STATE)
        with pytest.raises(ModelFormatError) as err:
            registry.load_model(copy)
        message = str(err.value)
        assert str(copy / STATE) in message and label in message, message
        assert f"tvrec train --stage {name}" in message and "weights_only" not in message
    broken = tmp_path / "manifest"
    shutil.copytree(fitted.saved, broken)
    (broken / MANIFEST).write_text("{")
    with pytest.raises(ModelFormatError, match="not a tvrec model manifest"):
        registry.load_model(broken)


def test_onnx_show_encoder_matches_similarity_vectors(fitted: Fitted, tmp_path: Path) -> None:
    model = fitted.model
    export = getattr(model, "export_onnx", None)
    if export is None:
        pytest.skip(f"{fitted.name} has no ONNX export")
    paths = export(tmp_path / "onnx")  # checks the whole catalogue against torch itself
    assert paths["show_encoder"].is_file()
    session = ort.InferenceSession(str(paths["show_encoder"]), providers=["CPUExecutionProvider"])
    content = model.get_state()["content"]  # the catalogue's encoder inputs, by input name
    rows = torch.arange(3, 40)  # 37 shows: not the batch of 8 the export was traced on
    (got,) = session.run(
        None, {i.name: content[i.name][rows].numpy() for i in session.get_inputs()}
    )
    want = model.similarity_vectors()[3:40]
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4


# ---- checkpoints -----------------------------------------------------------------------------
def test_resume_after_interruption_reproduces_the_run(fitted: Fitted, tmp_path: Path) -> None:
    """Killed in the middle of the second epoch, then started again: the second run picks up
    at the last checkpoint (one step before the kill) and ends where the uninterrupted run
    ended."""
    straight_history = _needs_trainer(fitted)
    name, per_epoch = fitted.name, fitted.steps_per_epoch
    data = dataclasses.replace(fitted.data, checkpoint_dir=tmp_path / "checkpoints")
    checkpoint = tmp_path / "checkpoints" / "train.pt"
    done = per_epoch // 2  # steps of the second epoch run before the kill
    with _watch(checkpoint, stop_after=per_epoch + done), pytest.raises(_Interrupted):
        _fresh(name).fit(data)
    progress = torch.load(checkpoint, map_location="cpu", weights_only=True)["progress"]
    assert (progress["epoch"], progress["step"]) == (1, done)  # mid-epoch

    resumed = _fresh(name)
    with _watch(checkpoint) as watch:
        metrics = resumed.fit(data)
    (history,) = watch.histories
    assert history.resumed_from == (1, done)
    assert (metrics["resumed_from_epoch"], metrics["resumed_from_step"]) == (1, done)
    assert watch.steps == per_epoch - done  # only the rest of the second epoch ran again
    np.testing.assert_allclose(metrics["train_loss"], fitted.metrics["train_loss"], rtol=1e-5)
    for key, curve in straight_history.curves.items():
        if not key.endswith("seconds"):  # timings aside, every curve is the same
            np.testing.assert_allclose(history.curves[key], curve, rtol=1e-5, err_msg=key)
    straight = fitted.model
    np.testing.assert_allclose(
        resumed.show_embeddings()[1], straight.show_embeddings()[1], atol=1e-5
    )
    users = straight.known_users()[:50]
    np.testing.assert_allclose(
        resumed.user_embeddings(users), straight.user_embeddings(users), atol=1e-5
    )


def test_checkpoint_of_another_run_is_ignored(fitted: Fitted, tmp_path: Path) -> None:
    """A finished run's checkpoint, found by a run with another seed: trained afresh, and the
    checkpoint replaced by the new run's."""
    _needs_trainer(fitted)
    data = dataclasses.replace(fitted.data, checkpoint_dir=tmp_path / "checkpoints")
    checkpoint = tmp_path / "checkpoints" / "train.pt"
    checkpoint.parent.mkdir()
    shutil.copy(fitted.data.checkpoint_dir / "train.pt", checkpoint)  # type: ignore[operator]
    stale = torch.load(checkpoint, map_location="cpu", weights_only=True)["fingerprint"]
    other = _fresh(fitted.name, seed=fitted.model.config.seed + 1)
    with _watch(checkpoint) as watch:
        metrics = other.fit(data)
    (history,) = watch.histories
    assert history.resumed_from is None
    assert (metrics["resumed_from_epoch"], metrics["resumed_from_step"]) == (0, 0)
    assert watch.steps == fitted.steps_per_epoch * other.config.epochs  # every step ran
    assert len(metrics["train_loss"]) == other.config.epochs
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["fingerprint"] != stale


# ---- awkward data --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    """The tiny world: fewer users than a step wants, most histories short."""
    from tvrec.pipelines.build import build_features
    from tvrec.pipelines.config import Settings
    from tvrec.pipelines.ingest import ingest
    from tvrec.pipelines.progress import StageLog
    from tvrec.pipelines.synthetic import WorldConfig, write_world

    root = tmp_path_factory.mktemp("tiny")
    write_world(root / "world", WorldConfig.tiny())
    wd = Workdir(root / "work")
    ingest(root / "world", "contract", wd)
    build_features(wd, Settings.load(wd.root), log=StageLog(quiet=True))
    return wd


@pytest.mark.parametrize("name", registry.names())
def test_fits_and_serves_a_tiny_world(name: str, tiny_workdir: Workdir) -> None:
    cls = registry.model_class(name)
    data = dataclasses.replace(training_data(tiny_workdir, cls), checkpoint_dir=None)
    model = _fresh(name)
    metrics = model.fit(data)
    losses = metrics.get("train_loss", [])  # none for a closed form
    assert all(np.isfinite(v) for v in losses) and (losses or not model.iterative), losses
    ids, shows = model.show_embeddings()
    users = model.user_embeddings([*model.known_users()[:5], "nobody"])
    assert len(ids) == len(data.show_ids) and np.isfinite(shows).all() and np.isfinite(users).all()
