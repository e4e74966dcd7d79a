"""Atomic publishing: a failed write leaves the work directory exactly as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from tvrec.pipelines.workdir import Workdir, snapshot_tree


def _publish_text(wd: Workdir, text: str) -> None:
    with wd.publish("lake") as staging:
        (staging / "t.txt").write_text(text)


def test_publish_swaps_and_removes_old_version(tmp_path: Path) -> None:
    wd = Workdir(tmp_path / "w")
    _publish_text(wd, "one")
    first = wd.lake.resolve()
    _publish_text(wd, "two")
    assert (wd.lake / "t.txt").read_text() == "two"
    assert not first.exists()
    assert len(list((wd.root / ".versions").iterdir())) == 1


def test_failed_publish_leaves_tree_unchanged(tmp_path: Path) -> None:
    wd = Workdir(tmp_path / "w")
    _publish_text(wd, "good")
    before = snapshot_tree(wd.root)
    with pytest.raises(RuntimeError), wd.publish("lake") as staging:
        (staging / "t.txt").write_text("half")
        raise RuntimeError("killed mid-write")
    assert snapshot_tree(wd.root) == before
    assert (wd.lake / "t.txt").read_text() == "good"


def test_failed_first_publish_creates_nothing(tmp_path: Path) -> None:
    wd = Workdir(tmp_path / "never")
    with pytest.raises(ValueError), wd.publish("lake"):
        raise ValueError("bad input")
    assert not wd.root.exists()


def test_sweep_removes_what_killed_writers_left(tmp_path: Path) -> None:
    wd = Workdir(tmp_path / "work")
    with wd.publish("lake") as staging:
        (staging / "events.parquet").write_text("x")
    live = wd.lake.resolve()
    orphan = wd.root / ".versions" / "features-20260101T000000-abc123"  # never linked
    orphan.mkdir()
    temps = [
        wd.root / ".lake.link-ab12cd",
        wd.root / "cache" / ".text.parquet.x1y2.tmp",
        wd.root / "tables" / "user_topk" / ".v3.ab12cd.parquet.tmp",
    ]
    for t in temps:
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_text("half")
    kept = [wd.root / ".schedule.json.123.tmp", wd.root / "cache" / "text.parquet"]
    for k in kept:
        k.write_text("keep")
    removed = set(wd.sweep())
    assert removed == {orphan, *temps}
    assert live.exists() and all(k.exists() for k in kept)
    assert not orphan.exists() and not any(t.exists() for t in temps)
