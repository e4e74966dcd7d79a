"""What every `tvrec` command shares: the error contract and the common options.

Kept free of heavy imports: `tvrec query` and `tvrec schedule` import it too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from tvrec.pipelines.errors import ConfigError, DataError

err = Console(stderr=True)

WorkdirOpt = Annotated[
    Path | None,
    typer.Option(
        "--workdir", "-w", envvar="TVREC_WORKDIR", help="Work directory (default ./tvrec-work)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input and bad settings: a clear message on stderr and exit status 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DataError, ConfigError) as exc:
            # escaped: messages quote user input and hints such as `pip install 'tvrec[mlflow]'`
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
