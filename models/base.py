"""The interface every tvrec model implements (like `implicit`'s RecommenderBase).

A model is fitted from the inputs `pipelines/` hands it (`TrainingData`: the point-in-time
training set Feast returned for its FeatureService, the catalogue's content, a checkpoint
directory), yields show and user embeddings in one space (so a FAISS inner-product index over
show embeddings answers user and show queries), scores user–show pairs, and is saved once, here,
for every model: `state.pt` (what `get_state` returns), and `manifest.json` (the config, the
data snapshot and as-of time, and a format version that `load` checks).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import torch
from pydantic import ConfigDict, Field, ValidationError

from tvrec.pipelines.config import Settled
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.model_inputs import TrainingData

from .runtime import Runtime
from .trainer import EpochCallback, Trainer, TrainerConfig, fingerprint

T = TypeVar("T")
MANIFEST = "manifest.json"
STATE = "state.pt"

__all__ = ["MANIFEST", "ModelConfig", "ModelManifest", "Recommender", "TrainingData"]


class ModelConfig(Settled):
    """Hyper-parameters of a model, validated where they enter (extra keys refused).

    Every model's config subclasses this and redeclares the defaults it wants; the trainer's
    knobs (checkpoints, clipping, early stopping) are common to all.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    dim: int = Field(128, ge=4)
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)
    seed: int = 0
    checkpoint_every: int = Field(200, ge=1, description="optimiser steps between checkpoints")
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; None: off")
    patience: int | None = Field(
        None, ge=1, description="early stopping: epochs without a better validation metric"
    )

    def replace(self, **changes: Any) -> ModelConfig:
        """A validated copy with `changes` applied."""
        return type(self).model_validate(self.model_dump() | changes)


class UserTable:
    """Served user vectors computed once at the as-of (`Recommender.precompute_users`, in
    batches) and read by each request; the owner drops a user whose history changes (a
    fold-in) and clears it on fit and load."""

    def __init__(self) -> None:
        self.rows: dict[str, np.ndarray] = {}  # user -> served vector

    def read(self, user_ids: list[str], compute: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """(n_users, width): from the table, `compute` for the users not in it."""
        if not self.rows or not user_ids:
            return compute(user_ids)
        missing = list(dict.fromkeys(u for u in user_ids if u not in self.rows))
        fresh = dict(zip(missing, compute(missing), strict=True)) if missing else {}
        return np.stack([self.rows[u] if u in self.rows else fresh[u] for u in user_ids])

    def fill(self, user_ids: list[str], compute: Callable[[list[str]], np.ndarray]) -> int:
        """Compute these users' vectors and keep them; how many the table holds."""
        self.rows.update(zip(user_ids, compute(user_ids), strict=True))
        return len(self.rows)

    def drop(self, user_ids: Iterable[str]) -> None:
        for user in user_ids:
            self.rows.pop(user, None)


class ModelFormatError(ConfigError):
    """A model directory that this model class cannot read."""


@dataclass
class ModelManifest:
    """What a saved model is and what it was trained on."""

    model_name: str
    model_version: str
    feature_service: str
    data_snapshot: str  # content hash of the lake it was trained from
    as_of: str  # ISO-8601: no training row at or after this instant
    dim: int
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    format_version: int = 0  # 0: written before formats were versioned

    def notes(self) -> dict[str, Any]:
        """What the model says about its fit in the run record (`<what>_notes` metrics, e.g.
        the graph's missing relations, the ensemble's left-out members), the empty ones left
        out: shown by `tvrec train` and in `tvrec evaluate`'s report."""
        return {k: v for k, v in self.metrics.items() if k.endswith("_notes") and v}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, directory: Path) -> ModelManifest:
        path = Path(directory) / MANIFEST
        if not path.exists():
            raise ModelFormatError(f"{directory}: no {MANIFEST}; not a saved tvrec model")
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise ModelFormatError(f"{path}: not a tvrec model manifest ({exc})") from None


