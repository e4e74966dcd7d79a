"""Vocabularies of the catalogue's categorical columns: value -> integer id.

Each vocabulary is the sorted list of distinct non-empty values found in the shows table; a
value's id is its position + 1, and id 0 is reserved for missing or unknown values (a model
keeps one embedding row for "unknown"). Ids are only stable for one saved vocab.json: a
catalogue with new values gives a new vocabulary, so models must be trained and served with
the same file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

UNKNOWN = 0
# vocabulary kind -> column of the canonical shows table it is read from
SOURCES: dict[str, str] = {
    "genres": "genres",
    "networks": "network",
    "platforms": "platforms",
    "age_ratings": "age_rating",
    "types": "type",
    "languages": "language",
}


@dataclass
class Vocab:
    """Sorted distinct values per kind; `index(kind, value)` is 0 for unknown/missing."""

    genres: list[str]
    networks: list[str]
    platforms: list[str]
    age_ratings: list[str]
    types: list[str]
    languages: list[str]
    _ids: dict[str, dict[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._ids = {kind: {v: i + 1 for i, v in enumerate(self.values(kind))} for kind in SOURCES}

    def values(self, kind: str) -> list[str]:
        """The vocabulary of `kind` (a key of SOURCES); id of values[i] is i + 1."""
        if kind not in SOURCES:
            raise KeyError(f"unknown vocabulary kind {kind!r}; one of {', '.join(SOURCES)}")
        return getattr(self, kind)

    def ids(self, kind: str) -> dict[str, int]:
        """value -> id for `kind` (ids start at 1)."""
        self.values(kind)  # validates kind
        return self._ids[kind]

    def index(self, kind: str, value: str | None) -> int:
        """The id of `value` in vocabulary `kind`; 0 when missing or not in the vocabulary."""
        if value is None:
            return UNKNOWN
        return self.ids(kind).get(value, UNKNOWN)

    def size(self, kind: str) -> int:
        """Number of ids of `kind`, including the reserved 0."""
        return len(self.values(kind)) + 1

    def to_json(self) -> dict[str, list[str]]:
        return {kind: list(self.values(kind)) for kind in SOURCES}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocab:
        """Inverse of `to_json`; kinds absent from `data` are empty, extra keys are an error."""
        extra = set(data) - set(SOURCES)
        if extra:
            raise ValueError(f"unknown vocabulary kinds: {', '.join(sorted(extra))}")
        return cls(**{kind: [str(v) for v in data.get(kind, [])] for kind in SOURCES})


def _distinct(shows: pl.DataFrame, column: str) -> list[str]:
    """Sorted distinct non-empty values of a string or list[str] column."""
    if column not in shows.columns:
        return []
    col = shows[column]
    if isinstance(col.dtype, pl.List):
        col = col.explode()
    values = col.cast(pl.String).drop_nulls().str.strip_chars()
    return sorted(set(values.filter(values != "").to_list()))


def build_vocab(shows: pl.DataFrame) -> Vocab:
    """Vocabularies of a canonical shows table."""
    return Vocab(**{kind: _distinct(shows, col) for kind, col in SOURCES.items()})
