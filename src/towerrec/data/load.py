"""Read interaction logs and feature tables from files, folders or frames, with reported filters.

Every filter (min rating, duplicates, k-core) returns what it removed, so nothing is dropped
silently: the CLI prints the report and `results.json` stores it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.data.validate import Where, id_column, numeric_column, require_columns
from towerrec.errors import DataError

USER_COLUMNS = ("user_id", "user", "userId", "userid", "uid", "customer_id")
ITEM_COLUMNS = ("item_id", "item", "itemId", "itemid", "iid", "movieId", "movie_id", "product_id")
RATING_COLUMNS = ("rating", "weight", "score", "count", "plays")
TIME_COLUMNS = ("timestamp", "time", "ts", "datetime", "position")
DUPLICATE_POLICIES = ("keep", "first", "last", "sum")
TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".tab", ".parquet", ".pq")


# ---- reading files ----------------------------------------------------------------------------
def read_table(path: str | Path, *, string_columns: tuple[str, ...] = ()) -> pa.Table:
    """Read a CSV/TSV (optionally .gz) or Parquet file; `string_columns` are never type-inferred."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", source=str(path), expected="an existing CSV, TSV or Parquet file")
    if path.is_dir():
        raise DataError("is a folder, not a file", source=str(path))
    name = path.name.lower()
    if path.stat().st_size == 0:
        raise DataError("the file is empty", source=str(path), expected="a header line and rows")
    try:
        if name.endswith((".parquet", ".pq")):
            table = pq.read_table(path)
            for c in string_columns:
                if c in table.column_names and not pa.types.is_string(table.schema.field(c).type):
                    table = table.set_column(table.column_names.index(c), c, pc.cast(table.column(c), pa.string()))
            return table
        delimiter = "\t" if any(name.endswith(s) for s in (".tsv", ".tsv.gz", ".tab")) else ","
        return _read_csv(path, delimiter, string_columns)
    except (pa.ArrowInvalid, OSError) as exc:
        first = str(exc).splitlines()[0]
        raise DataError(f"cannot be parsed: {first}", source=str(path)) from None


def _read_csv(path: Path, delimiter: str, string_columns: tuple[str, ...]) -> pa.Table:
    parse = pacsv.ParseOptions(delimiter=delimiter)
    header = pacsv.open_csv(path, parse_options=parse).schema.names
    types = {c: pa.string() for c in string_columns if c in header}
    convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
    try:
        return pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        if "conversion error" not in str(exc).lower():
            raise
        # a bad value past the type-inference block: read everything as text, validate per column
        types = {c: pa.string() for c in header}
        convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
        return pacsv.read_csv(path, parse_options=parse, convert_options=convert)


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], role: str,
          where: Where, required: bool) -> str | None:
    if wanted:
        if wanted not in columns:
            raise where.error(f"no {role} column {wanted!r}; found {columns}")
        return wanted
    for c in candidates:
        if c in columns:
            return c
    if required:
        raise where.error(f"no {role} column found among {columns}",
                          expected=f"one of {list(candidates)} or an explicit column name")
    return None


# ---- building Interactions --------------------------------------------------------------------
def _encode(col: pa.Array, id_map: IdMap | None, name: str, where: Where, column: str) -> tuple[np.ndarray, IdMap]:
    if id_map is None:
        enc = col.dictionary_encode()
        return enc.indices.to_numpy().astype(np.int64), IdMap(
            np.asarray(enc.dictionary.to_pylist(), dtype=object), name=name)
    idx = pc.index_in(col, value_set=pa.array(id_map.to_list(), pa.string()))
    unknown = pc.is_null(idx)
    if pc.any(unknown).as_py():
        pos = np.flatnonzero(unknown.to_numpy(zero_copy_only=False))
        raise where.error(f"{name} ids not in the existing {name} map", column=column, positions=pos,
                          values=[col[int(p)].as_py() for p in pos[:5]])
    return idx.to_numpy(zero_copy_only=False).astype(np.int64), id_map


