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

from towerrec.data.columns import Columns, detect_columns
from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions, from_table
from towerrec.data.tables import read_header, read_table, table_from_frame
from towerrec.data.validate import Where, is_temporal, non_negative
from towerrec.errors import DataError

DUPLICATE_POLICIES = ("keep", "first", "last", "sum")


# ---- filters, each reporting what it removed --------------------------------------------------
@dataclass
class LoadReport:
    """What loading did: the columns used and ignored, sizes, and what every filter removed.

    `rows_read` equals the rows kept plus the `rows_removed` of every step, always.
    """

    source: str
    rows_read: int = 0
    columns: dict[str, str] = field(default_factory=dict)   # role -> column name
    ignored: list[str] = field(default_factory=list)        # columns no role uses
    weights: str = ""                                       # where the weights come from
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

    def use_columns(self, columns: Columns) -> None:
        self.columns, self.ignored = columns.roles(), list(columns.ignored)
        self.weights = f"the {columns.rating!r} column" if columns.rating else "1 on every row (no rating column)"

    def lines(self) -> list[str]:
        out = [f"read {self.rows_read:,} rows from {self.source}"]
        if self.columns:
            out.append("columns: " + ", ".join(f"{role} {c!r}" for role, c in self.columns.items())
                       + (f"; weights: {self.weights}" if self.weights else ""))
        if self.ignored:
            out.append(f"ignored columns: {', '.join(repr(c) for c in self.ignored)} (name one with "
                       f"--rating-col or --time-col to use it)")
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
          catalogue_items: np.ndarray | None = None, where: Where | None = None) -> Interactions:
    """Apply min-rating, the weight check, the duplicate policy and k-core, in that order, reporting each.

    Negative weights are an error, but only after min-rating: rows it removes do not count.
    """
    where = where or Where(report.source, is_file=False)
    if options.min_rating is not None:
        before, inter = inter, filter_min_rating(inter, options.min_rating)
        report.add("min_rating", before, inter, threshold=options.min_rating)
        report.weights = f"1 on every row kept by min_rating (rating >= {options.min_rating:g})"
    non_negative(inter.weight, inter.row, report.columns.get("rating"), where,
                 expected="weights >= 0 (use --min-rating to keep only positive feedback, or rescale)")
    before, inter = inter, resolve_duplicates(inter, options.duplicates)
    report.add("duplicates", before, inter, policy=options.duplicates)
    if options.user_kcore or options.item_kcore:
        before, inter = inter, kcore(inter, options.user_kcore, options.item_kcore)
        report.add("kcore", before, inter, user_k=options.user_kcore, item_k=options.item_kcore)
        catalogue_items = None  # k-core defines the catalogue
    return compact(inter, catalogue_items)


def read_interactions(source: str | Path | pd.DataFrame, options: LoadOptions = LoadOptions()
                      ) -> tuple[pa.Table, Columns, Where, list[str]]:
    """The log as an arrow table with its columns chosen; ids are read as strings, never inferred."""
    names = [str(c) for c in source.columns] if isinstance(source, pd.DataFrame) else read_header(source)
    where = Where("DataFrame" if isinstance(source, pd.DataFrame) else str(source),
                  is_file=not isinstance(source, pd.DataFrame))
    columns = detect_columns(names, where, user=options.user_col, item=options.item_col,
                             rating=options.rating_col, time=options.time_col)
    if isinstance(source, pd.DataFrame):
        table, notes = table_from_frame(source, columns.used, where, string_columns=(columns.user, columns.item))
        return table, columns, where, notes
    return read_table(source, string_columns=(columns.user, columns.item)), columns, where, []


def load_interactions(source: str | Path | pd.DataFrame, options: LoadOptions = LoadOptions(),
                      *, item_ids: np.ndarray | None = None) -> tuple[Interactions, LoadReport]:
    """Read, validate, map and clean a log. `item_ids` adds catalogue items with no interactions."""
    if options.duplicates not in DUPLICATE_POLICIES:  # before reading: a typo should not cost a 20M-row read
        raise DataError(f"unknown duplicate policy {options.duplicates!r}", expected=f"one of {DUPLICATE_POLICIES}")
    table, columns, where, notes = read_interactions(source, options)
    report = LoadReport(source=where.source, rows_read=table.num_rows, notes=notes)
    report.use_columns(columns)
    if columns.time and is_temporal(table.schema.field(columns.time).type):
        report.notes.append(f"time column {columns.time!r}: dates and times read as unix seconds (UTC)")
    inter = from_table(table, columns, where)
    del table
    keep = None
    if item_ids is not None and len(item_ids):
        extended = inter.item_map.extend(item_ids)
        inter = Interactions(**{**inter.__dict__, "item_map": extended})
        keep = extended.index(item_ids)
    return clean(inter, options, report, keep, where), report
