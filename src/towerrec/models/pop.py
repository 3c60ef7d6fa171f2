"""Popularity: rank every item by how often it occurs in the training interactions.

The floor every other model must beat (see e.g. Cremonesi, Koren and Turrin, "Performance of
recommender algorithms on top-N recommendation tasks", RecSys 2010). Unlike RecBole 1.2.1's `Pop`,
which counts an item at most once per training batch, this is the exact count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.data.sequences import Sequences
from towerrec.models.base import Capabilities, FitOptions, Recommender


@dataclass(frozen=True)
class PopularityConfig:
    """Popularity has nothing to tune; `weighted` only changes what is counted."""

    weighted: bool = False  # False: count rows (users per item); True: sum the interaction weights


class Popularity(Recommender):
    """Most popular items first, the same list for every user (seen items removed).

    Use it as the baseline to beat and as a fallback for users with no usable history.

    >>> model = Popularity().fit(split.train)
    >>> recs = model.recommend(["196", "186"], k=10)      # same list, minus each user's items
    >>> recs = model.recommend(history=["242", "302"])    # new users get it too
    """

    name = "pop"
    Config = PopularityConfig

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(histories=True)   # any history (even empty) gets the popularity list

    def _fit(self, interactions: Interactions, *, user_features: FeatureTable | None,
             item_features: FeatureTable | None, valid: Interactions | None, options: FitOptions) -> None:
        if self.config.weighted:
            counts = np.bincount(interactions.item_idx, weights=interactions.weight, minlength=interactions.n_items)
        else:
            counts = interactions.item_counts()
        self.counts_ = counts.astype(np.float32)  # [n_items]

    def _update(self, delta, *, old_seen, items, users, options: FitOptions) -> None:
        """New rows add to the counts (new items start at 0): exactly what a refit on all rows counts."""
        rows = delta.rows
        new = np.bincount(rows.item_idx, weights=rows.weight if self.config.weighted else None,
                          minlength=rows.n_items)
        old = np.concatenate([self.counts_.astype(np.float64), np.zeros(rows.n_items - len(self.counts_))])
        self.counts_ = (old + new).astype(np.float32)

    def stream_refusal(self) -> str | None:
        """Row counts come from the vocabulary pass of a stream; weights are not read there."""
        if self.config.weighted:
            return "weighted=True sums interaction weights, which the streaming pass does not read"
        return None

    def _fit_stream(self, log, *, options: FitOptions) -> None:
        self.counts_ = log.item_counts.astype(np.float32)

    def _scores(self, n: int) -> torch.Tensor:
        return torch.from_numpy(self.counts_).repeat(n, 1)  # [n, n_items], writable: callers mask in place

    def _score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        return self._scores(len(user_idx))

    def _score_histories(self, histories: Sequences) -> torch.Tensor:
        return self._scores(histories.n_users)

    def explanation_method(self) -> str:
        return "popularity: the same ranking for everyone; the history does not enter the score"

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts_}

    def _load_state(self, tensors: dict[str, np.ndarray], extra: dict) -> None:
        self.counts_ = tensors["counts"]
