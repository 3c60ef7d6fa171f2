"""`Recommendations`: ranked lists for a set of users, the one object that `recommend`, evaluation,
the CLI and the REST API all pass around."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from towerrec.data.idmap import IdMap
from towerrec.ranking import TopK


@dataclass(frozen=True)
class Recommendations:
    """Top-k lists: `item_idx`/`scores` are [n_users, k]; -1 (and NaN) pad lists shorter than k.

    `user_ids` are the users' own ids; `user_idx` their indices in the model's user map (-1 for
    users it does not know), when the lists were made for indexed users. `fallback[u]` says how a
    list was made when not by the model's own score for a known user ("history", "features",
    "popularity"); `tied[u]` that the list was cut inside a run of equal scores.
    """

    user_ids: np.ndarray
    item_idx: np.ndarray
    scores: np.ndarray
    item_map: IdMap
    fallback: list[str | None] = field(default_factory=list)
    user_idx: np.ndarray | None = None
    tied: np.ndarray | None = None

    @classmethod
    def from_top(cls, user_ids: np.ndarray, top: TopK, item_map: IdMap, *, fallback: list[str | None] | None = None,
                 user_idx: np.ndarray | None = None) -> "Recommendations":
        n = len(user_ids)
        return cls(np.asarray(user_ids, dtype=object), top.item_idx, top.scores, item_map,
                   list(fallback) if fallback is not None else [None] * n, user_idx, top.tied)

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def k(self) -> int:
        return int(self.item_idx.shape[1])

    @property
    def item_ids(self) -> np.ndarray:
        """[n_users, k] item ids, None on padding."""
        ids = np.append(self.item_map.ids, None)  # index -1 -> None
        return ids[self.item_idx]

    def to_frame(self) -> pd.DataFrame:
        """Long format `user_id, rank, item_id, score` (rank starts at 1; padding left out)."""
        n, k = self.item_idx.shape
        valid = self.item_idx.reshape(-1) >= 0
        return pd.DataFrame({
            "user_id": np.repeat(self.user_ids, k)[valid],
            "rank": np.tile(np.arange(1, k + 1), n)[valid],
            "item_id": self.item_map.ids[self.item_idx.reshape(-1)[valid]],
            "score": self.scores.reshape(-1)[valid],
        })

    def __repr__(self) -> str:
        falls = pd.Series([f for f in self.fallback if f]).value_counts().to_dict() if self.fallback else {}
        tail = f", fallback {falls}" if falls else ""
        return f"Recommendations({len(self):,} users x top {self.k}{tail})"
