"""What a model is handed to train on: built here from the work directory, so that no model
opens the work directory, the lake or Feast itself.

    TrainingData
      parts            the point-in-time training set of the model's FeatureService (Feast),
                       as Parquet parts in time order (negatives and features included),
                       streamed by `rows()` (a torch IterableDataset)
      frame            its positives: user_id, show_id, event_timestamp, label (= 1)
      show_ids         the whole catalogue, so unseen shows still get an embedding
      content          CatalogueContent: each show's features as of the as-of time (Feast),
                       its cast and crew (graph edge table) and raw text (lake) — for models
                       that read content
      graph            the heterogeneous TV graph as of the as-of, a PyG HeteroData
                       (pipelines/graph_inputs.py) — for graph models
      checkpoint_dir   where the trainer keeps its checkpoints for this model
      members          for a model built on other models (the ensemble): each member's own
                       inputs and its published model (jobs/train.py hands them in)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

from .features.text import show_text
from .workdir import Workdir

CHECKPOINTS = "checkpoints"
TRAINING = "training"  # under the work directory's cache: each service's training-set parts
KEYS = ["user_id", "show_id", "event_timestamp", "label"]


@dataclass
class CatalogueContent:
    """Every catalogue show's content as of the training set's as-of time; row i of each
    per-show field is `show_ids[i]`."""

    show_ids: list[str]
    features: pd.DataFrame  # the FeatureService's show features (`<view>__<feature>` columns)
    credits: dict[str, list[str]]  # show_id -> person ids, in credit order
    vocab: dict[str, list]  # the feature build's vocabularies (genres, networks, ...)
    raw_text: list[str]  # "title. description. Genre, Genre" (features.text.show_text)
    titles: list[str] = field(default_factory=list)  # the titles alone (empty: not read)


@dataclass
class MemberInputs:
    """What a member model of another (the ensemble) is handed: its own training data (None
    for a model only its published copy is read of), its settings, and the copy published by
    its own stage (None when it was not trained)."""

    data: TrainingData | None
    params: dict[str, Any]  # `[models.<name>]` of tvrec.toml
    published: Any = None  # the member's published Recommender


@dataclass
class TrainingData:
    """A Feast training set plus what a model needs to index it.

    `frame` holds rows of user_id, show_id, event_timestamp, label (1 = watched, 0 = sampled
    negative): the positives when built by `model_inputs` (small: four columns per event);
    the whole set — the FeatureService's columns (`<view>__<feature>`) and the negatives — is
    in `parts`, read in batches through `rows()`.
    """

    frame: pd.DataFrame
    feature_service: str
    as_of: datetime
    data_snapshot: str
    show_ids: list[str]  # the whole catalogue, so unseen shows still get an embedding
    content: CatalogueContent | None = None
    checkpoint_dir: Path | None = None
    parts: tuple[Path, ...] = ()
    graph: Any = None  # torch_geometric HeteroData (pipelines/graph_inputs.py) when asked for
    members: dict[str, MemberInputs] = field(default_factory=dict)  # name -> its inputs

    def rows(self, columns: list[str] | None = None, batch_rows: int = 65_536) -> Any:
        """The training set's rows in batches (dicts of numpy columns): a torch
        IterableDataset over the parts, split between DataLoader workers by part."""
        from .streaming import TrainingRows

        return TrainingRows(list(self.parts), columns, batch_rows)

    def positives(self) -> pd.DataFrame:
        """Unique watched (user_id, show_id) pairs with their first event_timestamp."""
        return watched_pairs(self.frame.loc[self.frame["label"] == 1])


def watched_pairs(events: pd.DataFrame) -> pd.DataFrame:
    """Unique watched (user_id, show_id) pairs of `events` with their first event_timestamp:
    a model's positives (`TrainingData.positives`), or a log's before any training set."""
    pos = events[["user_id", "show_id", "event_timestamp"]]
    return pos.sort_values("event_timestamp").drop_duplicates(["user_id", "show_id"])


def lake_snapshot(wd: Workdir) -> str:
    """Content hash of the published lake: what a model and an index were built from."""
    digest = hashlib.sha256()
    for path in sorted(wd.lake.glob("*.parquet")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def model_inputs(
    wd: Workdir,
    feature_service: str,
    *,
    negatives: int = 0,
    content: bool = False,
    content_service: str | None = None,
    model_name: str | None = None,
    graph: bool = False,
    graph_events: bool = False,
) -> TrainingData:
    """The inputs of a model trained from `feature_service`, as of the current feature build;
    `content` adds the catalogue's content (its show features from `content_service`, else
    `feature_service`), `graph` the TV graph (`graph_events`: with the events it was built
    from, to build it again as of an earlier cut), `model_name` a checkpoint directory."""
    from .build import read_manifest
    from .ingest import read_lake
    from .training import read_parts, training_set_parts

    manifest = read_manifest(wd)
    as_of = datetime.fromisoformat(manifest["as_of"])
    out = wd.cache / TRAINING / feature_service
    parts = training_set_parts(wd, feature_service, out, as_of=as_of, negatives=negatives)
    frame = read_parts(parts, KEYS)
    frame = frame[frame["label"] == 1].reset_index(drop=True)
    shows = read_lake(wd).shows["show_id"].to_list()
    return TrainingData(
        frame,
        feature_service,
        as_of,
        lake_snapshot(wd),
        shows,
        content=(
            catalogue_content(wd, content_service or feature_service, shows, as_of)
            if content
            else None
        ),
        checkpoint_dir=wd.root / CHECKPOINTS / model_name if model_name else None,
        parts=tuple(parts),
        graph=_graph(wd, shows, as_of, manifest, graph_events) if graph else None,
    )


def _graph(
    wd: Workdir, show_ids: list[str], as_of: datetime, manifest: dict[str, Any], events: bool
) -> Any:
    from .graph_inputs import CowatchRule, graph_inputs

    return graph_inputs(wd, show_ids, as_of, CowatchRule.of(manifest), keep_events=events)


def catalogue_content(
    wd: Workdir, service: str, show_ids: list[str], as_of: datetime
) -> CatalogueContent:
    """Each show's features through Feast's point-in-time join as of `as_of`, its credits
    and its text."""
    from .training import entity_features

    raw_text, titles = _text(wd, show_ids)
    return CatalogueContent(
        show_ids=list(show_ids),
        features=entity_features(wd, service, "show_id", list(show_ids), as_of),
        credits=_credits(wd.features / "graph" / "show_person.parquet"),
        vocab=json.loads((wd.features / "vocab.json").read_text()),
        raw_text=raw_text,
        titles=titles,
    )


def _credits(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        return {}
    edges = pl.read_parquet(path).group_by("show_id", maintain_order=True).agg("person_id")
    return dict(zip(edges["show_id"].to_list(), edges["person_id"].to_list(), strict=True))


def _text(wd: Workdir, show_ids: list[str]) -> tuple[list[str], list[str]]:
    """Each show's text as the Feast text embedding reads it (`show_text`: "title.
    description. Genre, Genre") and its title alone, from one read of the lake."""
    columns = ["show_id", "title", "description", "genres"]
    shows = pl.read_parquet(wd.lake / "shows.parquet", columns=columns)
    raw = shows.select(show_text())["text"].to_list()
    text = dict(zip(shows["show_id"], raw, strict=True))
    title = dict(zip(shows["show_id"], shows["title"].fill_null("").to_list(), strict=True))
    return [text.get(s, "") for s in show_ids], [title.get(s, "") for s in show_ids]
