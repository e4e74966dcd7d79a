"""`tvrec recommend --shards N` (jobs/shards.py): the users' top-k computed over user shards by
parallel worker processes, each writing its own part, gives the table one process gives; a
worker that dies publishes nothing. (The same over Ray tasks: tests/test_ray_engines.py.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from tvrec.jobs.catalog import Catalog
from tvrec.jobs.cli import app
from tvrec.jobs.release import require_release
from tvrec.pipelines.testhooks import MARKER, PAUSE_AT
from tvrec.pipelines.workdir import Workdir

runner = CliRunner()
K = 20  # the served work directory's tables: k = 20, one process


def _copy(served: Workdir, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(served.root, work, symlinks=True)
    return work


def test_sharded_table_equals_the_one_process_table(
    served_workdir: Workdir, tmp_path: Path
) -> None:
    work = _copy(served_workdir, tmp_path)
    one = Catalog(work).read_current("user_topk")
    args = ["recommend", "--model", "collaborative", "-k", str(K), "--shards", "3"]
    res = runner.invoke(app, [*args, "--workdir", str(work), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["shards"] == 3
    sharded = Catalog(work).read_current("user_topk")
    assert Catalog(work).current("user_topk").version > 1  # type: ignore[union-attr]
    assert sharded.height == one.height > 0
    assert sharded.drop("run_id", strict=False).equals(one.drop("run_id", strict=False))
    assert not list(work.rglob(".user_topk.parts"))  # the parts went with the staging


def test_a_dead_shard_worker_publishes_nothing(served_workdir: Workdir, tmp_path: Path) -> None:
    """Shard 1's worker dies after writing its part: exit 3 saying so, no traceback; the
    release, the table versions and the releases kept are as they were."""
    work = _copy(served_workdir, tmp_path)
    before = require_release(work).number
    tables = sorted(p.name for p in (work / "tables" / "user_topk").iterdir())
    releases = sorted(p.name for p in (work / ".releases").iterdir())
    marker = tmp_path / "paused"
    env = os.environ | {PAUSE_AT: "recommend:shard:1", MARKER: str(marker)}
    tvrec = str(Path(sys.executable).parent / "tvrec")
    proc = subprocess.Popen(
        [tvrec, "recommend", "--model", "collaborative", "-k", str(K), "--shards", "2",
         "--workdir", str(work)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()[1][-2000:]
    worker = int(marker.read_text().split()[-1])  # the process that reached the point
    assert worker != proc.pid
    os.kill(worker, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "worker process died" in err and "nothing published" in err, err
    assert "Traceback" not in err
    assert require_release(work).number == before
    assert sorted(p.name for p in (work / "tables" / "user_topk").iterdir()) == tables
    assert sorted(p.name for p in (work / ".releases").iterdir()) == releases
