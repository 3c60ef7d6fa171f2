"""ItemKNN: the contract plus the similarity formula on a hand-computed case."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from contract import RecommenderContract

import towerrec.models.itemknn as itemknn
from towerrec.data.interactions import Interactions
from towerrec.models.itemknn import ItemKNN, ItemKNNConfig, item_similarity


class TestItemKNNContract(RecommenderContract):
    history_reproduces_users = True
    update_equals_refit = True   # incremental co-occurrence counts, then the same top-k
    history_atol = 1e-6

    def make_model(self) -> ItemKNN:
        return ItemKNN(neighbours=5, shrink=1.0)


# users a: x y | b: x y z | c: x | d: z   ->   n = (x 3, y 2, z 2); co(x,y) = 2, co(x,z) = co(y,z) = 1
SEEN = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0], [0, 0, 1]], dtype=np.float32))


def test_cosine_with_shrink_hand_computed() -> None:
    s = item_similarity(SEEN, ItemKNNConfig(neighbours=2, shrink=1.0, alpha=0.5)).toarray()
    expected = np.array([
        [0, 2 / (np.sqrt(6) + 1), 1 / (np.sqrt(6) + 1)],
        [2 / (np.sqrt(6) + 1), 0, 1 / (2 + 1)],
        [1 / (np.sqrt(6) + 1), 1 / (2 + 1), 0],
    ])
    np.testing.assert_allclose(s, expected, rtol=1e-6)


def test_asymmetric_cosine_and_top_k_per_target_column() -> None:
    # alpha = 0.9: s(i -> j) = co / (n_i^0.9 n_j^0.1 + shrink); one neighbour kept per column
    s = item_similarity(SEEN, ItemKNNConfig(neighbours=1, shrink=1.0, alpha=0.9)).toarray()
    expected = np.zeros((3, 3))
    expected[1, 0] = 2 / (2 ** 0.9 * 3 ** 0.1 + 1)   # x's neighbour: y (beats z: co 1)
    expected[0, 1] = 2 / (3 ** 0.9 * 2 ** 0.1 + 1)   # y's neighbour: x
    expected[1, 2] = 1 / (2 ** 0.9 * 2 ** 0.1 + 1)   # z's neighbour: y = 1/3 (beats x: 1/(3^.9 2^.1 + 1) = 0.27)
    np.testing.assert_allclose(s, expected, rtol=1e-6)


def test_blocks_give_the_same_similarity(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    seen = sp.csr_matrix((rng.random((60, 25)) < 0.2).astype(np.float32))
    config = ItemKNNConfig(neighbours=4, shrink=2.0, alpha=0.7)
    whole = item_similarity(seen, config)
    monkeypatch.setattr(itemknn, "_BLOCK_ELEMENTS", 25 * 3)   # 3 target columns per block
    blocked = item_similarity(seen, config)
    np.testing.assert_array_equal(whole.toarray(), blocked.toarray())
    assert (np.diff(whole.tocsc().indptr) <= 4).all()        # at most k neighbours per target


def test_scores_are_history_times_similarity() -> None:
    frame = pd.DataFrame({"user_id": ["a", "a", "b", "b", "b", "c", "d"],
                          "item_id": ["x", "y", "x", "y", "z", "x", "z"]})
    model = ItemKNN(neighbours=2, shrink=1.0, alpha=0.5).fit(Interactions.from_frame(frame))
    scores = model.score_users(np.arange(4)).numpy()
    np.testing.assert_allclose(scores, model.seen_.toarray() @ model.similarity_.toarray(), rtol=1e-6)
    sims = model.similar_items("x", k=5)         # row x of S: y (2 co-occurrences) then z
    assert sims.item_ids.tolist() == [["y", "z", None]]   # k is capped at the catalogue; x pads
