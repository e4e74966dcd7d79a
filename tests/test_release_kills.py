"""A nightly run killed (SIGKILL) between any two of its stages, or inside publishing, never
takes serving down: `tvrec query` keeps answering from the previous release, whole (the same
answer, the same model), `publish --list` shows it current, and the next clean run sweeps
everything the killed ones left behind (no temp files, no unserved release or version).

The points are the run's own: a first run logs every point it passes
(TVREC_TEST_POINTS_LOG, `pipelines/testhooks.py`); each later run is paused at one of them
(TVREC_TEST_PAUSE_AT) and killed there. The kills pile up on one work directory, as they would
on a machine that keeps crashing, before one clean run.

Fast suite: three points (mid-training, between the two tables, just before the switch).
Slow suite: every point of the run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tvrec.jobs.release import list_releases, require_release
from tvrec.pipelines.synthetic import WorldConfig, write_world
from tvrec.pipelines.testhooks import MARKER, PAUSE_AT, POINTS_LOG

FAST_POINTS = ("before:train collaborative", "table:show_similar:copy", "release:switch")
# Points after "release:switch" (Feast's online refresh) find the new release current: the
# switch is the one step, and what follows it only mirrors the release into Feast.
USER = "u001"
ENTRY = "import sys; from tvrec.jobs.cli import main; sys.argv[0] = 'tvrec'; main()"


def tvrec(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = tvrec(*args, env=env)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """(world, work directory with release 1, every point a run passes, in order)."""
    base = tmp_path_factory.mktemp("kills")
    world = base / "world"
    write_world(world, WorldConfig.tiny())
    work = base / "work"
    work.mkdir()
    (work / "tvrec.toml").write_text("[models.collaborative]\nepochs = 3\n")
    log = base / "points.log"
    code, _, err = finished("run", "--data", str(world), "-w", str(work), "-k", "5",
                            env={POINTS_LOG: str(log)})  # fmt: skip
    assert code == 0, err[-3000:]
    return world, work, log.read_text().split("\n")[:-1]


def answer(work: Path) -> dict:
    code, out, err = finished("query", "--user", USER, "-w", str(work), "--json")
    assert code == 0, err
    return json.loads(out)


def kill_at(world: Path, work: Path, point: str) -> None:
    """Start a run, wait until it pauses at `point`, SIGKILL it."""
    marker = work.parent / "paused"
    marker.unlink(missing_ok=True)
    proc = tvrec("run", "--data", str(world), "-w", str(work), "-k", "5",
                 env={PAUSE_AT: point, MARKER: str(marker)})  # fmt: skip
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert marker.exists(), f"the run never reached {point!r}: {err[-2000:]}"


def leftovers(work: Path) -> list[str]:
    """Temp files, and releases or table versions that nothing serves or may roll back to."""
    temp = [
        str(p.relative_to(work)) for p in work.rglob(".*") if ".tmp" in p.name or ".link-" in p.name
    ]
    kept = list_releases(work)
    unlisted = [
        p.name for p in (work / ".releases").iterdir() if p.resolve() not in {r.path for r in kept}
    ]
    named = {r.tables[t].parquet for r in kept for t in r.tables}
    newest = {t: max(r.tables[t].version for r in kept) for t in kept[-1].tables}
    orphans = [
        str(p.relative_to(work))
        for t in newest
        for p in (work / "tables" / t).glob("v*.parquet")
        if str(p.relative_to(work)) not in named
    ]
    return temp + unlisted + orphans


def check_kills(served: tuple[Path, Path, list[str]], points: list[str], tmp_path: Path) -> None:
    world, master, all_points = served
    missing = set(points) - set(all_points)
    assert not missing, f"points the run never passes: {missing}; it passes {all_points}"
    work = tmp_path / "work"
    shutil.copytree(master, work, symlinks=True)
    switch = all_points.index("release:switch")
    serving, number = answer(work), 1
    for point in points:
        kill_at(world, work, point)
        if all_points.index(point) > switch:  # killed after its switch: its release serves
            serving, number = answer(work), number + 1
        assert answer(work) == serving, f"killed at {point!r}: serving changed"
        assert require_release(work).number == number, point
    code, _, err = finished("run", "--data", str(world), "-w", str(work), "-k", "5")
    assert code == 0, err[-3000:]
    kept = list_releases(work)
    assert kept[-1].current and kept[-1].number == number + 1
    assert [r.number for r in kept] == list(range(1, number + 2))[-len(kept) :]
    assert answer(work)["results"], "the clean run serves"
    assert leftovers(work) == []


def test_killed_runs_keep_serving_the_previous_release(
    served: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    check_kills(served, list(FAST_POINTS), tmp_path)


@pytest.mark.slow
def test_killed_at_every_point_of_the_run(
    served: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    points = served[2]
    assert len(points) >= 15, points
    check_kills(served, points, tmp_path)


# ---- concurrent writers --------------------------------------------------------------------
WRITERS = {
    "ingest": ["ingest", "{world}"],
    "features build": ["features", "build"],
    "train": ["train", "--stage", "collaborative"],
    "recommend": ["recommend", "-k", "5"],
    "publish --rollback": ["publish", "--rollback", "0"],
    "evaluate": ["evaluate", "--data", "{world}"],
}
READERS = (["query", "--user", USER, "--json"], ["features", "get", "--user", USER, "--json"],
           ["publish", "--list", "--json"])  # fmt: skip


def test_writers_are_refused_while_a_run_writes(
    served: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    """While a run holds the work directory (paused mid-training), every writing command is
    refused at once naming it, and changes nothing; reading commands answer, unblocked."""
    from bad_inputs import tree_digest
    from typer.testing import CliRunner

    from tvrec.jobs.cli import app

    world, master, _ = served
    work = tmp_path / "work"
    shutil.copytree(master, work, symlinks=True)
    marker = tmp_path / "paused"
    proc = tvrec("run", "--data", str(world), "-w", str(work), "-k", "5",
                 env={PAUSE_AT: "before:train collaborative", MARKER: str(marker)})  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate()[1][-2000:]
        before = tree_digest(work)
        runner = CliRunner()
        for name, args in WRITERS.items():
            args = [a.format(world=world) for a in args]
            res = runner.invoke(app, [*args, "--workdir", str(work)])
            message = " ".join(res.output.split())
            assert res.exit_code == 2, (name, message)
            assert "being written by another tvrec command" in message, (name, message)
            assert f"`tvrec run`, pid {proc.pid}" in message, (name, message)
        assert tree_digest(work) == before
        for args in READERS:
            t0 = time.monotonic()
            res = runner.invoke(app, [*args, "--workdir", str(work)])
            assert res.exit_code == 0, (args, res.output)
            assert time.monotonic() - t0 < 30, args
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()


def test_tables_naming_ids_outside_the_lake_are_refused(
    served: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    """The model was trained on one catalogue, the lake now holds another (a smaller one):
    `tvrec recommend` refuses to publish tables naming shows the lake lacks, and the
    previous release keeps serving."""
    from dataclasses import replace

    _, master, _ = served
    work = tmp_path / "work"
    shutil.copytree(master, work, symlinks=True)
    before = answer(work)
    other = tmp_path / "other"
    write_world(other, replace(WorldConfig.tiny(), n_shows=28, seed=11))
    assert finished("ingest", str(other), "-w", str(work))[0] == 0
    code, _, err = finished("recommend", "-k", "5", "-w", str(work))
    assert code == 2, err[-2000:]
    assert "not in the lake it is published with" in " ".join(err.split())
    assert answer(work) == before and require_release(work).number == 1
    assert leftovers(work) == []
