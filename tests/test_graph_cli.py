"""GNN-TV through the CLI on a catalogue without credits: `tvrec train --stage graph` trains on
the relations that remain, says so in its run summary and its manifest, and the trained model
is served (`recommend`, `query --user`)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from tvrec.jobs.cli import app

runner = CliRunner()
SMALL = "[models.graph]\nepochs = 2\ndim = 16\nheads = 2\nbatch_size = 512\nmin_steps = 0\n"


def _ok(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def test_graph_without_credits_trains_says_so_and_serves(world_dir: Path, tmp_path: Path) -> None:
    (world_dir / "credits.parquet").unlink()  # a catalogue with no cast or crew at all
    work = tmp_path / "work"
    _ok("ingest", str(world_dir), "--workdir", str(work))
    (work / "tvrec.toml").write_text(SMALL, encoding="utf-8")
    _ok("features", "build", "--workdir", str(work))
    summary = _ok("train", "--stage", "graph", "--workdir", str(work))
    assert "no credits" in summary and "remaining relations" in summary, summary
    manifest = json.loads((work / "models" / "graph" / "manifest.json").read_text())
    assert "no credits" in manifest["metrics"]["graph_notes"]

    _ok("recommend", "--model", "graph", "--workdir", str(work))
    user = pl.read_parquet(world_dir / "events.parquet")["user_id"][0]
    res = runner.invoke(app, ["query", "--user", user, "-k", "5", "--json", "--workdir", str(work)])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["results"]) == 5