def interactions_from_table(
    table: pa.Table, where: Where, *, user_col: str | None = None, item_col: str | None = None,
    rating_col: str | None = None, time_col: str | None = None, time_kind: str | None = None,
    user_map: IdMap | None = None, item_map: IdMap | None = None, detect: bool = False,
) -> Interactions:
    """Validate the columns and map ids once (arrow dictionary encoding: fast on 10^7 rows)."""
    names = table.column_names
    user_col = _pick(names, user_col, USER_COLUMNS, "user", where, True)
    item_col = _pick(names, item_col, ITEM_COLUMNS, "item", where, True)
    if detect:
        rating_col = _pick(names, rating_col, RATING_COLUMNS, "rating", where, False)
        time_col = _pick(names, time_col, TIME_COLUMNS, "time", where, False)
    require_columns(table, [c for c in (user_col, item_col, rating_col, time_col) if c], where)
    user_idx, user_map = _encode(id_column(table, user_col, where), user_map, "user", where, user_col)
    item_idx, item_map = _encode(id_column(table, item_col, where), item_map, "item", where, item_col)
    rating = numeric_column(table, rating_col, where).astype(np.float32) if rating_col else None
    time = numeric_column(table, time_col, where) if time_col else None
    if time is not None and time_kind is None:
        time_kind = "position" if time_col == "position" else "timestamp"
    weight = rating if rating is not None else np.ones(len(user_idx), dtype=np.float32)
    return Interactions(user_idx=user_idx, item_idx=item_idx, weight=weight, user_map=user_map,
                        item_map=item_map, time=time, time_kind=time_kind if time is not None else None,
                        rating=rating)


# ---- filters, each reporting what it removed --------------------------------------------------
@dataclass
class LoadReport:
    """What loading did: sizes, and one entry per filter with rows/users/items removed."""

    source: str
    rows_read: int = 0
    steps: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, step: str, before: Interactions, after: Interactions, **extra: object) -> None:
        def n_active(a: np.ndarray, n: int) -> int:
            return int(np.count_nonzero(np.bincount(a, minlength=n)))

        self.steps.append({
            "step": step,
            "rows_removed": len(before) - len(after),
            "users_removed": n_active(before.user_idx, before.n_users) - n_active(after.user_idx, after.n_users),
            "items_removed": n_active(before.item_idx, before.n_items) - n_active(after.item_idx, after.n_items),
            **extra,
        })

    def lines(self) -> list[str]:
        out = [f"read {self.rows_read:,} rows from {self.source}"]
        for s in self.steps:
            extra = {k: v for k, v in s.items() if k not in ("step", "rows_removed", "users_removed", "items_removed")}
            tail = f" ({', '.join(f'{k}={v}' for k, v in extra.items())})" if extra else ""
            out.append(f"{s['step']}: removed {s['rows_removed']:,} rows, {s['users_removed']:,} users, "
                       f"{s['items_removed']:,} items{tail}")
        out.extend(self.notes)
        return out


def filter_min_rating(inter: Interactions, min_rating: float) -> Interactions:
    """Implicit conversion: keep rows whose rating is >= `min_rating`, weight becomes 1."""
    if inter.rating is None:
        raise DataError("--min-rating needs a rating column, and this data has none")
    out = inter.subset(inter.rating >= min_rating)
    return Interactions(**{**out.__dict__, "weight": np.ones(len(out), dtype=np.float32)})


