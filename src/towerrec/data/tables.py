"""Files and DataFrames to arrow tables, read the way the user wrote them.

Everything below the interaction and feature logic reads through here, so every source gets the
same rules: a header names each column once; a cell is missing only when it is truly empty (the
strings `NA`, `null`, `nan` or `N/A` are ids and titles like any other, as they are in a
DataFrame); a row with the wrong number of fields is an error naming its line; an unreadable file
or folder is a DataError naming the path, never a traceback.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from towerrec.data.validate import Where, unique_names
from towerrec.errors import DataError

TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".tab", ".parquet", ".pq")
TABLE_ORDER = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv", ".tsv.gz")  # dataset-folder convention


# ---- paths ---------------------------------------------------------------------------------------
def _stat(path: Path) -> None:
    """Raise a DataError for a path that does not exist or cannot be looked at."""
    try:
        path.stat()
    except FileNotFoundError:
        raise DataError("file not found", source=str(path),
                        expected="an existing CSV, TSV or Parquet file") from None
    except PermissionError:
        raise DataError("permission denied", source=str(path),
                        expected="a file or folder this user can read") from None
    except OSError as exc:
        raise DataError(f"cannot be read: {exc.strerror or exc}", source=str(path)) from None


def _ask(path: Path, question: str) -> bool:
    """`path.exists()` and friends, but a folder we may not look into is a DataError, not a traceback."""
    try:
        return bool(getattr(path, question)())
    except PermissionError:
        raise DataError("permission denied: cannot look inside this folder", source=str(path.parent),
                        expected="a folder this user can read") from None


def exists(path: Path) -> bool:
    return _ask(path, "exists")


def is_dir(path: Path) -> bool:
    return _ask(path, "is_dir")


def is_file(path: Path) -> bool:
    return _ask(path, "is_file")


def list_dir(folder: Path) -> list[Path]:
    """The entries of a folder, sorted; an unreadable folder is a DataError naming it."""
    try:
        return sorted(folder.iterdir())
    except PermissionError:
        raise DataError("permission denied: cannot list this folder", source=str(folder),
                        expected="a folder this user can read") from None


def find_table(folder: Path, stem: str) -> Path | None:
    """`folder/stem.<csv|csv.gz|parquet|...>`; two candidates are ambiguous and an error."""
    found = [folder / (stem + s) for s in TABLE_ORDER if is_file(folder / (stem + s))]
    if len(found) > 1:
        raise DataError(f"more than one {stem} table: {[p.name for p in found]}", source=str(folder),
                        expected="exactly one, so it is clear which one is used")
    return found[0] if found else None


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.new(algorithm, usedforsecurity=False)  # a checksum, not security: allowed under FIPS
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except PermissionError:
        raise DataError("permission denied", source=str(path), expected="a file this user can read") from None
    return h.hexdigest()


# ---- files ---------------------------------------------------------------------------------------
def _delimiter(name: str) -> str:
    return "\t" if name.endswith((".tsv", ".tsv.gz", ".tab")) else ","


def _is_parquet(name: str) -> bool:
    return name.endswith((".parquet", ".pq"))


def read_header(path: str | Path) -> list[str]:
    """The column names of a table file, checked to be unique (read before typing the columns)."""
    path = Path(path)
    _check_path(path)
    name = path.name.lower()
    try:
        if _is_parquet(name):
            names = pq.read_schema(path).names
        else:
            parse = pacsv.ParseOptions(delimiter=_delimiter(name), invalid_row_handler=lambda row: "skip")
            names = pacsv.open_csv(path, parse_options=parse).schema.names
    except (pa.ArrowInvalid, OSError) as exc:
        raise _parse_error(path, exc) from None
    unique_names(names, Where(str(path), is_file=True))
    return names


def read_table(path: str | Path, *, string_columns: Iterable[str] = ()) -> pa.Table:
    """Read a CSV/TSV (optionally .gz) or Parquet file; `string_columns` are never type-inferred.

    CSV cells that are empty become missing in every column. Other null markers (`NA`, `nan`, ...)
    are missing only where a column turns out numeric; in text columns they stay strings.
    """
    path = Path(path)
    names = read_header(path)
    wanted = [c for c in dict.fromkeys(string_columns) if c in names]
    name = path.name.lower()
    try:
        if _is_parquet(name):
            table = pq.read_table(path)
            for c in wanted:
                if not pa.types.is_string(table.schema.field(c).type):
                    table = table.set_column(names.index(c), c, pc.cast(table.column(c), pa.string()))
            return table
        return _read_csv(path, _delimiter(name), wanted, names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _parse_error(path, exc) from None


def _check_path(path: Path) -> None:
    _stat(path)
    if is_dir(path):
        raise DataError("is a folder, not a file", source=str(path))
    if path.stat().st_size == 0:
        raise DataError("the file is empty", source=str(path), expected="a header line and rows")


def _parse_error(path: Path, exc: Exception) -> DataError:
    if isinstance(exc, PermissionError) or "permission denied" in str(exc).lower():
        return DataError("permission denied", source=str(path), expected="a file this user can read")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DataError(f"cannot be parsed: {first}", source=str(path))


def _read_csv(path: Path, delimiter: str, string_columns: list[str], names: list[str]) -> pa.Table:
    bad_rows: list[tuple[int | None, int]] = []

    def invalid(row: pacsv.InvalidRow) -> str:  # called only for malformed rows
        bad_rows.append((row.number, row.actual_columns))
        return "skip"

    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=invalid)
    # strings_can_be_null=False: "NA" in a text column stays "NA"; empty cells are nulled below.
    # No true/false values: a cell "true" stays the text "true", not a boolean that prints "True".
    text = {"strings_can_be_null": False, "true_values": [], "false_values": []}
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in string_columns}, **text)
    try:
        table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        if "conversion error" not in str(exc).lower():
            raise
        # a bad value past the type-inference block: read everything as text, validate per column
        bad_rows.clear()
        convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in names}, **text)
        table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    if bad_rows:
        _raise_bad_rows(path, delimiter, names)
    return _empty_strings_to_null(table)


def _raise_bad_rows(path: Path, delimiter: str, names: list[str]) -> None:
    """Re-read single-threaded, where arrow knows each malformed row's line number."""
    found: list[tuple[int | None, int]] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        found.append((row.number, row.actual_columns))
        return "skip"

    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=invalid)
    pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False), parse_options=parse,
                   convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in names}))
    # arrow numbers rows among non-empty lines, header = 1; Where maps that to the file's own lines
    numbered = [(n, a) for n, a in found if n is not None]
    raise Where(str(path), is_file=True).error(
        "rows with the wrong number of fields", positions=np.array([n - 2 for n, _ in numbered], dtype=np.int64),
        values=[f"{a} fields" for _, a in numbered[:5]],
        expected=f"{len(names)} fields on every line, as in the header (quote fields that contain the delimiter)")


