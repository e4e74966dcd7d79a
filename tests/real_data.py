"""Real datasets as the slow tests use them: a dataset's benchmark split and tvrec's own
pipeline on it, as `tvrec evaluate` runs them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tvrec.jobs.evaluation.pipeline import SplitPipeline
from tvrec.jobs.evaluation.splitting import Split, split
from tvrec.pipelines.adapters import load_raw
from tvrec.pipelines.config import Settings
from tvrec.pipelines.contract import Dataset, canonicalize


@dataclass
class SplitRun:
    ds: Dataset
    split: Split
    pipeline: SplitPipeline


def split_run(path: Path, fmt: str, work: Path) -> SplitRun:
    """The benchmark split of the dataset at `path` and a fresh pipeline in `work`; the test
    is skipped when the dataset is absent."""
    if not path.is_dir():
        pytest.skip(f"shared dataset not available at {path}")
    ds = canonicalize(load_raw(path, fmt))
    return SplitRun(ds, split(ds), SplitPipeline(ds, Settings.load(work), work))
