"""New interactions mapped onto a fitted model's id maps, the maps grown to admit new ids.

What `Recommender.update` promises about ids (one rule for every model):

- ids are matched to the model's maps by their string form; an id the maps do not hold is
  *admitted*: appended after the existing ones, in order of first appearance in the new rows
  (catalogue items given only in an `items` table follow, in table order). Existing indices never
  move, so everything keyed by index (embeddings, the seeded tie order, an ANN index) stays valid;
- a *new* user (item) is one admitted by this update; a *changed* user (item) was known before
  and has at least one of the new rows; *touched* = new or changed. Nothing else is touched.

>>> import pandas as pd
>>> from towerrec.data.idmap import IdMap
>>> d = admit(IdMap(["a"], "user"), IdMap(["x"], "item"),
...           pd.DataFrame({"user_id": ["a", "b"], "item_id": ["y", "x"]}))
>>> d.user_map.to_list(), d.item_map.to_list(), d.changed_users.tolist(), d.new_items.tolist()
(['a', 'b'], ['x', 'y'], [0], [1])
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError


@dataclass(frozen=True, eq=False)
class Delta:
    """The rows of one update over the grown maps, and which users and items they touch."""

    rows: Interactions            # the new rows; rows.user_map / rows.item_map are the grown maps
    n_users_before: int
    n_items_before: int
    changed_users: np.ndarray     # sorted indices < n_users_before with at least one new row
    changed_items: np.ndarray

    @property
    def user_map(self) -> IdMap:
        return self.rows.user_map

    @property
    def item_map(self) -> IdMap:
        return self.rows.item_map

    @property
    def new_users(self) -> np.ndarray:
        return np.arange(self.n_users_before, len(self.user_map), dtype=np.int64)

    @property
    def new_items(self) -> np.ndarray:
        return np.arange(self.n_items_before, len(self.item_map), dtype=np.int64)

    @property
    def touched_users(self) -> np.ndarray:
        return np.concatenate([self.changed_users, self.new_users])

    @property
    def touched_items(self) -> np.ndarray:
        return np.concatenate([self.changed_items, self.new_items])

    def summary(self) -> dict[str, int]:
        """Counts for the model's lineage and for logs."""
        return {"rows": len(self.rows), "new_users": len(self.new_users), "new_items": len(self.new_items),
                "changed_users": len(self.changed_users), "changed_items": len(self.changed_items)}


def as_interactions(new: Interactions | pd.DataFrame | None) -> Interactions | None:
    """A DataFrame is read like a log file (columns found by name: user_id, item_id, rating,
    timestamp, ...); Interactions pass through; None means no rows."""
    if new is None or isinstance(new, Interactions):
        return new
    if isinstance(new, pd.DataFrame):
        if new.empty:
            return None
        from towerrec.data.columns import detect_columns
        from towerrec.data.validate import Where

        source = "update DataFrame"
        cols = detect_columns([str(c) for c in new.columns], Where(source, is_file=False))   # as a log file's
        return Interactions.from_frame(new, user_col=cols.user, item_col=cols.item, rating_col=cols.rating,
                                       time_col=cols.time, source=source)
    raise TowerrecError(f"update needs Interactions or a pandas DataFrame, got {type(new).__name__}")


def admit(user_map: IdMap, item_map: IdMap, new: Interactions | pd.DataFrame | None, *,
          extra_items: Sequence[str] = ()) -> Delta:
    """Grow the maps by the ids of `new` (and `extra_items`, catalogue items without rows) and
    re-express its rows over them. Vectorised: one hash lookup per row, no loop over rows."""
    inter = as_interactions(new)
    if inter is None:
        inter = _empty()
    user_ids = inter.user_map.ids[inter.user_idx].astype(str).astype(object)
    item_ids = inter.item_map.ids[inter.item_idx].astype(str).astype(object)
    grown_users = user_map.extend(user_ids)
    grown_items = item_map.extend(np.concatenate([item_ids, np.asarray(list(extra_items), dtype=object)]))
    u = grown_users.get_index(user_ids).astype(np.int64)
    i = grown_items.get_index(item_ids).astype(np.int64)
    rows = Interactions(user_idx=u, item_idx=i, weight=np.asarray(inter.weight, dtype=np.float32),
                        user_map=grown_users, item_map=grown_items, time=inter.time,
                        time_kind=inter.time_kind, rating=inter.rating, row=inter.row)
    n_u, n_i = len(user_map), len(item_map)
    return Delta(rows, n_u, n_i, np.unique(u[u < n_u]), np.unique(i[i < n_i]))


def _empty() -> Interactions:
    empty = np.zeros(0, dtype=np.int64)
    return Interactions(user_idx=empty, item_idx=empty.copy(), weight=np.zeros(0, dtype=np.float32),
                        user_map=IdMap([], "user"), item_map=IdMap([], "item"))


def compact(inter: Interactions) -> Interactions:
    """The same rows over maps that hold only the ids that occur in them (in the maps' order):
    what a model fitted on just these rows knows (`towerrec.rolling` refits on such logs)."""
    users = np.flatnonzero(inter.user_counts())
    items = np.flatnonzero(inter.item_counts())
    user_pos = np.full(inter.n_users, -1, dtype=np.int64)
    item_pos = np.full(inter.n_items, -1, dtype=np.int64)
    user_pos[users] = np.arange(len(users))
    item_pos[items] = np.arange(len(items))
    return Interactions(user_idx=user_pos[inter.user_idx], item_idx=item_pos[inter.item_idx], weight=inter.weight,
                        user_map=IdMap(inter.user_map.ids[users], "user"),
                        item_map=IdMap(inter.item_map.ids[items], "item"), time=inter.time,
                        time_kind=inter.time_kind, rating=inter.rating, row=inter.row)
