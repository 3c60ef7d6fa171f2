"""Map the user's own string ids to contiguous int64 indices, once, at the boundary."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from towerrec.errors import UnknownIdError


class IdMap:
    """A vocabulary: external string ids <-> indices 0..n-1.

    >>> m = IdMap(["u7", "u3"])
    >>> m.index(["u3"]).tolist(), m.ids[0]
    ([1], 'u7')
    """

    def __init__(self, ids: Sequence[str] | np.ndarray, name: str = "id") -> None:
        arr = np.asarray(ids, dtype=object)
        self.ids: np.ndarray = arr
        self.name = name
        self._index = pd.Index(arr)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][:5].tolist()
            raise ValueError(f"{name} map has duplicated ids: {dup}")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        shown = ", ".join(repr(str(i)) for i in self.ids[:3]) + (", ..." if len(self) > 3 else "")
        return f"IdMap({self.name!r}, {len(self):,} ids: {shown})" if len(self) else f"IdMap({self.name!r}, empty)"

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self.ids, other.ids)

    def get_index(self, ids: Iterable[str]) -> np.ndarray:
        """Indices for `ids`, -1 where an id is unknown."""
        return self._index.get_indexer(pd.Index(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=object)))

    def index(self, ids: Iterable[str]) -> np.ndarray:
        """Indices for `ids`; raises UnknownIdError naming the first unknown ones."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=object)
        idx = self.get_index(ids)
        if (idx < 0).any():
            bad = ids[idx < 0][:5].tolist()
            raise UnknownIdError(f"unknown {self.name}(s): {', '.join(map(str, bad))}")
        return idx.astype(np.int64)

    def to_list(self) -> list[str]:
        return [str(x) for x in self.ids]

    @classmethod
    def from_list(cls, ids: Sequence[str], name: str = "id") -> "IdMap":
        return cls(np.asarray(ids, dtype=object), name=name)

    def extend(self, new_ids: Iterable[str]) -> "IdMap":
        """A new map with unseen ids appended (existing indices unchanged)."""
        new = np.asarray(list(new_ids), dtype=object)
        new = pd.unique(new[self.get_index(new) < 0])
        return IdMap(np.concatenate([self.ids, new]), name=self.name)


class HasIdMaps:
    """`n_users` / `n_items` of anything holding a `user_map` and an `item_map`."""

    user_map: IdMap
    item_map: IdMap

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)
