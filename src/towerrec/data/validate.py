"""Column checks that turn bad input into a DataError naming file, column, rows and expectation.

Row numbers in messages are file line numbers (header = line 1) for files and 0-based positions
for in-memory frames, so a user can jump straight to the offending line.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from towerrec.errors import DataError


class Where:
    """Where a table came from, for error messages."""

    def __init__(self, source: str, *, is_file: bool) -> None:
        self.source = source
        self.offset = 2 if is_file else 0  # line number of data row 0
        self.unit = "line" if is_file else "row"

    def rows(self, positions: np.ndarray) -> list[int]:
        return [int(p) + self.offset for p in positions[:5]]

    def error(self, message: str, *, column: str | None = None, positions: np.ndarray | None = None,
              values: object = None, expected: str | None = None) -> DataError:
        rows = None if positions is None else self.rows(np.asarray(positions))
        msg = message if positions is None else f"{message} at {len(positions)} {self.unit}(s)"
        return DataError(msg, source=self.source, column=column, rows=rows,
                         values=None if values is None else list(values)[:5], expected=expected)


def require_columns(table: pa.Table, columns: list[str], where: Where) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise where.error(
            f"missing column(s) {', '.join(repr(c) for c in missing)}; found {table.column_names}",
            expected="a header naming these columns (use --user-col/--item-col/... to map yours)",
        )
    if table.num_rows == 0:
        raise where.error("the table has a header but no rows", expected="at least one interaction")


def id_column(table: pa.Table, name: str, where: Where) -> pa.Array:
    """The column as non-blank strings; blank or missing ids are an error."""
    col = table.column(name).combine_chunks()
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        col = pc.cast(col, pa.string())
    bad = pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_trim_whitespace(col), ""))
    bad = pc.fill_null(bad, True)
    if pc.any(bad).as_py():
        pos = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
        raise where.error("blank or missing ids", column=name, positions=pos,
                          expected="a non-empty id on every row")
    return col


def numeric_column(table: pa.Table, name: str, where: Where) -> np.ndarray:
    """The column as float64; non-numeric or missing values are an error."""
    col = table.column(name).combine_chunks()
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        bad = np.isnan(values)
        shown = None
    else:
        raw = pd.Series(col.to_numpy(zero_copy_only=False), dtype=object)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(values)
        shown = raw
    if bad.any():
        pos = np.flatnonzero(bad)
        vals = None if shown is None else shown.iloc[pos[:5]].tolist()
        raise where.error("non-numeric or missing values", column=name, positions=pos, values=vals,
                          expected="a number on every row")
    return values


def unique_ids(frame: pd.DataFrame, column: str, where: Where) -> None:
    """Feature tables need one row per id."""
    dup = frame[column].duplicated(keep="first").to_numpy()
    if dup.any():
        pos = np.flatnonzero(dup)
        raise where.error("duplicated ids", column=column, positions=pos,
                          values=frame[column].iloc[pos[:5]].tolist(), expected="one row per id")