class Recommender(ABC):
    """One model behind the shared interface."""

    name: ClassVar[str]
    feature_service: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    format_version: ClassVar[int] = 1  # bump when get_state's layout changes
    needs_content: ClassVar[bool] = False  # whether fit reads TrainingData.content
    # the FeatureService whose show features TrainingData.content holds (None: the model's own)
    content_service: ClassVar[str | None] = None
    needs_graph: ClassVar[bool] = False  # whether fit reads TrainingData.graph
    # whether what fit reads of TrainingData.content is catalogue metadata alone (genres,
    # platforms: known ahead, not counted from events), so a refit as of an earlier cut (the
    # ensemble's window) may keep it
    reads_catalogue_only: ClassVar[bool] = False
    negatives: ClassVar[int] = 0  # sampled negatives per positive wanted in the training set
    # trained by the Trainer (epochs, checkpoints, resume); False: a closed form, fitted at once
    iterative: ClassVar[bool] = True
    # served vectors end in a prior column: show [vector, prior], user [vector, 1]
    prior_column: ClassVar[bool] = False
    # whether its score of a show with no event in its training data carries signal (content
    # models: what a new show is); False: the ensemble leaves its score of such a show out, so
    # the other members rank new shows (a model whose new-show vector is an ID row never
    # trained and no content: the temporal model)
    ranks_new_shows: ClassVar[bool] = True

    def __init_subclass__(
        cls, *, name: str | None = None, config: type[ModelConfig] | None = None, **kw: Any
    ) -> None:
        """A model names itself and its config in its class line: `class M(Recommender,
        name="m", config=MConfig)`; its FeatureService is `<name>_v1` unless it says otherwise."""
        super().__init_subclass__(**kw)
        if name is not None:
            cls.name = name
            cls.feature_service = cls.__dict__.get("feature_service", f"{name}_v1")
        if config is not None:
            cls.config_class = config

    def __init__(self, config: ModelConfig | None = None, runtime: Runtime | None = None) -> None:
        self.config: Any = config or self.config_class()
        self.runtime = runtime or Runtime.detect()
        self.manifest: ModelManifest | None = None
        self.callbacks: list[EpochCallback] = []  # per-epoch hooks (experiment tracking)
        self.show_ids: list[str] = []  # the catalogue as of training, in embedding-row order
        self.histories: dict[str, list[Any]] = {}  # user -> shows watched before the as-of

    @classmethod
    def create(cls, runtime: Runtime, overrides: Mapping[str, Any] | None = None) -> Recommender:
        """A fresh, untrained model on this runtime, its config's defaults replaced by
        `overrides` (from `[models.<name>]` in tvrec.toml)."""
        return cls(config=cls.parse_config(overrides or {}), runtime=runtime)

    @classmethod
    def parse_config(cls, values: Mapping[str, Any]) -> ModelConfig:
        """The config from `values`; a bad one raises ConfigError naming each setting."""
        try:
            return cls.config_class.model_validate(dict(values))
        except ValidationError as exc:
            raise ConfigError(config_problems(cls.name, cls.config_class, exc)) from None

    @classmethod
    def preflight(cls, positives: pd.DataFrame, params: Mapping[str, Any]) -> None:
        """Refuse (DataError), before anything is written or trained, a log this model
        certainly cannot learn from with these settings: its watched pairs before the as-of
        (`watched_pairs`: user_id, show_id, event_timestamp). The nightly job asks every model
        it will train, so a refusal comes in seconds, not after the other models trained;
        nothing to refuse here (`fit` says what it cannot use)."""
        return None

    # ---- what each model implements ------------------------------------------------------
    @abstractmethod
    def fit(self, data: TrainingData) -> dict[str, Any]:
        """Train; returns per-epoch metrics (also stored in the manifest)."""

    @abstractmethod
    def show_embeddings(self) -> tuple[list[str], np.ndarray]:
        """Show ids and their embeddings, shape (n_shows, dim), float32."""

    @abstractmethod
    def user_embeddings(self, user_ids: list[str]) -> np.ndarray:
        """Embeddings of these users, shape (n_users, dim). A user without history gets the
        model's cold-user vector (zeros, or one it learned) and, in the prior column if the
        model has one, 1, so the show prior ranks for them."""

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """Everything but the config that a fitted model needs to serve: tensors, and lists,
        dicts, strings and numbers (what `torch.load(weights_only=True)` reads back)."""

    @abstractmethod
    def set_state(self, state: dict[str, Any]) -> None:
        """Rebuild the fitted model from `get_state`'s output (on the CPU)."""

    @staticmethod
    def fitted(part: T | None) -> T:
        """`part` of a fitted model (its net, its catalogue), or an error before `fit`."""
        if part is None:
            raise RuntimeError("model is not fitted: call fit() or load() first")
        return part

    def save_artifacts(self, directory: Path) -> None:
        """Files beside the state that other readers need (e.g. a text tower); none here."""
        return None

    def member_models(self) -> list[str]:
        """Registered models this one is built on (the job hands in their inputs and
        published copies as `TrainingData.members`); none here."""
        return []

    def companions(self) -> dict[str, Recommender]:
        """Models this one trained for itself that the job publishes beside it under their
        own names (the ensemble's advanced members); none here."""
        return {}

    def published_models(self) -> list[str]:
        """Registered models whose published copies alone this one reads (no training data:
        `TrainingData.members[name].data` is None); none here."""
        return []

    def fold_in(self, events: pd.DataFrame) -> bool:
        """Serve users the model never trained on from these events alone (user_id, show_id,
        event_timestamp): their first events at serving time (`tvrec evaluate`'s few-shot
        protocol). False: this model cannot (it serves only the users it trained on)."""
        return False

    @classmethod
    def at_cut(cls, data: TrainingData, before: pd.DataFrame, cut: datetime) -> TrainingData:
        """`data` as a copy of this model trained before `cut` sees it (the ensemble's model
        members, before its window): `before` as the training rows (events before the cut,
        the window's pairs left out), no Feast rows of the as-of (a model that reads only the
        catalogue's metadata from them keeps those)."""
        content = data.content if cls.reads_catalogue_only else None
        return dataclasses.replace(
            data, frame=before, as_of=cut, content=content, parts=(), graph=None
        )

    def advance(self, data: TrainingData) -> bool:
        """Move this fitted model to `data`'s as-of without training it again: the users'
        histories and what it reads of the shows at the as-of come from `data` (every event
        up to the new as-of), the weights stay as trained. With `[models.ensemble] advance`
        the ensemble serves its model members so (trained once, before its window). False:
        this model cannot."""
        return False

    def restamp(self, data: TrainingData) -> None:
        """After `advance`: the manifest says the new as-of and snapshot; `trained_as_of`
        keeps when its weights' events end."""
        old = self.fitted(self.manifest)
        metrics = old.metrics | {"trained_as_of": old.metrics.get("trained_as_of", old.as_of)}
        self.make_manifest(data, old.dim, metrics)

    def precompute_users(self, user_ids: list[str]) -> int:
        """Compute these users' served vectors at the as-of now and keep them, so a request
        reads them instead of computing them (the nightly run's user table); how many are
        kept. A model whose user vectors are a lookup already keeps nothing."""
        return 0

    def show_rows(self) -> dict[str, int]:
        """show_id -> its row, built once per catalogue (the serving path asks per request;
        a model whose `show_ids` is replaced, by `fit` or `set_state`, gets it built again)."""
        cached: tuple[list[str], dict[str, int]] | None = getattr(self, "_show_rows", None)
        if cached is None or cached[0] is not self.show_ids or len(cached[1]) != len(cached[0]):
            cached = (self.show_ids, {s: i for i, s in enumerate(self.show_ids)})
            self._show_rows = cached
        return cached[1]

    def fold_rows(self, events: pd.DataFrame) -> dict[str, list[int]]:
        """user -> the catalogue rows of their shows in `events`, in time order, each once
        (shows the model does not know dropped): what `fold_in` hands a history-encoded model."""
        row = self.show_rows()
        known = events[events["show_id"].isin(row)].sort_values("event_timestamp", kind="stable")
        known = known.drop_duplicates(["user_id", "show_id"])
        return {str(u): [row[s] for s in g] for u, g in known.groupby("user_id")["show_id"]}

    # ---- shared behaviour ----------------------------------------------------------------
    def similarity_vectors(self) -> np.ndarray:
        """Show vectors for show-to-show similarity, (n_shows, d): the served ones without
        the prior column (a show's popularity says nothing about what it is like)."""
        vectors = self.show_embeddings()[1]
        return vectors[:, :-1] if self.prior_column else vectors

    def known_users(self) -> list[str]:
        """Users with a history in training (the others are embedded as unknown)."""
        return sorted(self.histories)

    def score(self, user_ids: list[str], show_ids: list[str]) -> np.ndarray:
        """Score of each (user_ids[i], show_ids[i]) pair, shape (n,)."""
        ids, shows = self.show_embeddings()
        pos = {s: i for i, s in enumerate(ids)}
        users = self.user_embeddings(user_ids)  # (n, dim)
        items = shows[[pos[s] for s in show_ids]]  # (n, dim)
        return np.einsum("nd,nd->n", users, items)

    def make_manifest(self, data: TrainingData, dim: int, metrics: dict[str, Any]) -> None:
        """Stamp the fitted model with what it was trained on."""
        self.manifest = ModelManifest(
            model_name=self.name,
            model_version=f"{self.name}-{data.as_of:%Y%m%dT%H%M%S}-{data.data_snapshot[:8]}",
            feature_service=self.feature_service,
            data_snapshot=data.data_snapshot,
            as_of=data.as_of.isoformat(),
            dim=dim,
            config=self.config.model_dump(),
            metrics=metrics,
            format_version=self.format_version,
        )

    def trainer(
        self,
        data: TrainingData,
        phase: str = "train",
        epochs: int | None = None,
        seed: int | None = None,
        extra: Any = None,
    ) -> Trainer:
        """The trainer of one training phase, set from the config; it checkpoints into
        `data.checkpoint_dir/<phase>.pt` when the job gave a directory. A checkpoint is
        resumed only by a run on the same data, as-of, settings (the epochs aside: they may be
        raised to train on) and hardware profile (and `extra`: whatever else shapes the run,
        such as the members an ensemble was left with)."""
        cfg = self.config
        path = data.checkpoint_dir / f"{phase}.pt" if data.checkpoint_dir else None
        settings = cfg.model_dump(exclude={"epochs", "checkpoint_every"})
        key = fingerprint(
            self.name, phase, data.data_snapshot, data.as_of.isoformat(), len(data.show_ids),
            len(data.frame), settings, self.runtime.profile, self.runtime.mixed_precision, extra,
        )  # fmt: skip
        label = f"train {self.name}" + ("" if phase == "train" else f" ({phase})")
        trainer_cfg = TrainerConfig(
            label=label,
            epochs=cfg.epochs if epochs is None else epochs,
            seed=cfg.seed if seed is None else seed,
            checkpoint_every=cfg.checkpoint_every,
            grad_clip=cfg.grad_clip,
            patience=cfg.patience,
        )
        return Trainer(trainer_cfg, self.runtime, path, key, self.callbacks)

    # ---- persistence, once for every model -----------------------------------------------
    def save(self, directory: Path) -> None:
        """Write `state.pt`, the artifacts and `manifest.json` (last: a directory without a
        manifest is never taken for a model)."""
        if self.manifest is None:
            raise RuntimeError(f"{self.name} model is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.get_state(), directory / STATE)
        self.save_artifacts(directory)
        (directory / MANIFEST).write_text(json.dumps(self.manifest.to_json(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> Recommender:
        """Read a model written by `save`; refuses another model's directory or format."""
        directory = Path(directory)
        manifest = ModelManifest.read(directory)
        if manifest.model_name != cls.name:
            raise ModelFormatError(
                f"{directory} holds a {manifest.model_name!r} model, not {cls.name!r}"
            )
        if manifest.format_version != cls.format_version:
            raise ModelFormatError(
                f"{directory}: {cls.name} model format {manifest.format_version}, this tvrec "
                f"reads format {cls.format_version}; retrain it (`tvrec train --stage {cls.name}`)"
            )
        model = cls(cls.parse_config(manifest.config), Runtime.cpu())
        model.set_state(_saved_state(directory / STATE, cls.name))
        model.manifest = manifest
        return model


def _saved_state(path: Path, name: str) -> dict[str, Any]:
    """A saved model's tensors, or a ModelFormatError naming the file when it is missing,
    truncated or not what `save` wrote (torch says so with a RuntimeError from its reader)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        why = "missing"
    except PermissionError as exc:
        why = exc.strerror or "permission denied"
    except (OSError, EOFError, RuntimeError):  # torch's zip reader on a cut-off file
        why = "truncated or damaged"
    except pickle.UnpicklingError:  # not tensors and plain values: not a file `save` wrote
        why = "not a model file tvrec wrote"
    raise ModelFormatError(
        f"{path}: the saved model cannot be read ({why}); retrain it (`tvrec train --stage {name}`)"
    )


def config_problems(name: str, config: type[ModelConfig], exc: ValidationError) -> str:
    """One line per bad setting of model `name`: `models.<name>.<field>: <why>`."""
    from tvrec.pipelines.config import setting_problem

    return "; ".join(setting_problem(e, config, f"models.{name}") for e in exc.errors())
