"""What every `tvrec` command shares: the error contract and the common options.

Kept free of heavy imports: `tvrec query` and `tvrec schedule` import it too. rich loads
when something is first printed (`LazyConsole`).
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Mapping
from functools import cached_property, wraps
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from tvrec.pipelines.errors import ConfigError, DataError, EngineError

if TYPE_CHECKING:
    import click
    from rich.console import Console


class LazyConsole:
    """A rich `Console(**options)` made on first use (importing rich takes tens of ms, which
    `tvrec query --json` and `tvrec --help` never need); attributes pass through to it."""

    def __init__(self, **options: Any) -> None:
        self._options = options

    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        return Console(**self._options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


err = LazyConsole(stderr=True)

WorkdirOpt = Annotated[
    str | None,  # a string: `-w ""` is refused (Settings.load), not read as Path(".")
    typer.Option(
        "--workdir", "-w", envvar="TVREC_WORKDIR", help="Work directory (default ./tvrec-work)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input and bad settings: a clear message on stderr and exit status 2; an engine
    that cannot be reached (Redis, a database): exit status 3, worth a retry."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DataError, ConfigError, EngineError) as exc:
            from rich.markup import escape

            # escaped: messages quote user input and hints such as `pip install 'tvrec[mlflow]'`
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(3 if isinstance(exc, EngineError) else 2) from None

    wrapper.__doc__ = reflowed(fn.__doc__)
    return wrapper


def reflowed(doc: str | None) -> str | None:
    """A command's docstring with each paragraph on one line: typer's help keeps a
    docstring's line breaks, which then fall mid-sentence in a terminal of another width."""
    if doc is None:
        return None
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def lazy_group(loaders: Mapping[str, Callable[[], click.Command]]) -> type[TyperGroup]:
    """A TyperGroup class (`typer.Typer(cls=...)`) whose commands named in `loaders` are
    imported only when invoked or listed in help; they are listed after the others, in
    `loaders` order. Keeps what they import out of every other command's start-up."""

    class LazyGroup(TyperGroup):
        def list_commands(self, ctx: click.Context) -> list[str]:
            eager = [name for name in super().list_commands(ctx) if name not in loaders]
            return [*eager, *loaders]

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            if cmd_name in loaders and cmd_name not in self.commands:
                self.add_command(loaders[cmd_name](), cmd_name)
            return super().get_command(ctx, cmd_name)

    return LazyGroup


def named_group(sub_app: typer.Typer, name: str) -> click.Command:
    """A Typer sub-app as the click group `app.add_typer(sub_app, name=name)` would add."""
    group = typer.main.get_group(sub_app)
    group.name = name
    return group
