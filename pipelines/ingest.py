"""`tvrec ingest`: validate a dataset and publish it as the work directory's canonical lake."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .contract import SCHEMAS, Dataset, canonicalize
from .workdir import Workdir

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


def ingest(source: Path, fmt: str, workdir: Workdir) -> IngestSummary:
    """Read `source` with the adapter for `fmt`, validate it, and swap it in as the lake.

    Validation happens entirely in memory before anything is written, so bad input leaves the
    work directory exactly as it was.
    """
    from .adapters import load_raw

    t0 = time.perf_counter()
    dataset = canonicalize(load_raw(Path(source), fmt))
    publish_lake(dataset, workdir, fmt)
    return IngestSummary(
        dataset.name,
        fmt,
        {k: v.height for k, v in dataset.tables().items()},
        dataset.timed,
        dataset.notes,
        time.perf_counter() - t0,
    )


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
