"""Stage timing, peak memory and progress display shared by every long-running command."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console

from .testhooks import pause_point

console = Console(stderr=True)


class PeakRss:
    """The peak resident memory of the process and its child processes (training ranks,
    shard workers) while a block runs, sampled every `every` seconds by a background thread
    (the OS's own high-water mark only ever grows, so it cannot tell one stage from the next).
    The children are looked up again every `children_every` seconds (a walk of /proc)."""

    def __init__(self, every: float = 0.05, children_every: float = 1.0) -> None:
        import psutil

        self._process, self._every = psutil.Process(os.getpid()), every
        self._refresh = max(1, round(children_every / every))  # samples between lookups
        self._children: list[psutil.Process] = []
        self._stop = threading.Event()
        self.start = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        n = 0
        while not self._stop.wait(self._every):
            if n % self._refresh == 0:
                self._children = self._process.children(recursive=True)
            self.peak = max(self.peak, self._rss())
            n += 1

    def _rss(self) -> int:
        import psutil

        total = self._process.memory_info().rss
        for child in self._children:
            with contextlib.suppress(psutil.Error):  # a child that has ended since
                total += child.memory_info().rss
        return total

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


@dataclass
class StageLog:
    """Wall time and peak RSS of each named stage, in order; shows a spinner while a stage
    runs."""

    quiet: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        pause_point(f"before:{name}")
        t0 = time.perf_counter()
        with PeakRss() as memory:
            if self.quiet:
                yield
            else:
                with console.status(f"[bold]{name}[/]…"):
                    yield
        self.seconds[name] = time.perf_counter() - t0
        self.peak_rss_mb[name] = round(memory.peak / 2**20, 1)
        if not self.quiet:
            console.print(
                f"[green]✓[/] {name} [dim]{self.seconds[name]:.1f}s, "
                f"peak {self.peak_rss_mb[name]:,.0f} MiB[/]"
            )
