"""Content inputs shared by the content models (multimodal transformer, contrastive encoder).

What a show *is*, as tensors, from the catalogue content `pipelines.model_inputs` hands in
(read point in time there: metadata and the MiniLM text embedding through the model's Feast
FeatureService, cast and crew from the graph edge tables, raw "title. description. Genres" text for
fine-tuning a text encoder). And what users did: each user's recent shows, and co-watched
show pairs, from the positives of the training set (never from a side channel).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from tvrec.pipelines.model_inputs import CatalogueContent, TrainingData

UNKNOWN = 0  # id 0 in every vocabulary: missing / unseen in training


# ---- the content tensors a model consumes ------------------------------------------------
@dataclass(frozen=True)
class ShowTensors:
    """The encoder's inputs for a batch of shows; id 0 = padding/unknown everywhere."""

    text: torch.Tensor  # (b, text_dim) float32, L2-normalised MiniLM embedding
    genres: torch.Tensor  # (b, max_genres) long
    platforms: torch.Tensor  # (b, max_platforms) long
    network: torch.Tensor  # (b,) long
    age_rating: torch.Tensor  # (b,) long
    show_type: torch.Tensor  # (b,) long
    language: torch.Tensor  # (b,) long
    year_bucket: torch.Tensor  # (b,) long: 0 unknown, else 5-year buckets
    seasons_bucket: torch.Tensor  # (b,) long: 0 unknown, 1, 2, 3-4, 5+
    runtime_bucket: torch.Tensor  # (b,) long: 0 unknown, <=25, <=45, <=70, longer
    people: torch.Tensor  # (b, max_people) long, ids from the model's person vocabulary

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, name) for name in self.names())

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> ShowTensors:
        return ShowTensors(*(fn(t) for t in self.tensors()))

    def rows(self, index: torch.Tensor) -> ShowTensors:
        return self.map(lambda t: t[index])

    def take(self, rows: torch.Tensor, text: torch.Tensor | None = None) -> ShowTensors:
        """These rows; `text` replaces the pooled text (fine-tuning computes it per step)."""
        taken = self.rows(rows)
        return taken if text is None else dataclasses.replace(taken, text=text)

    def to(self, device: torch.device) -> ShowTensors:
        return self.map(lambda t: t.to(device))

    @classmethod
    def concat(cls, parts: list[ShowTensors]) -> ShowTensors:
        columns = zip(*(p.tensors() for p in parts), strict=True)
        return cls(*(torch.cat(c) for c in columns))

    def __len__(self) -> int:
        return len(self.text)


@dataclass
class ShowContent:
    """The whole catalogue's content, row i = show_ids[i]: the encoders' tensors and what
    else models read about a show."""

    show_ids: list[str]
    tensors: ShowTensors  # (n_shows, ...) each
    premiered_days: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # ^ (n_shows,) int64: premiere as days since 1970-01-01, -1 unknown (the show prior's age)
    raw_text: list[str] = field(default_factory=list)
    person_vocab: dict[str, int] = field(default_factory=dict)
    vocab_sizes: dict[str, int] = field(default_factory=dict)  # embedding table sizes


def _pad(lists: list[list[int]], width: int | None = None) -> torch.Tensor:
    width = width or max((len(x) for x in lists), default=1) or 1
    out = torch.zeros(len(lists), width, dtype=torch.long)  # (n, width)
    for i, ids in enumerate(lists):
        ids = [int(v) for v in ids][:width]
        if ids:
            out[i, : len(ids)] = torch.tensor(ids)
    return out


