"""Errors that reach the user with the file, column and rows at fault."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


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

    def __str__(self) -> str:
        where = self.file + (f", column '{self.column}'" if self.column else "")
        text = f"{where}: {self.message}"
        if self.rows:
            shown = ", ".join(str(r) for r in list(self.rows)[:10])
            more = f" (+{len(self.rows) - 10} more)" if len(self.rows) > 10 else ""
            text += f"; rows {shown}{more}"
        if self.examples:
            text += "; values " + ", ".join(repr(v) for v in list(self.examples)[:5])
        return text


class ConfigError(Exception):
    """A setting or argument that cannot be used."""
