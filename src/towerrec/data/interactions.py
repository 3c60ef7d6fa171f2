"""Interactions: columnar arrays of (user_idx, item_idx, weight, time) plus the id maps.

Every split, model and metric works on these indices; external ids appear only at the edges
(`from_frame`, `from_table`, `to_frame`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from towerrec.data.columns import Columns, detect_columns
from towerrec.data.idmap import HasIdMaps, IdMap
from towerrec.data.tables import table_from_frame
from towerrec.data.validate import (
    Where,
    header_rows,
    id_column,
    non_negative,
    numeric_column,
    require_columns,
    time_column,
)


@dataclass(frozen=True, eq=False)
class Interactions(HasIdMaps):
    """Interaction log over a fixed catalogue.

    Arrays all have shape [n]. `time` holds unix seconds (`time_kind="timestamp"`), a per-user
    0-based order (`"position"`), or is None. `row` is the original row number, used to break ties
    in time so that orderings are deterministic.

    >>> inter = Interactions.from_frame(pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]}))
    >>> inter.n_users, inter.n_items, len(inter)
    (2, 2, 3)
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    weight: np.ndarray
    user_map: IdMap
    item_map: IdMap
    time: np.ndarray | None = None
    time_kind: str | None = None
    rating: np.ndarray | None = None
    row: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        if self.row is None:
            object.__setattr__(self, "row", np.arange(len(self.user_idx), dtype=np.int64))

    # ---- sizes ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.user_idx.shape[0])

    def user_counts(self) -> np.ndarray:
        """Interactions per user index, shape [n_users]."""
        return np.bincount(self.user_idx, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        """Interactions per item index, shape [n_items]."""
        return np.bincount(self.item_idx, minlength=self.n_items)

    def active_users(self) -> np.ndarray:
        """Sorted user indices that have at least one interaction here."""
        return np.flatnonzero(self.user_counts())

    # ---- derived views -------------------------------------------------------------------
    def subset(self, selector: np.ndarray) -> "Interactions":
        """Rows picked by a boolean mask or an index array; id maps are shared, not re-mapped."""
        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[selector]

        return replace(
            self,
            user_idx=self.user_idx[selector],
            item_idx=self.item_idx[selector],
            weight=self.weight[selector],
            time=take(self.time),
            rating=take(self.rating),
            row=take(self.row),
        )

    def concat(self, other: "Interactions") -> "Interactions":
        """Rows of both (same id maps required), e.g. train + valid for the final fit."""
        if self.user_map is not other.user_map and self.user_map != other.user_map:
            raise ValueError("cannot concatenate interactions with different user maps")
        if self.item_map is not other.item_map and self.item_map != other.item_map:
            raise ValueError("cannot concatenate interactions with different item maps")

        def cat(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return None if a is None or b is None else np.concatenate([a, b])

        return replace(
            self,
            user_idx=np.concatenate([self.user_idx, other.user_idx]),
            item_idx=np.concatenate([self.item_idx, other.item_idx]),
            weight=np.concatenate([self.weight, other.weight]),
            time=cat(self.time, other.time),
            rating=cat(self.rating, other.rating),
            row=cat(self.row, other.row),
        )

    def to_csr(self, *, binary: bool = True, dtype: type = np.float32) -> sp.csr_matrix:
        """User x item matrix [n_users, n_items]; duplicates are summed unless `binary`."""
        data = np.ones(len(self), dtype=dtype) if binary else self.weight.astype(dtype)
        m = sp.csr_matrix((data, (self.user_idx, self.item_idx)), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1
        return m

    def order(self) -> np.ndarray:
        """Row permutation sorting by user, then time (ties by original row), stable."""
        in_row_order = bool(np.all(self.row[1:] > self.row[:-1]))  # stable sorts then keep row order
        if self.time is None:
            return np.argsort(self.user_idx, kind="stable") if in_row_order else np.lexsort([self.row, self.user_idx])
        keys = [self.time, self.user_idx] if in_row_order else [self.row, self.time, self.user_idx]
        return np.lexsort(keys)

    def to_frame(self) -> pd.DataFrame:
        """Original ids plus weight/rating/time columns, for writing audit files."""
        out = {
            "user_id": self.user_map.ids[self.user_idx],
            "item_id": self.item_map.ids[self.item_idx],
        }
        if self.rating is not None:
            out["rating"] = self.rating
        if self.time is not None:
            out[self.time_kind or "timestamp"] = self.time
        return pd.DataFrame(out)

    def __repr__(self) -> str:
        time = f", time: {self.time_kind}" if self.time is not None else ""
        rating = ", rating" if self.rating is not None else ""
        return (f"Interactions({len(self):,} rows, {self.n_users:,} users, {self.n_items:,} items"
                f"{rating}{time})")

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = "user_id",
        item_col: str = "item_id",
        rating_col: str | None = None,
        time_col: str | None = None,
        time_kind: str | None = None,
        user_map: IdMap | None = None,
        item_map: IdMap | None = None,
        source: str = "DataFrame",
    ) -> "Interactions":
        """Build from a frame with named columns, validated like a file (`towerrec.data.load`).

        Column names match ignoring case; the rating becomes the weights, so it must be >= 0.
        """
        where = Where(source, is_file=False)
        columns = detect_columns([str(c) for c in frame.columns], where, user=user_col, item=item_col,
                                 rating=rating_col, time=time_col, optional=False)
        table, _ = table_from_frame(frame, columns.used, where, string_columns=(columns.user, columns.item))
        inter = from_table(table, columns, where, time_kind=time_kind, user_map=user_map, item_map=item_map)
        non_negative(inter.weight, inter.row, columns.rating, where,
                     expected="ratings >= 0 (they are the weights; drop or rescale the negative rows)")
        return inter


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


def from_table(table: pa.Table, columns: Columns, where: Where, *, time_kind: str | None = None,
               user_map: IdMap | None = None, item_map: IdMap | None = None) -> Interactions:
    """Validate the chosen columns and map ids once (arrow dictionary encoding: fast on 10^7 rows).

    The weights are the rating when there is one, else 1; filters (`towerrec.data.load`) may change that.
    """
    require_columns(table, columns.used, where)
    header_rows(table, [columns.user, columns.item], where)
    user_idx, user_map = _encode(id_column(table, columns.user, where), user_map, "user", where, columns.user)
    item_idx, item_map = _encode(id_column(table, columns.item, where), item_map, "item", where, columns.item)
    rating = None
    if columns.rating:
        values = numeric_column(table, columns.rating, where)
        too_big = np.abs(values) > np.finfo(np.float32).max  # would become inf as float32 weights
        if too_big.any():
            pos = np.flatnonzero(too_big)
            raise where.error("values too large", column=columns.rating, positions=pos, values=values[pos[:5]],
                              expected=f"ratings within +-{np.finfo(np.float32).max:.3g}")
        rating = values.astype(np.float32)
    time = time_column(table, columns.time, where) if columns.time else None
    weight = rating if rating is not None else np.ones(len(user_idx), dtype=np.float32)
    return Interactions(user_idx=user_idx, item_idx=item_idx, weight=weight, user_map=user_map,
                        item_map=item_map, time=time,
                        time_kind=(time_kind or columns.time_kind) if time is not None else None, rating=rating)
