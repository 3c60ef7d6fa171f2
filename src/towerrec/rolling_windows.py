"""The rolling split: a timestamped log cut into an initial part and N + 1 time slices.

The log is cut by time quantiles. With `start` s and N windows, the times at the row quantiles
q_j = s + j (1 - s) / (N + 1), j = 0..N, are the cuts c_0 <= ... <= c_N; slice j holds the rows
with c_j <= time < c_{j+1} (the last slice runs to the end of the log). Rows with equal times never
straddle a cut. The first fit sees the rows before c_0; window t = 1..N tests on slice t
(`towerrec.rolling` runs the evaluation). Data only: no model is imported here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from towerrec.data.dataset import Dataset
from towerrec.data.delta import compact
from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError


@dataclass(frozen=True, eq=False)
class RollingSplit:
    """A log cut into an initial part and N + 1 time slices (see the module docstring)."""

    log: Interactions
    cuts: np.ndarray                     # [N + 1] times c_0..c_N
    slice_of: np.ndarray                 # [rows]: -1 before c_0, else the slice j in 0..N
    start: float
    seed: int = 0
    item_features: FeatureTable | None = None   # aligned to log.item_map
    user_features: FeatureTable | None = None
    items: pd.DataFrame | None = None    # raw item table (item_id + columns): content of new items
    users: pd.DataFrame | None = None
    info: dict = field(default_factory=dict)

    @property
    def windows(self) -> int:
        return len(self.cuts) - 1

    def __repr__(self) -> str:
        return (f"RollingSplit({self.windows} windows from quantile {self.start:g}: initial "
                f"{int((self.slice_of < 0).sum()):,} rows, windows of "
                f"{', '.join(f'{int((self.slice_of == t).sum()):,}' for t in range(1, self.windows + 1))} rows)")

    def before(self, t: int) -> Interactions:
        """Every row before window t's slice (t = 0: the initial fit), over maps of just its ids."""
        return compact(self.log.subset(self.slice_of < t))

    def slice(self, j: int) -> Interactions:
        """The rows of slice j (over the whole log's maps)."""
        return self.log.subset(self.slice_of == j)

    def features(self, train: Interactions) -> tuple[FeatureTable | None, FeatureTable | None]:
        """(user, item) feature tables aligned to a part's maps."""
        return (self.user_features.aligned(train.user_map) if self.user_features is not None else None,
                self.item_features.aligned(train.item_map) if self.item_features is not None else None)

    def content(self, rows: Interactions) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        """(items, users) rows of the raw tables for the ids of `rows`: what an update may read.
        Only ids with rows: future catalogue items must stay unknown to the update track too."""
        def rows_of(table: pd.DataFrame | None, column: str, ids: np.ndarray) -> pd.DataFrame | None:
            if table is None:
                return None
            return table[table[column].astype(str).isin(set(ids.astype(str)))]

        return (rows_of(self.items, "item_id", rows.item_map.ids[np.unique(rows.item_idx)]),
                rows_of(self.users, "user_id", rows.user_map.ids[np.unique(rows.user_idx)]))


def rolling_split(data: Dataset | Interactions, windows: int = 5, start: float = 0.5, seed: int = 0) -> RollingSplit:
    """Cut a timestamped log into an initial part and `windows` + 1 slices by time quantiles."""
    dataset = data if isinstance(data, Dataset) else None
    inter = data.interactions if dataset is not None else data
    if not isinstance(inter, Interactions):
        raise TowerrecError(f"rolling_split needs a Dataset or Interactions, got {type(data).__name__}")
    if isinstance(windows, bool) or not isinstance(windows, (int, np.integer)) or windows < 1:
        raise TowerrecError(f"--windows must be a positive integer, got {windows!r}")
    if not 0.0 < float(start) < 1.0:
        raise TowerrecError(f"the rolling start quantile must be in (0, 1), got {start}")
    if inter.time is None or inter.time_kind == "position":
        raise TowerrecError("the 'rolling' split needs timestamps: windows are global time quantiles "
                            "('position' only orders each user's rows)")
    times = np.sort(np.asarray(inter.time, dtype=np.float64))
    n = len(times)
    q = start + np.arange(windows + 1) * (1.0 - start) / (windows + 1)
    cuts = times[np.minimum(np.round(q * n).astype(np.int64), n - 1)]
    slice_of = np.searchsorted(cuts, np.asarray(inter.time, dtype=np.float64), side="right") - 1
    sizes = np.bincount(slice_of + 1, minlength=windows + 2)
    if sizes.min() == 0:
        empty = ["the initial part" if j == 0 else f"slice {j - 1}" for j in np.flatnonzero(sizes == 0)]
        raise TowerrecError(f"rolling split: {', '.join(empty)} would be empty (rows share too few distinct "
                            f"times for {windows} windows from quantile {start:g}); use fewer windows")
    split = RollingSplit(inter, cuts, slice_of, float(start), seed)
    if dataset is not None:
        split = RollingSplit(inter, cuts, slice_of, float(start), seed, dataset.item_features, dataset.user_features,
                             dataset.items, dataset.users)
    split.info.update(window_info(split))
    return split


def window_info(split: RollingSplit) -> dict:
    """Per window: rows, users, new users and items (unseen before it), the cold-item share of its rows."""
    inter, out = split.log, []
    first_user = first_slice(inter.user_idx, split.slice_of, inter.n_users)
    first_item = first_slice(inter.item_idx, split.slice_of, inter.n_items)
    for t in range(1, split.windows + 1):
        rows = split.slice_of == t
        users, items = np.unique(inter.user_idx[rows]), np.unique(inter.item_idx[rows])
        out.append({"window": t, "start": float(split.cuts[t]),
                    "end": float(split.cuts[t + 1]) if t + 1 < len(split.cuts) else float(np.max(inter.time)),
                    "rows": int(rows.sum()), "users": len(users), "items": len(items),
                    "new_users": int((first_user[users] == t).sum()), "new_items": int((first_item[items] == t).sum()),
                    "cold_item_share": float((first_item[inter.item_idx[rows]] == t).mean()),
                    "cold_user_share": float((first_user[inter.user_idx[rows]] == t).mean())})
    return {"initial_rows": int((split.slice_of < 0).sum()), "windows": out}


def first_slice(idx: np.ndarray, slice_of: np.ndarray, n: int) -> np.ndarray:
    """[n] the first slice (-1 = initial part) in which each index has a row."""
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, idx, slice_of)
    return first
