"""Stage timing and progress display shared by every long-running command."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console

console = Console(stderr=True)


@dataclass
class StageLog:
    """Wall time of each named stage, in order; shows a spinner while a stage runs."""

    quiet: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        if self.quiet:
            yield
        else:
            with console.status(f"[bold]{name}[/]…"):
                yield
        self.seconds[name] = time.perf_counter() - t0
        if not self.quiet:
            console.print(f"[green]✓[/] {name} [dim]{self.seconds[name]:.1f}s[/]")
