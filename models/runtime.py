"""Where and how trainers run: the hardware profile, picked once, behind one factory.

CPU profile: float32, modest batches. GPU profile (CUDA seen, or forced by the config):
bf16 autocast (mixed precision) and larger batches. Trainers ask the Runtime; none of them
tests for CUDA itself.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tvrec.pipelines.progress import console


@dataclass(frozen=True)
class Runtime:
    profile: Literal["cpu", "gpu"]
    device: torch.device
    batch_multiplier: int
    mixed_precision: bool

    @classmethod
    def cpu(cls) -> Runtime:
        return cls("cpu", torch.device("cpu"), 1, False)

    @classmethod
    def gpu(cls) -> Runtime:
        return cls("gpu", torch.device("cuda"), 8, True)

    @classmethod
    def detect(cls, setting: Literal["auto", "cpu", "gpu"] = "auto") -> Runtime:
        """`auto`: the GPU profile when torch sees CUDA; `cpu`/`gpu` force one."""
        if setting == "gpu" or (setting == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                from tvrec.pipelines.errors import ConfigError

                raise ConfigError("hardware.profile = 'gpu' but torch sees no CUDA device")
            return cls.gpu()
        return cls.cpu()

    @contextlib.contextmanager
    def training(self, threads: int | None, deterministic: bool = True) -> Iterator[int]:
        """While a model trains: torch's intra-op threads (`threads`: hardware.threads; on a
        machine shared with other jobs fewer threads than cores avoid oversubscription; None:
        torch's own count) and, when `deterministic`, torch's deterministic kernels, so the same
        data, seed and thread count give the same model (the scatter-adds behind embedding and
        gather gradients otherwise sum in whatever order threads finish). Both restored
        afterwards; yields the thread count used."""
        before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
        deterministic_cuda = deterministic and self.device.type == "cuda"
        if deterministic_cuda:  # cuBLAS's reproducible workspace
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            _say_cuda_is_partly_deterministic()
        torch.set_num_threads(threads or before[0])
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        try:
            with warnings.catch_warnings():
                if deterministic_cuda:  # said once above, not once per kernel and step
                    for message in _NONDETERMINISTIC_CUDA:
                        warnings.filterwarnings("ignore", message=message, category=UserWarning)
                yield threads or before[0]
        finally:
            torch.set_num_threads(before[0])
            torch.use_deterministic_algorithms(before[1])

    @staticmethod
    @contextlib.contextmanager
    def one_thread() -> Iterator[None]:
        """numpy's BLAS and torch on one thread each, restored afterwards: a request for one
        user is too small to share, and handing work between two thread pools costs more
        (measured on 2 cores: re-ranking one user p99 114 ms threaded, 6.6 ms on one)."""
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with _blas().limit(limits=1):
                yield
        finally:
            torch.set_num_threads(before)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast under mixed precision, where the device computes bf16 natively."""
        if self.mixed_precision and native_bf16(self.device.type):
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


# torch's warnings for CUDA kernels without a deterministic version (seen on an H200: cuDNN
# and memory-efficient attention backward, bincount), hidden while a model trains
_NONDETERMINISTIC_CUDA = (
    r".*does not have a deterministic implementation",
    r".*defaults to a non-deterministic algorithm",
)


@functools.cache
def _say_cuda_is_partly_deterministic() -> None:
    console.print(
        "[dim]deterministic kernels on CUDA: some have none (attention backward), so a GPU "
        "run repeats only up to those[/]"
    )


@functools.cache
def native_bf16(device_type: str) -> bool:
    """Whether bf16 runs in hardware: CUDA does; a CPU only with AVX512-BF16 or AMX. Elsewhere
    torch emulates it (an AVX2-only EPYC here: a 256x384 @ 384x1536 matmul takes 220 ms in
    bf16 against 9 ms in float32), so the GPU profile's code path on such a CPU (the tests'
    GPU-like runtimes) stays in float32."""
    if device_type != "cpu":
        return True
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


@functools.cache
def _blas() -> Any:
    """The loaded BLAS libraries' controller, inspected once (0.5 ms a call otherwise)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def progress_bar(label: str, total: int, shown: bool = True) -> Iterator[Callable[..., None]]:
    """A per-epoch progress bar; `advance(**metrics)` moves it and shows the metrics,
    `advance(note=...)` replaces them with a note without moving it. Not `shown` (a
    distributed run's ranks other than 0): nothing is drawn."""
    if not shown:
        yield lambda note=None, **metrics: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=total, info="")

        def advance(note: str | None = None, **metrics: float) -> None:
            info = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            if note is not None:  # said once the loop ends short of `total` (why it did)
                progress.update(task, info=note)
                return
            progress.update(task, advance=1, info=info)

        yield advance
