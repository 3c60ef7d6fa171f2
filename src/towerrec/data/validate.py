"""Column checks that turn bad input into a DataError naming file, column, rows and expectation.

Row numbers in messages are file line numbers (header = line 1) for files and 0-based positions
for in-memory frames, so a user can jump straight to the offending line.
"""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from towerrec.errors import DataError

TEXT_TABLES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".tab")


class Where:
    """Where a table came from, for error messages."""

    def __init__(self, source: str, *, is_file: bool) -> None:
        self.source = source
        self.offset = 2 if is_file else 0  # line number of data row 0
        self.unit = "line" if is_file else "row"
        self._shift: np.ndarray | None = None

    def rows(self, positions: np.ndarray) -> list[int]:
        lines = np.asarray(positions[:5], dtype=np.int64) + self.offset
        if self.unit == "line" and self.source.lower().endswith(TEXT_TABLES):
            # the CSV reader skips empty lines: count those before each row so the number is the file's line
            lines = lines + np.searchsorted(self._empty_line_shift(), lines, side="right")
        return [int(x) for x in lines]

    def _empty_line_shift(self) -> np.ndarray:
        """For empty lines b_0 < b_1 < ...: b_j - j, the first line-without-blanks each one pushes down.

        Read only when an error is raised, so a clean load never pays for it.
        """
        if self._shift is None:
            try:
                with (gzip.open if self.source.lower().endswith(".gz") else open)(self.source, "rb") as fh:
                    buf = np.frombuffer(fh.read(), dtype=np.uint8)
            except OSError:
                buf = np.zeros(0, dtype=np.uint8)
            ends = np.flatnonzero(buf == ord("\n"))
            starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)[:len(ends)]
            length = ends - starts
            empty = (length == 0) | ((length == 1) & (buf[np.minimum(starts, max(len(buf) - 1, 0))] == ord("\r")))
            blank = np.flatnonzero(empty) + 1  # 1-based line numbers
            self._shift = blank - np.arange(len(blank))
        return self._shift

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
    """The column as float64; non-numeric, missing or infinite values are an error."""
    col = table.column(name).combine_chunks()
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        shown = pd.Series(values)
    else:
        shown = pd.Series(col.to_numpy(zero_copy_only=False), dtype=object)
        values = pd.to_numeric(shown, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values)
    if bad.any():
        pos = np.flatnonzero(bad)
        raise where.error("non-numeric or missing values", column=name, positions=pos,
                          values=shown.iloc[pos[:5]].tolist(), expected="a number on every row")
    infinite = np.isinf(values)
    if infinite.any():
        pos = np.flatnonzero(infinite)
        raise where.error("infinite values", column=name, positions=pos, values=shown.iloc[pos[:5]].tolist(),
                          expected="a finite number on every row")
    return values


def is_temporal(dtype: pa.DataType) -> bool:
    return pa.types.is_timestamp(dtype) or pa.types.is_date(dtype)


def time_column(table: pa.Table, name: str, where: Where) -> np.ndarray:
    """The time column as float64: numbers as they are; dates and datetimes as unix seconds (naive = UTC)."""
    col = table.column(name).combine_chunks()
    if not is_temporal(col.type):
        return numeric_column(table, name, where)
    missing = pc.is_null(col)
    if pc.any(missing).as_py():
        raise where.error("missing values", column=name, positions=np.flatnonzero(missing.to_numpy(zero_copy_only=False)),
                          expected="a date or time on every row")
    if pa.types.is_timestamp(col.type):
        per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[col.type.unit]
        seconds = pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False) / per_second
    elif pa.types.is_date32(col.type):
        seconds = pc.cast(col, pa.int32()).to_numpy(zero_copy_only=False).astype(np.float64) * 86_400
    else:  # date64: milliseconds
        seconds = pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False) / 1_000
    return seconds.astype(np.float64)


def non_negative(values: np.ndarray, rows: np.ndarray, column: str | None, where: Where, *,
                 expected: str) -> None:
    """Weights below zero would make scores and top-k meaningless: an error naming the rows.

    `rows` are the original row numbers of `values` (after filters), so lines stay file lines.
    """
    bad = values < 0
    if bad.any():
        raise where.error("negative weights", column=column, positions=rows[bad], values=values[bad][:5].tolist(),
                          expected=expected)


def header_rows(table: pa.Table, columns: list[str], where: Where) -> None:
    """A data row that repeats the header (files concatenated with their headers) is an error."""
    repeated = None
    for name in columns:
        col = table.column(name).combine_chunks()
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            return  # a typed column cannot hold its own name
        same = pc.fill_null(pc.equal(col, name), False)
        repeated = same if repeated is None else pc.and_(repeated, same)
    if repeated is not None and pc.any(repeated).as_py():
        pos = np.flatnonzero(repeated.to_numpy(zero_copy_only=False))
        raise where.error("the header is repeated as a data row", positions=pos,
                          values=[",".join(columns)], expected="the header on the first line only (were files "
                                                               "concatenated with their headers?)")


def unique_names(names: list[str], where: Where) -> None:
    """Two columns with one name: which one would be used is a guess, so it is an error."""
    seen = pd.Index(names)
    dup = seen[seen.duplicated()].unique().tolist()
    if dup:
        where_cols = "; ".join(f"{d!r} at columns {', '.join(str(i + 1) for i in np.flatnonzero(seen == d))}"
                               for d in dup[:5])
        raise where.error(f"duplicate column names in the header: {where_cols}",
                          expected="each column name once")


def unique_ids(frame: pd.DataFrame, column: str, where: Where) -> None:
    """Feature tables need one row per id."""
    dup = frame[column].duplicated(keep="first").to_numpy()
    if dup.any():
        pos = np.flatnonzero(dup)
        raise where.error("duplicated ids", column=column, positions=pos,
                          values=frame[column].iloc[pos[:5]].tolist(), expected="one row per id")