def _empty_strings_to_null(table: pa.Table) -> pa.Table:
    """A truly empty cell is missing; every other string, "NA" included, is kept as written."""
    for i, f in enumerate(table.schema):
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            col = table.column(i)
            empty = pc.equal(col, "")
            if pc.any(empty).as_py():
                table = table.set_column(i, f.name, pc.if_else(empty, pa.scalar(None, f.type), col))
    return table


# ---- DataFrames ----------------------------------------------------------------------------------
def string_form(series: pd.Series) -> tuple[pd.Series, bool]:
    """Ids as strings, the same from every source; missing stays missing; True if types were mixed.

    Numbers go through arrow, so a float id 1.0 is "1" as in a CSV; an object column mixing
    numbers and strings is taken as pandas writes each value.
    """
    if isinstance(series.dtype, pd.StringDtype):
        return series, False
    if pd.api.types.is_numeric_dtype(series.dtype):
        text = pc.cast(pa.array(series, from_pandas=True), pa.string()).to_pandas()
        return pd.Series(text.to_numpy(), index=series.index, dtype="string"), False
    mixed = pd.api.types.infer_dtype(series, skipna=True).startswith("mixed")  # mixed, mixed-integer, ...
    return series.astype("string"), mixed


def table_from_frame(frame: pd.DataFrame, columns: list[str], where: Where, *,
                     string_columns: Iterable[str] = ()) -> tuple[pa.Table, list[str]]:
    """The named columns of `frame` as an arrow table, plus notes on what was converted.

    `string_columns` (ids) are taken in their string form. Any other column that arrow cannot type
    (ints and strings in one object column) is converted to strings, so the column check that
    follows names the offending rows instead of arrow failing on the whole column.
    """
    frame = frame.rename(columns=str)  # lazy under copy-on-write; `0` and "0" name the same column
    unique_names(list(frame.columns), where)
    notes: list[str] = []
    arrays: list[pa.Array] = []
    strings = set(string_columns)
    for name in columns:
        series = frame[name]
        if name in strings:
            series, mixed = string_form(series)
            if mixed:
                notes.append(f"{where.source} column '{name}': ids of mixed types (e.g. numbers and strings) "
                             f"were read as their string form")
            arrays.append(pa.array(series, type=pa.string(), from_pandas=True))
            continue
        try:
            arrays.append(pa.array(series, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(pa.array(series.astype("string"), type=pa.string(), from_pandas=True))
    return pa.Table.from_arrays(arrays, names=[str(c) for c in columns]), notes
