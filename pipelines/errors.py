"""Errors that reach the user with the file, column and rows at fault."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

SHOWN_CHARS = 60  # user-provided names and values are cut to this many characters


def shorten(text: object, limit: int = SHOWN_CHARS) -> str:
    """User-provided text made safe to print: control and other unprintable characters
    escaped as in repr(), and cut to `limit` characters (binary junk read as a column name
    must not flood the terminal)."""
    value = str(text)
    if not value.isprintable():
        value = repr(value)[1:-1]
    return value if len(value) <= limit else value[: limit - 1] + "…"


def quoted(value: object, limit: int = SHOWN_CHARS) -> str:
    """repr() of a user-provided value, cut to `limit` characters."""
    text = repr(str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def names_list(names: Sequence[object], limit: int = 20) -> str:
    """`a, b, c` of the first `limit` names, each shortened, with a count of the rest."""
    shown = ", ".join(shorten(n) for n in list(names)[:limit])
    more = len(names) - limit
    return shown + (f" (+{more} more)" if more > 0 else "")


def rows_where(mask: pl.Series) -> list[int]:
    """1-based data row numbers where `mask` is true (the first 50)."""
    return [i + 1 for i in mask.fill_null(False).arg_true().head(50).to_list()]


@dataclass
class DataError(Exception):
    """Bad input: names the file, the column and the first offending rows.

    `rows` are 1-based data row numbers (the header is not counted) so users can find them
    in a spreadsheet or with `sed -n`.
    """

    file: str
    message: str
    column: str | None = None
    rows: Sequence[int] = field(default_factory=list)
    examples: Sequence[str] = field(default_factory=list)

    @classmethod
    def where(
        cls, file: str, message: str, column: str, mask: pl.Series, values: pl.Series
    ) -> DataError:
        """The error for the rows `mask` selects, quoting the first of `values` there."""
        import polars as pl

        shown = values.filter(mask.fill_null(False)).head(5).cast(pl.String).to_list()
        return cls(file, message, column=column, rows=rows_where(mask), examples=shown)

    def __str__(self) -> str:
        column = f", column '{shorten(self.column)}'" if self.column is not None else ""
        where = self.file + column
        text = f"{where}: {self.message}"
        if self.rows:
            shown = ", ".join(str(r) for r in list(self.rows)[:10])
            more = f" (+{len(self.rows) - 10} more)" if len(self.rows) > 10 else ""
            text += f"; rows {shown}{more}"
        if self.examples:
            text += "; values " + ", ".join(quoted(v) for v in list(self.examples)[:5])
        return text


class ConfigError(Exception):
    """A setting or argument that cannot be used."""


class EngineError(Exception):
    """An engine the configuration names (a Redis online store, a Ray cluster, a database)
    cannot be reached or went away: nothing published changed, and a rerun once it is back
    does the work."""
