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