def resolve_duplicates(inter: Interactions, policy: str = "first") -> Interactions:
    """One row per (user, item): keep all, the first or last in time, or their weights summed.

    `sum` keeps the latest row's time and adds the weights (counts when there is no rating).
    Only rows that are repeated get sorted (a hash pass finds them), so clean logs cost O(n).
    """
    if policy not in DUPLICATE_POLICIES:
        raise DataError(f"unknown duplicate policy {policy!r}", expected=f"one of {DUPLICATE_POLICIES}")
    if policy == "keep" or len(inter) == 0:
        return inter
    key = inter.user_idx * np.int64(inter.n_items) + inter.item_idx  # one int64 per (user, item)
    repeated = pd.Series(key).duplicated(keep=False).to_numpy()
    if not repeated.any():
        return inter
    rows = np.flatnonzero(repeated)
    time = inter.time[rows] if inter.time is not None else np.zeros(len(rows))
    order = rows[np.lexsort([inter.row[rows], time, key[rows]])]
    sorted_key = key[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = sorted_key[1:] != sorted_key[:-1]
    first = np.flatnonzero(starts)
    last = np.append(first[1:] - 1, len(order) - 1)
    pick = order[first if policy == "first" else last]
    keep = ~repeated
    keep[pick] = True
    weight = inter.weight
    if policy == "sum":
        weight = weight.copy()
        weight[pick] = np.add.reduceat(inter.weight[order], first)
    out = Interactions(**{**inter.__dict__, "weight": weight})
    return out.subset(keep)


def kcore(inter: Interactions, user_k: int = 0, item_k: int = 0) -> Interactions:
    """Repeatedly drop users with < user_k and items with < item_k interactions until stable."""
    keep = np.ones(len(inter), dtype=bool)
    while True:
        uc = np.bincount(inter.user_idx[keep], minlength=inter.n_users)
        ic = np.bincount(inter.item_idx[keep], minlength=inter.n_items)
        bad = keep & ((uc[inter.user_idx] < user_k) | (ic[inter.item_idx] < item_k))
        if not bad.any():
            return inter.subset(keep)
        keep &= ~bad


def compact(inter: Interactions, keep_items: np.ndarray | None = None) -> Interactions:
    """Re-map to the users and items that still have rows (plus `keep_items`, cold catalogue items)."""
    users = np.flatnonzero(np.bincount(inter.user_idx, minlength=inter.n_users))
    items_mask = np.bincount(inter.item_idx, minlength=inter.n_items) > 0
    if keep_items is not None:
        items_mask[keep_items] = True
    items = np.flatnonzero(items_mask)
    if len(users) == inter.n_users and len(items) == inter.n_items:
        return inter
    u_new = np.full(inter.n_users, -1, dtype=np.int64)
    u_new[users] = np.arange(len(users))
    i_new = np.full(inter.n_items, -1, dtype=np.int64)
    i_new[items] = np.arange(len(items))
    return Interactions(**{
        **inter.__dict__,
        "user_idx": u_new[inter.user_idx], "item_idx": i_new[inter.item_idx],
        "user_map": IdMap(inter.user_map.ids[users], name="user"),
        "item_map": IdMap(inter.item_map.ids[items], name="item"),
    })


@dataclass(frozen=True)
class LoadOptions:
    """How to read and clean a log. Defaults keep every row except exact (user, item) repeats."""

    user_col: str | None = None
    item_col: str | None = None
    rating_col: str | None = None
    time_col: str | None = None
    min_rating: float | None = None
    duplicates: str = "first"  # one row per pair, the earliest: splits then cannot leak a pair
    user_kcore: int = 0
    item_kcore: int = 0


def clean(inter: Interactions, options: LoadOptions, report: LoadReport,
          catalogue_items: np.ndarray | None = None) -> Interactions:
    """Apply min-rating, duplicate policy and k-core in that order, reporting each."""
    if options.min_rating is not None:
        before, inter = inter, filter_min_rating(inter, options.min_rating)
        report.add("min_rating", before, inter, threshold=options.min_rating)
    before, inter = inter, resolve_duplicates(inter, options.duplicates)
    report.add("duplicates", before, inter, policy=options.duplicates)
    if options.user_kcore or options.item_kcore:
        before, inter = inter, kcore(inter, options.user_kcore, options.item_kcore)
        report.add("kcore", before, inter, user_k=options.user_kcore, item_k=options.item_kcore)
        catalogue_items = None  # k-core defines the catalogue
    return compact(inter, catalogue_items)


def load_interactions(source: str | Path | pd.DataFrame, options: LoadOptions = LoadOptions(),
                      *, item_ids: np.ndarray | None = None) -> tuple[Interactions, LoadReport]:
    """Read, validate, map and clean a log. `item_ids` adds catalogue items with no interactions."""
    if isinstance(source, pd.DataFrame):
        where = Where("DataFrame", is_file=False)
        table = pa.Table.from_pandas(source, preserve_index=False)
    else:
        where = Where(str(source), is_file=True)
        table = read_table(source, string_columns=tuple(
            c for c in (options.user_col, options.item_col) if c) + USER_COLUMNS + ITEM_COLUMNS)
    report = LoadReport(source=where.source, rows_read=table.num_rows)
    inter = interactions_from_table(table, where, user_col=options.user_col, item_col=options.item_col,
                                    rating_col=options.rating_col, time_col=options.time_col, detect=True)
    del table
    keep = None
    if item_ids is not None and len(item_ids):
        extended = inter.item_map.extend(item_ids)
        inter = Interactions(**{**inter.__dict__, "item_map": extended})
        keep = extended.index(item_ids)
    return clean(inter, options, report, keep), report
