"""Training sets streamed in parts: the same rows as one frame, read back in batches through a
torch IterableDataset, exported one part at a time, and never holding negatives in `frame`."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from tvrec.jobs.cli import app
from tvrec.jobs.train import training_data
from tvrec.models.registry import model_class
from tvrec.pipelines.training import ORDER, read_parts, training_set_parts
from tvrec.pipelines.workdir import Workdir

SERVICE = "collaborative_v1"


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(ORDER[0], ascending=ORDER[1], ignore_index=True)


def test_parts_hold_the_same_rows_as_one_part(built_workdir: Workdir, tmp_path: Path) -> None:
    one = training_set_parts(built_workdir, SERVICE, tmp_path / "one", negatives=0)
    many = training_set_parts(
        built_workdir, SERVICE, tmp_path / "many", negatives=0, part_events=700
    )
    assert len(one) == 1 and len(many) > 3
    whole = read_parts(one)
    pd.testing.assert_frame_equal(_sorted(read_parts(many)), _sorted(whole))
    # in time order: every part ends at or before the next one starts
    bounds = [pq.read_table(p, columns=["event_timestamp"])[0] for p in many]
    assert all(a[-1].as_py() <= b[0].as_py() for a, b in itertools.pairwise(bounds))


def test_each_part_samples_its_own_negatives_point_in_time(
    built_workdir: Workdir, tmp_path: Path
) -> None:
    parts = training_set_parts(built_workdir, SERVICE, tmp_path / "p", negatives=2, part_events=900)
    frame = read_parts(parts, ["user_id", "show_id", "event_timestamp", "label"])
    positives = frame[frame["label"] == 1]
    negatives = frame[frame["label"] == 0]
    assert len(negatives) > 1.5 * len(positives)
    first = positives.groupby(["user_id", "show_id"])["event_timestamp"].min().rename("first")
    joined = negatives.join(first, on=["user_id", "show_id"])
    # a negative is never a show the user had watched before the row's own time
    assert not (joined["first"] < joined["event_timestamp"]).any()


def test_model_inputs_stream_the_set_and_keep_only_positives_in_memory(
    built_workdir: Workdir,
) -> None:
    data = training_data(built_workdir, model_class("collaborative"))
    assert list(data.frame.columns) == ["user_id", "show_id", "event_timestamp", "label"]
    assert (data.frame["label"] == 1).all()
    rows = data.rows(["user_id", "label"], batch_rows=1000)
    assert len(rows) == sum(pq.ParquetFile(p).metadata.num_rows for p in data.parts)
    batches = list(DataLoader(rows, batch_size=None))
    assert max(len(b["user_id"]) for b in batches) <= 1000
    assert sum(len(b["label"]) for b in batches) == len(rows)
    assert sum(int((b["label"] == 1).sum()) for b in batches) == len(data.frame)


def test_cli_export_writes_every_part(built_workdir: Workdir, tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("train.parquet", "train.csv"):
        out = tmp_path / name
        args = ["features", "training-set", "--out", str(out), "--negatives", "1"]
        res = runner.invoke(app, [*args, "--workdir", str(built_workdir.root)])
        assert res.exit_code == 0, res.output
        n = len(pd.read_parquet(out)) if name.endswith(".parquet") else len(pd.read_csv(out))
        assert f"wrote {n:,} rows" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.csv", "train.parquet"]


def test_cli_refuses_an_as_of_before_every_event(built_workdir: Workdir, tmp_path: Path) -> None:
    """It wrote an empty training set and exited 0; `tvrec run` and `features build` refuse
    such an as-of, and so does this, before any file is written."""
    out = tmp_path / "train.parquet"
    args = ["features", "training-set", "--out", str(out), "--as-of", "1990-01-01"]
    res = CliRunner().invoke(app, [*args, "--workdir", str(built_workdir.root)])
    message = " ".join(res.output.split())
    assert res.exit_code == 2 and "is not after the first event" in message, res.output
    assert list(tmp_path.iterdir()) == []
