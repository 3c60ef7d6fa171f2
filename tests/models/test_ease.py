"""EASE: the contract plus the closed form against a direct numpy solve."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from contract import RecommenderContract

from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError
from towerrec.models.ease import EASE, ease_weights


class TestEASEContract(RecommenderContract):
    history_reproduces_users = True
    update_equals_refit = True   # incremental X^T X, then the same closed-form solve
    history_atol = 1e-6

    def make_model(self) -> EASE:
        return EASE(l2=1.0)


def test_matches_numpy_closed_form_and_constrained_least_squares() -> None:
    rng = np.random.default_rng(3)
    x = (rng.random((30, 7)) < 0.4).astype(np.float64)
    lam = 2.5
    b = ease_weights(sp.csr_matrix(x), lam).numpy()
    p = np.linalg.inv(x.T @ x + lam * np.eye(7))
    expected = np.eye(7) - p / np.diag(p)[None, :]          # Steck's B = I - P diagMat(1 / diag(P))
    np.testing.assert_allclose(b, expected, atol=1e-10)
    assert np.all(np.diag(b) == 0)
    # column j is the ridge regression of x_j on the other columns (the constraint diag(B) = 0)
    j = 4
    others = [c for c in range(7) if c != j]
    a = x[:, others]
    ridge = np.linalg.solve(a.T @ a + lam * np.eye(6), a.T @ x[:, j])
    np.testing.assert_allclose(b[others, j], ridge, atol=1e-10)


def test_scores_are_history_times_weights() -> None:
    frame = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["x", "y", "y", "z", "x"]})
    model = EASE(l2=0.5).fit(Interactions.from_frame(frame))
    seen = model.seen_.toarray()
    np.testing.assert_allclose(model.score_users(np.arange(3)).numpy(), seen @ model.weights_.numpy(), rtol=1e-6)
    # similar_items(q) ranks by B[q, :]
    q = model.item_map_.index(["y"])[0]
    sims = model.similar_items(["y"], k=2)
    row = model.weights_[q].numpy().copy()
    row[q] = -np.inf
    assert sims.item_idx[0].tolist() == np.argsort(-row, kind="stable")[:2].tolist()


def test_rejects_non_positive_l2() -> None:
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    with pytest.raises(TowerrecError, match="l2 > 0"):
        EASE(l2=0.0).fit(Interactions.from_frame(frame))