def _bucket(values: pd.Series, edges: list[float]) -> torch.Tensor:
    """0 for unknown (null or negative), else 1 + the bucket index."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    out = np.where(np.isnan(v) | (v < 0), 0, 1 + np.searchsorted(edges, v, side="right"))
    return torch.as_tensor(out, dtype=torch.long)


def show_content(
    catalogue: CatalogueContent,
    positives: pd.DataFrame,
    person_vocab: dict[str, int] | None = None,
    max_people: int = 12,
) -> ShowContent:
    """The catalogue's content (handed in by `pipelines.model_inputs`) as tensors.

    `person_vocab` (person_id -> id) comes from training; None builds it from the people of
    shows that have viewers in `positives`, so people seen only on unwatched shows map to the
    shared unknown id — what a new show's cast looks like to a trained model.
    """
    feats, credits, show_ids = catalogue.features, catalogue.credits, catalogue.show_ids
    meta = lambda c: feats[f"show_metadata__{c}"]  # noqa: E731
    if person_vocab is None:
        watched = set(positives["show_id"])
        people = sorted({p for s, ps in credits.items() if s in watched for p in ps})
        person_vocab = {p: i + 1 for i, p in enumerate(people)}
    year = meta("year").where(meta("year") > 0)
    tensors = ShowTensors(
        text=torch.tensor(
            np.stack(feats["show_text__text_embedding"].to_numpy()), dtype=torch.float32
        ),
        genres=_pad(list(meta("genre_ids"))),
        platforms=_pad(list(meta("platform_ids"))),
        network=torch.as_tensor(meta("network_id").to_numpy(), dtype=torch.long),
        age_rating=torch.as_tensor(meta("age_rating_id").to_numpy(), dtype=torch.long),
        show_type=torch.as_tensor(meta("type_id").to_numpy(), dtype=torch.long),
        language=torch.as_tensor(meta("language_id").to_numpy(), dtype=torch.long),
        year_bucket=_bucket(year, [1960, 1980, 1990, 2000, 2005, 2010, 2015, 2020, 2025]),
        seasons_bucket=_bucket(meta("seasons").where(meta("seasons") > 0), [1, 2, 4]),
        runtime_bucket=_bucket(
            meta("runtime_minutes").where(meta("runtime_minutes") > 0), [25, 45, 70]
        ),
        people=_pad(
            [[person_vocab.get(p, UNKNOWN) for p in credits.get(s, [])] for s in show_ids],
            max_people,
        ),
    )
    return ShowContent(
        show_ids=list(show_ids),
        tensors=tensors,
        premiered_days=meta("premiered_days").fillna(-1).to_numpy(dtype=np.int64),
        raw_text=list(catalogue.raw_text),
        person_vocab=person_vocab,
        vocab_sizes={k: len(v) + 1 for k, v in catalogue.vocab.items() if isinstance(v, list)}
        | {"people": len(person_vocab) + 1, "year": 11, "seasons": 5, "runtime": 5},
    )


def content_of(data: TrainingData, max_people: int = 12) -> ShowContent:
    """The content tensors of a training set's catalogue; the model must declare
    `needs_content` so that the job hands the catalogue's content in."""
    if data.content is None:
        raise ValueError("this model reads show content: build its inputs with content=True")
    return show_content(data.content, data.positives(), max_people=max_people)


def user_histories(data: TrainingData, max_len: int = 50) -> dict[str, list[str]]:
    """Each user's most recent `max_len` distinct shows (oldest first) before the as-of."""
    pos = data.positives().sort_values("event_timestamp")
    return {u: g.tolist()[-max_len:] for u, g in pos.groupby("user_id")["show_id"]}


def user_sequences(
    data: TrainingData, rows: dict[str, int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per user with 2+ distinct shows: show rows in watch order and the day (since
    1970-01-01) each was first watched, both (n_i,) int64."""
    pos = data.positives().sort_values("event_timestamp")
    pos = pos[pos["show_id"].isin(rows)]
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    days = (pd.to_datetime(pos["event_timestamp"], utc=True) - epoch).dt.days
    frame = pd.DataFrame({"user": pos["user_id"], "row": pos["show_id"].map(rows), "day": days})
    sequences, times = [], []
    for _, g in frame.groupby("user", sort=True):
        if len(g) >= 2:
            sequences.append(g["row"].to_numpy(np.int64))
            times.append(g["day"].to_numpy(np.int64))
    return sequences, times


def cowatch_pairs(data: TrainingData, max_per_user: int = 30, seed: int = 0) -> pd.DataFrame:
    """(show_a, show_b) pairs watched by the same user: positives for show-show objectives.

    Each user contributes pairs among at most `max_per_user` of their shows (consecutive in
    watch order, so pairs reflect taste at one time), bounding the quadratic blow-up.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for _, g in data.positives().sort_values("event_timestamp").groupby("user_id")["show_id"]:
        shows = g.tolist()
        if len(shows) > max_per_user:
            start = rng.integers(0, len(shows) - max_per_user + 1)
            shows = shows[start : start + max_per_user]
        rows.extend(itertools.pairwise(shows))
    return pd.DataFrame(rows, columns=["show_a", "show_b"])
