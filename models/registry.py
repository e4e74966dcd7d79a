"""The model registry: name -> model class, the one list every job and setting reads.

`tvrec train --stage`, the `[models.<name>]` sections of tvrec.toml and `tvrec evaluate
--models` all take their choices from here. Adding a model is one module under `models/` and
one line below. Classes load lazily (`module:Class`), so a command imports only the models it
touches, and nothing here imports torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import ModelConfig, Recommender

MODELS: dict[str, str] = {
    "collaborative": "tvrec.models.collaborative:CollaborativeModel",
    "multimodal": "tvrec.models.multimodal:MultimodalModel",
    "contrastive": "tvrec.models.contrastive:ContrastiveModel",
    "temporal": "tvrec.models.temporal:TemporalModel",
    "graph": "tvrec.models.graph:GraphModel",
    "meta": "tvrec.models.meta:MetaModel",
    "ease": "tvrec.models.ease:EASEModel",
    "ensemble": "tvrec.models.ensemble:EnsembleModel",
}


class UnknownModelError(ValueError):
    """A model name that is not in the registry."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown model {name!r}; available: {', '.join(MODELS)}")


def names() -> tuple[str, ...]:
    """Registered model names, in registration order."""
    return tuple(MODELS)


def model_class(name: str) -> type[Recommender]:
    """The class registered as `name` (imported on first use)."""
    if name not in MODELS:
        raise UnknownModelError(name)
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def config_class(name: str) -> type[ModelConfig]:
    """The hyper-parameter class of model `name`: the single source of its settings."""
    return model_class(name).config_class


def load_model(directory: Path) -> Recommender:
    """The model saved in `directory`, by the class its manifest names."""
    from .base import ModelManifest

    return model_class(ModelManifest.read(directory).model_name).load(directory)
