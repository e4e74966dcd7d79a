"""The users' top-k table computed over user shards by parallel workers (`[recommend] shards`).

Each worker loads the staged release's model and index itself (from the release directory:
on a cluster, storage every node mounts), searches its shard's users and writes its own
Parquet part beside the release (`.user_topk.parts/part-00003.parquet`, written aside and
swapped in). The driver then checks every part: there, readable, the row count its worker
reported, exactly the shard's users. Only then are the parts read as one table and published
through the catalog like the one-process table; a shard that fails or a part that does not
check out fails the run, and the release being staged never becomes current. The parts go
with the staging directory.

Workers: local processes (`engine = "processes"`, spawned: no fork of a process holding
torch or FAISS threads) or Ray tasks (`engine = "ray"`, on `ray_address`, else $RAY_ADDRESS or a
Ray runtime started here). `shard_runner(settings)` picks one; nothing else asks which.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tvrec.jobs.release import ReleaseFiles
from tvrec.pipelines.config import RecommendSettings
from tvrec.pipelines.errors import ConfigError, EngineError
from tvrec.pipelines.features.text import write_atomic
from tvrec.pipelines.testhooks import pause_point

PARTS = ".user_topk.parts"


@dataclass(frozen=True)
class ShardJob:
    """One shard: its users, the show rows each must not get, where its part goes."""

    number: int
    users: list[str]
    exclude: list[set[int]]
    model_dir: Path
    index_dir: Path
    k: int
    part: Path


@dataclass(frozen=True)
class ShardResult:
    number: int
    part: Path
    rows: int


Runner = Callable[[Sequence[ShardJob]], list[ShardResult]]


def run_shard(job: ShardJob) -> ShardResult:
    """A worker's whole task: load the release's model and index, search, write the part."""
    from tvrec.index import load_index
    from tvrec.jobs.recommend import user_topk_table
    from tvrec.models.registry import load_model
    from tvrec.models.runtime import Runtime

    model = load_model(job.model_dir)
    index = load_index(job.index_dir)
    with Runtime.one_thread():  # the workers share the cores: one thread each
        frame = user_topk_table(model, index, job.users, job.exclude, job.k)
    write_atomic(frame, job.part)
    pause_point(f"recommend:shard:{job.number}")
    return ShardResult(job.number, job.part, frame.height)


def sharded_user_topk(
    users: list[str],
    exclude: list[set[int]],
    k: int,
    release: ReleaseFiles,
    settings: RecommendSettings,
) -> pl.DataFrame:
    """The user top-k table of `users`, computed by `settings.shards` workers from the model
    and index staged in `release`; the same rows as the one-process table."""
    parts = release.path / PARTS
    parts.mkdir(exist_ok=True)
    jobs = [
        ShardJob(
            n,
            users[lo:hi],
            exclude[lo:hi],
            release.model_dir,
            release.index_dir,
            k,
            parts / f"part-{n:05d}.parquet",
        )
        for n, (lo, hi) in enumerate(_bounds(len(users), settings.shards))
    ]
    try:
        results = shard_runner(settings)(jobs)
        return pl.concat(_checked_parts(jobs, results)).sort("user_id", "rank")
    finally:
        shutil.rmtree(parts, ignore_errors=True)  # the table is what the release keeps


def _bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous near-equal [lo, hi) ranges; no empty shard when users are fewer."""
    shards = max(1, min(shards, n))
    return [(i * n // shards, (i + 1) * n // shards) for i in range(shards)]


def _checked_parts(jobs: Sequence[ShardJob], results: Sequence[ShardResult]) -> list[pl.DataFrame]:
    """Every shard's part, read once: it answered, its part is there with the rows its worker
    reported, all of them for the shard's own users; otherwise nothing is published. (That
    every user has rows is the table's own check, as for the one-process table.)"""
    by_number = {r.number: r for r in results}
    parts = []
    for job in jobs:
        result = by_number.get(job.number)
        if result is None or not job.part.exists():
            raise EngineError(f"user shard {job.number}: no part at {job.part}; nothing published")
        part = pl.read_parquet(job.part)
        users = part["user_id"]
        if len(users) != result.rows or not set(users.unique().to_list()) <= set(job.users):
            raise EngineError(
                f"user shard {job.number}: {job.part} does not hold the {result.rows} rows of "
                f"its {len(job.users)} users that its worker wrote; nothing published"
            )
        parts.append(part)
    return parts


# ---- workers ----------------------------------------------------------------------------------
def shard_runner(settings: RecommendSettings) -> Runner:
    """Where the shards run: local processes or Ray tasks."""
    if settings.engine == "ray":
        return _ray_runner(settings.ray_address)
    return _process_runner(settings.workers or min(settings.shards, os.cpu_count() or 1))


def _process_runner(workers: int) -> Runner:
    def run(jobs: Sequence[ShardJob]) -> list[ShardResult]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(run_shard, job) for job in jobs]
            lost = [job.number for job, f in zip(jobs, futures, strict=True) if _died(f)]
            if lost:  # a dead worker breaks the pool: every shard not yet done is lost
                raise EngineError(
                    f"user shards {lost} did not finish: a worker process died; nothing published"
                )
            return [f.result() for f in futures]

    return run


def _died(future: Future[ShardResult]) -> bool:
    """Wait for one shard; whether its worker process died (other errors are raised)."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        future.result()
    except BrokenProcessPool:
        return True
    return False


def _ray_runner(address: str | None) -> Runner:
    def run(jobs: Sequence[ShardJob]) -> list[ShardResult]:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "[recommend] engine = 'ray' needs Ray: pip install 'tvrec[ray]'"
            ) from None
        started = not ray.is_initialized()  # a runtime this run starts, it also stops
        if started:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except ConnectionError as exc:
                raise EngineError(f"cannot connect to Ray at {address}: {exc}") from None
        task = ray.remote(num_cpus=1, max_retries=1)(run_shard)
        refs = [task.remote(job) for job in jobs]
        try:
            return list(ray.get(refs))
        except ray.exceptions.RayError as exc:
            raise EngineError(f"a user shard failed on Ray: {exc}; nothing published") from None
        finally:
            if started:
                ray.shutdown()

    return run
