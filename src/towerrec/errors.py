"""Errors a user can act on.

`DataError` carries the file, the column, the first offending rows and what was expected, so the
CLI can print it as one line and exit 2 instead of a traceback.
"""
from __future__ import annotations

from collections.abc import Sequence


class TowerrecError(Exception):
    """Base class for mistakes in the user's input or usage (CLI: one line, exit 2)."""


class DataError(TowerrecError, ValueError):
    """Bad input data: names where it is and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        column: str | None = None,
        rows: Sequence[int] | None = None,
        values: Sequence[object] | None = None,
        expected: str | None = None,
    ) -> None:
        self.source, self.column, self.expected = source, column, expected
        self.rows = list(rows) if rows is not None else []
        parts = []
        if source:
            parts.append(f"{source}")
        if column:
            parts.append(f"column '{column}'")
        where = ", ".join(parts)
        text = f"{where}: {message}" if where else message
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:5])
            text += f" (first rows: {shown}"
            if values is not None:
                text += "; values: " + ", ".join(repr(v) for v in list(values)[:5])
            text += ")"
        if expected:
            text += f"; expected {expected}"
        super().__init__(text)


class NotFittedError(TowerrecError, RuntimeError):
    """A query method was called before `fit`."""


class UnknownIdError(TowerrecError, KeyError):
    """An external id is not in the id map."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown id"


class MissingExtra(TowerrecError, ImportError):
    """An optional part of towerrec needs a package that is not installed; says which extra to install."""
