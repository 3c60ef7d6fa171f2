"""Popularity: the contract, with popularity's own right answer, plus exact counts."""
from __future__ import annotations

import numpy as np
import pandas as pd
from contract import BlockData, RecommenderContract

from towerrec.data.interactions import Interactions
from towerrec.models.pop import Popularity


class TestPopularityContract(RecommenderContract):
    history_reproduces_users = True
    update_equals_refit = True
    update_sensible = False      # one list for everyone: no taste blocks to keep

    def make_model(self) -> Popularity:
        return Popularity()

    def expected_top1(self, data: BlockData, model: Popularity) -> dict[str, str]:
        """The most-seen item the user has not seen (ties: the model's seeded tie order)."""
        counts = data.train.item_counts()
        order = np.lexsort([model.ties_.keys, -counts])
        ids = data.train.item_map.ids[order]
        return {u: next(i for i in ids if i not in data.seen[u]) for u in data.user_block}


def _frame() -> Interactions:
    rows = [("a", "x", 5.0), ("b", "x", 1.0), ("c", "x", 1.0), ("a", "y", 1.0), ("b", "y", 4.0), ("a", "z", 9.0)]
    return Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]), rating_col="rating")


def test_counts_rows_and_ranks_with_seen_removed() -> None:
    model = Popularity().fit(_frame())
    np.testing.assert_array_equal(model.counts_, [3, 2, 1])        # x, y, z
    assert model.recommend("c", k=3).item_ids.tolist() == [["y", "z", None]]
    assert model.recommend(history=["y"], k=2).item_ids.tolist() == [["x", "z"]]


def test_weighted_sums_weights() -> None:
    model = Popularity(weighted=True).fit(_frame())
    np.testing.assert_array_equal(model.counts_, [7, 5, 9])
    assert model.recommend(history=[], k=3).item_ids.tolist() == [["z", "x", "y"]]
