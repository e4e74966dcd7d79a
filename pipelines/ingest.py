"""`tvrec ingest`: validate a dataset and publish it as the work directory's canonical lake."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from .contract import SCHEMAS, Dataset, canonicalize
from .workdir import Workdir

if TYPE_CHECKING:
    from .config import IngestSettings

MANIFEST = "manifest.json"


@dataclass
class IngestSummary:
    name: str
    format: str
    rows: dict[str, int]
    timed: bool
    notes: list[str]
    seconds: float

    def to_json(self) -> dict:
        return self.__dict__.copy()


def load_dataset(source: Path, fmt: str, options: IngestSettings) -> Dataset:
    """Read `source` with the adapter for `fmt` and validate it, in memory: bad input raises
    (DataError) before anything is written, and needs no lock on the work directory."""
    from .adapters import load_raw

    raw = load_raw(Path(source), fmt, options.encoding)
    return canonicalize(raw, (options.min_year, options.max_year))


def summarize(dataset: Dataset, fmt: str, seconds: float) -> IngestSummary:
    rows = {k: v.height for k, v in dataset.tables().items()}
    return IngestSummary(dataset.name, fmt, rows, dataset.timed, dataset.notes, seconds)


def ingest(
    source: Path, fmt: str, workdir: Workdir, options: IngestSettings | None = None
) -> IngestSummary:
    """Validate `source` (`load_dataset`) and swap it in as the lake. `options` (encoding,
    plausible event years) default to the `[ingest]` settings of the work directory."""
    from .config import Settings

    t0 = time.perf_counter()
    dataset = load_dataset(source, fmt, options or Settings.load(workdir.root).ingest)
    publish_lake(dataset, workdir, fmt)
    return summarize(dataset, fmt, time.perf_counter() - t0)


def publish_lake(dataset: Dataset, workdir: Workdir, fmt: str = "contract") -> None:
    with workdir.publish("lake") as staging:
        for name, table in dataset.tables().items():
            table.write_parquet(staging / f"{name}.parquet")
        workdir.write_json(staging / MANIFEST, {**dataset.manifest(), "format": fmt})


def read_lake(workdir: Workdir) -> Dataset:
    """The published canonical tables."""
    import json

    lake = workdir.require("lake", "run `tvrec ingest DIR` (or `tvrec demo`) first")
    manifest = json.loads((lake / MANIFEST).read_text())
    tables = {name: pl.read_parquet(lake / f"{name}.parquet") for name in SCHEMAS}
    return Dataset(
        manifest["name"],
        tables["shows"],
        tables["events"],
        tables["credits"],
        tables["users"],
        manifest.get("timed", True),
        manifest.get("notes", []),
    )
