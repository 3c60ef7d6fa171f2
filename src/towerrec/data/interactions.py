"""Interactions: columnar arrays of (user_idx, item_idx, weight, time) plus the id maps.

Every split, model and metric works on these indices; external ids appear only at the edges
(`from_frame`, `to_frame`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from towerrec.data.idmap import IdMap


@dataclass(frozen=True, eq=False)
class Interactions:
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

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

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
        """Build from a frame with named columns, validated like a file (`towerrec.data.load`)."""
        import pyarrow as pa

        from towerrec.data.load import interactions_from_table
        from towerrec.data.validate import Where

        table = pa.Table.from_pandas(frame, preserve_index=False)
        return interactions_from_table(
            table, Where(source, is_file=False), user_col=user_col, item_col=item_col,
            rating_col=rating_col, time_col=time_col, time_kind=time_kind,
            user_map=user_map, item_map=item_map,
        )
