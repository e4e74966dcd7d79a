"""The interface every tvrec model implements (like `implicit`'s RecommenderBase).

A model is fitted from a point-in-time training set that Feast returned for its
FeatureService, yields show and user embeddings in one space (so a FAISS inner-product index
over show embeddings answers user and show queries), scores user–show pairs, and saves itself
with a manifest that ties it to its data snapshot and as-of time.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

MANIFEST = "manifest.json"


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, directory: Path) -> ModelManifest:
        return cls(**json.loads((Path(directory) / MANIFEST).read_text()))


@dataclass
class TrainingData:
    """A Feast training set plus what a model needs to index it.

    `frame` has user_id, show_id, event_timestamp, label (1 = watched, 0 = sampled negative)
    and the FeatureService's columns (`<view>__<feature>`).
    """

    frame: pd.DataFrame
    feature_service: str
    as_of: datetime
    data_snapshot: str
    show_ids: list[str]  # the whole catalogue, so unseen shows still get an embedding
    workdir: Path | None = None  # for side tables: lake text, graph edge tables

    def positives(self) -> pd.DataFrame:
        """Unique watched (user_id, show_id) pairs with their first event_timestamp."""
        pos = self.frame.loc[self.frame["label"] == 1, ["user_id", "show_id", "event_timestamp"]]
        return pos.sort_values("event_timestamp").drop_duplicates(["user_id", "show_id"])


class Recommender(ABC):
    """One model behind the shared interface."""

    name: ClassVar[str]
    feature_service: ClassVar[str]
    negatives: ClassVar[int] = 0  # sampled negatives per positive wanted in the training set
    # served vectors end in a prior column: show [vector, prior], user [vector, 1]
    prior_column: ClassVar[bool] = False

    manifest: ModelManifest | None = None

    config_class: ClassVar[type]  # the hyper-parameter dataclass, e.g. CollaborativeConfig

    @classmethod
    def create(cls, runtime: Any, overrides: Mapping[str, Any] | None = None) -> Recommender:
        """A fresh, untrained model on this runtime (the hardware profile), its config's
        defaults replaced by `overrides` (from `[models.<name>]` in tvrec.toml)."""
        config = dataclasses.replace(cls.config_class(), **dict(overrides or {}))
        return cls(config=config, runtime=runtime)  # type: ignore[call-arg]

    @abstractmethod
    def fit(self, data: TrainingData) -> dict[str, Any]:
        """Train; returns per-epoch metrics (also stored in the manifest)."""

    @abstractmethod
    def show_embeddings(self) -> tuple[list[str], np.ndarray]:
        """Show ids and their embeddings, shape (n_shows, dim), float32."""

    @abstractmethod
    def user_embeddings(self, user_ids: list[str]) -> np.ndarray:
        """Embeddings of these users, shape (n_users, dim); unknown users get zeros (in the
        prior column, if the model has one: 1, so the show prior ranks for them)."""

    def similarity_vectors(self) -> np.ndarray:
        """Show vectors for show-to-show similarity, (n_shows, d): the served ones without
        the prior column (a show's popularity says nothing about what it is like)."""
        vectors = self.show_embeddings()[1]
        return vectors[:, :-1] if self.prior_column else vectors

    def known_users(self) -> list[str]:
        return []

    def score(self, user_ids: list[str], show_ids: list[str]) -> np.ndarray:
        """Score of each (user_ids[i], show_ids[i]) pair, shape (n,)."""
        ids, shows = self.show_embeddings()
        pos = {s: i for i, s in enumerate(ids)}
        users = self.user_embeddings(user_ids)  # (n, dim)
        items = shows[[pos[s] for s in show_ids]]  # (n, dim)
        return np.einsum("nd,nd->n", users, items)

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write weights and `manifest.json` into `directory`."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Recommender:
        """Read a model written by `save`."""
