"""`tvrec train --nproc N`: one model trained data-parallel by N processes under torchrun.

    tvrec train --stage contrastive --nproc 2          # N processes on this machine

    # a cluster: the same entry point under torchrun on every node, the work directory on
    # storage every node mounts
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m tvrec.jobs.train_parallel --workdir /shared/tvrec-work --stage contrastive

Every process runs `train_stage` inside one torch.distributed group (gloo on CPU, NCCL on
CUDA; each process takes the GPU of its local rank): rank 0 builds the training set and hands
it to the others through the work directory, every rank trains on its slice of each batch
(models/distributed.py), and rank 0 publishes the model — one model, loaded and served by one
process like any other. On CPU each process gets an equal share of the cores unless
`hardware.threads` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from tvrec.pipelines.errors import ConfigError

ENTRY = "tvrec.jobs.train_parallel"
LOCK_HELD = "TVREC_TRAIN_LOCK_HELD"  # set by `launch`; under a bare torchrun rank 0 takes it
STATUS_DIR = "TVREC_TRAIN_STATUS_DIR"  # set by `launch`: each rank writes the status it exits with


def launch(workdir: Path, stage: str, nproc: int) -> int:
    """Run `nproc` local worker processes (torchrun's standalone mode: a rendezvous on a free
    local port) and wait for them; returns the exit status of the group (a rank's own status
    when one failed: 2 for bad input or settings, 3 for an engine that cannot be reached).

    The status comes from what the ranks said they exit with (a file each), not from the
    agent's report alone: that names only the ranks already dead when it looked, and a peer
    that stopped first, or died at exit, would hide rank 0's user error behind a 1."""
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # the agent's own log lines (ranks stopped, a rank failed) say nothing the failing rank
    # has not said: only its errors pass
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)

    # the agent's per-run files (its error files) in a folder removed after, not left in /tmp
    logs = tempfile.TemporaryDirectory(prefix="tvrec-torchelastic-")
    config = LaunchConfig(
        logs_specs=DefaultLogsSpecs(log_dir=logs.name),
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"tvrec-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        rdzv_configs={"is_host": True},
        max_restarts=0,
        monitor_interval=0.2,
    )
    # the workers' environment: their thread count (torchrun would force 1, and warn) and
    # that this command holds the writer lock; this process's own is restored after
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(_threads_per_process(nproc))}
    args = ["-m", ENTRY, "--workdir", str(workdir), "--stage", stage]
    with logs, _environment(env | {LOCK_HELD: "1", STATUS_DIR: logs.name}):
        try:
            elastic_launch(config, sys.executable)(*args)
        except ChildFailedError as exc:
            return _group_status(Path(logs.name), [f.exitcode for f in exc.failures.values()])
    return 0


def _group_status(folder: Path, died: list[int]) -> int:
    """A failed group's status: the first user-error status (2, 3) that a rank wrote as it left
    (`_say_status`, rank 0's first) or that the agent saw a rank die with; else 1 (a bug)."""
    files = sorted(folder.glob("status-*"), key=lambda p: int(p.name.split("-")[1]))
    said = [int(text) for p in files if (text := p.read_text().strip()).isdigit()]
    return next((c for c in said + died if c in (2, 3)), 1)


def _say_status(code: int) -> int:
    """Under `launch`: write this rank's exit status where the launcher reads it."""
    if folder := os.environ.get(STATUS_DIR):
        with contextlib.suppress(OSError):
            (Path(folder) / f"status-{os.environ.get('RANK', '0')}").write_text(str(code))
    return code


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _threads_per_process(nproc: int) -> int:
    return max(1, (os.cpu_count() or 1) // nproc)


def main(argv: list[str] | None = None) -> int:
    """One worker (started by `launch` or by torchrun): join the group, train, leave."""
    parser = argparse.ArgumentParser(prog=f"python -m {ENTRY}", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="The work directory.")
    parser.add_argument("--stage", required=True, help="The model to train.")
    args = parser.parse_args(argv)
    import typer

    from tvrec.jobs.cli_common import user_errors
    from tvrec.pipelines.errors import DataError, EngineError

    leader = os.environ.get("RANK", "0") == "0"
    try:  # a user's error: rank 0 says it, with the CLI's exit status; no traceback
        (user_errors(_train) if leader else _train)(args.workdir, args.stage)
    except typer.Exit as exc:
        return _say_status(exc.exit_code)
    except (DataError, ConfigError, EngineError) as exc:  # the others: the same, quietly
        return _say_status(3 if isinstance(exc, EngineError) else 2)
    return _say_status(0)


def _train(workdir: Path | None, stage: str) -> None:
    import torch
    import torch.distributed as dist

    from tvrec.jobs.train import train_stage
    from tvrec.models.distributed import backend_for
    from tvrec.models.runtime import Runtime
    from tvrec.pipelines.config import Settings
    from tvrec.pipelines.progress import console
    from tvrec.pipelines.workdir import Workdir

    if "RANK" not in os.environ:
        raise ConfigError(f"{ENTRY} runs under torchrun; on one machine use tvrec train --nproc N")
    settings = Settings.load(workdir)
    runtime = Runtime.detect(settings.hardware.profile)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if runtime.device.type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend_for(runtime.device), timeout=timedelta(hours=2))
    console.quiet = dist.get_rank() != 0  # one progress display: rank 0's
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    try:
        with _writer_lock(settings.workdir, stage):
            threads = settings.hardware.threads or _threads_per_process(local_size)
            train_stage(Workdir(settings.workdir), settings, stage, threads=threads)
    except BaseException:  # leaving on an error: a peer may be gone already; its error stands
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
        raise
    dist.destroy_process_group()


@contextlib.contextmanager
def _writer_lock(workdir: Path, stage: str) -> Iterator[None]:
    """Under a bare torchrun, rank 0 holds the work directory's writer lock while the group
    trains (`tvrec train --nproc` holds it itself); a refusal is raised on every rank."""
    from tvrec.jobs.locks import run_lock
    from tvrec.models.distributed import World

    with contextlib.ExitStack() as stack:
        if not os.environ.get(LOCK_HELD):
            command = f"torchrun {ENTRY} --stage {stage}"
            World.current().on_leader(
                lambda: stack.enter_context(run_lock(workdir, command)), (ConfigError,)
            )
        yield


if __name__ == "__main__":
    sys.exit(main())
