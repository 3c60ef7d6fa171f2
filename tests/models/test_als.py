"""ALS: the contract plus the exact solves, the loss and a low-rank reconstruction."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from contract import RecommenderContract

import towerrec.models.als as als
from towerrec.data.delta import admit
from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError
from towerrec.models.als import ALS
from towerrec.models.base import FitOptions


class TestALSContract(RecommenderContract):
    history_reproduces_users = True   # the last half-step solves users for the final items
    history_atol = 1e-4

    def make_model(self) -> ALS:
        return ALS(factors=8, regularization=0.1, alpha=5.0, iterations=8)


def _random_inter(n_users: int = 40, n_items: int = 30, density: float = 0.2, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    frame = pd.DataFrame({"user_id": [f"u{x}" for x in u], "item_id": [f"i{x}" for x in i],
                          "rating": rng.integers(1, 6, len(u)).astype(float)})
    return Interactions.from_frame(frame, rating_col="rating")


@pytest.mark.parametrize("config", [dict(), dict(confidence="log", alpha=3.0, epsilon=0.5, use_weights=True),
                                    dict(reg_exponent=1.0)])
def test_half_step_is_the_exact_weighted_ridge_solution(monkeypatch, config) -> None:
    monkeypatch.setattr(als, "_BLOCK_ELEMENTS", 2000)   # many small padded blocks
    inter = _random_inter()
    model = ALS(factors=6, regularization=0.7, **config)
    conf = model._confidence(inter.to_csr(binary=not model.config.use_weights))
    reg = model._reg(conf, als._mean_total(conf))
    y = torch.randn(inter.n_items, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64).float()
    got = als._Blocks(conf, reg, 6, torch.device("cpu")).solve(y).double().numpy()
    yn, c = y.double().numpy(), conf.toarray().astype(np.float64) + 1.0   # dense confidence, 1 off the log
    p = inter.to_csr().toarray() > 0
    for u in range(inter.n_users):                    # the textbook formula, one user at a time
        a = yn.T @ (c[u][:, None] * yn) + float(reg[u]) * np.eye(6)
        np.testing.assert_allclose(got[u], np.linalg.solve(a, yn.T @ (c[u] * p[u])), rtol=2e-3, atol=1e-5)


def test_loss_never_increases() -> None:
    model = ALS(factors=5, regularization=0.5, alpha=4.0, iterations=6).fit(_random_inter(), options=FitOptions(seed=3))
    losses = np.array(model.loss_history_)
    assert len(losses) == 6
    assert (np.diff(losses) <= 1e-4 * losses[:-1]).all(), losses
    assert losses[-1] < losses[0]


def test_reconstructs_a_low_rank_matrix() -> None:
    # 3 disjoint blocks of users x items, fully observed inside: rank 3, p = block indicator
    blocks = np.repeat(np.arange(3), 8)
    dense = (blocks[:, None] == np.repeat(np.arange(3), 5)[None, :]).astype(float)   # [24 users, 15 items]
    u, i = np.nonzero(dense)
    inter = Interactions.from_frame(pd.DataFrame({"user_id": [f"u{x}" for x in u], "item_id": [f"i{x}" for x in i]}))
    model = ALS(factors=3, regularization=0.01, alpha=20.0, iterations=15).fit(inter)
    scores = model.score_users(np.arange(inter.n_users)).numpy()
    truth = dense[np.ix_([int(x[1:]) for x in inter.user_map.ids], [int(x[1:]) for x in inter.item_map.ids])]
    assert np.abs(scores - truth).max() < 0.05


def test_empty_history_folds_in_to_a_zero_factor() -> None:
    model = ALS(factors=4, regularization=0.1, alpha=10.0).fit(_random_inter(seed=2))
    factors = model.fold_in(sp.csr_matrix((1, model.n_items), dtype=np.float32))
    assert torch.equal(factors, torch.zeros_like(factors))     # an empty history gets a zero factor


def test_unknown_confidence_is_an_error() -> None:
    with pytest.raises(TowerrecError, match="confidence"):
        ALS(confidence="sqrt")


def test_more_update_passes_and_sweeps_move_the_rows_closer_to_their_joint_optimum() -> None:
    """After an update the touched users are the exact solve for the final items (any number of
    passes and sweeps), and more alternations over the touched rows, or conjugate-gradient sweeps over
    every row, never raise the loss of the whole problem."""
    full = _random_inter(n_users=60, seed=1)
    before = (full.user_idx < 40) & (full.item_idx < 24)
    old = Interactions.from_frame(full.subset(before).to_frame())   # its maps: only the ids it holds
    new = full.subset(~before)                                       # new users, and new items for old users
    losses = []
    for passes, sweeps in ((1, 0), (4, 0), (4, 3)):
        model = ALS(factors=6, regularization=0.5, alpha=3.0, iterations=6, update_passes=passes,
                    update_sweeps=sweeps)
        model.fit(old, options=FitOptions(seed=0, progress=False)).update(new.to_frame())
        seen = model.seen_
        torch.testing.assert_close(model.fold_in(seen[40:]), model.user_factors_[40:], atol=1e-4, rtol=1e-4)
        conf = model._confidence(seen)
        losses.append(als._loss(conf, model.user_factors_, model.item_factors_,
                                model._reg(conf, model.mean_conf_), model._reg(conf.T.tocsr(), als._mean_total(conf.T.tocsr()))))
    assert losses[1] <= losses[0] + 1e-6 and losses[2] < losses[1] - 1e-6
    assert model.last_update_sweeps_ > 0 and model.lineage_[-1]["sweeps"] == model.last_update_sweeps_
    with pytest.raises(TowerrecError, match="update_passes"):    # at construction, before any fit
        ALS(update_passes=0)
    with pytest.raises(TowerrecError, match="update_sweeps"):
        ALS(update_sweeps=-1)
    with pytest.raises(TowerrecError, match="update_cg_steps"):
        ALS(update_cg_steps=0)


def test_the_sweeps_follow_the_share_of_rows_on_new_items() -> None:
    full = _random_inter(n_users=60, seed=1)
    model = ALS(factors=4, iterations=2, update_sweeps=10).fit(full.subset(full.user_idx < 40),
                                                              options=FitOptions(seed=0, progress=False))
    known = full.subset(full.user_idx >= 40).to_frame()
    assert model.update_sweep_count(admit(model.user_map_, model.item_map_, known)) == 0   # no new item: no sweep
    fresh = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "item_id": ["i1", "new1", "new2", "new1"]})
    assert model.update_sweep_count(admit(model.user_map_, model.item_map_, fresh)) == 8   # ceil(10 x 3/4)
    assert ALS(update_sweeps=0).update_sweep_count(admit(model.user_map_, model.item_map_, fresh)) == 0


@pytest.mark.parametrize("config", [dict(), dict(confidence="log", alpha=3.0, epsilon=0.5, use_weights=True)])
def test_conjugate_gradient_reaches_the_exact_solve(config) -> None:
    """Enough conjugate-gradient steps (at most `factors` in exact arithmetic) give each row's exact
    least-squares solve, from any start; one step already lowers every row's residual."""
    inter = _random_inter(seed=3)
    model = ALS(factors=6, regularization=0.7, iterations=3, **config)
    model.fit(inter, options=FitOptions(seed=0, progress=False))
    conf = model._confidence(inter.to_csr(binary=not model.config.use_weights))
    reg = model._reg(conf, model.mean_conf_)
    items = model.item_factors_
    exact = als._Blocks(conf, reg, 6, torch.device("cpu")).solve(items)
    start = torch.randn(exact.shape, generator=torch.Generator().manual_seed(0))
    solved = als._NormalEquations(conf, reg).conjugate_gradient(start, items, steps=12)
    torch.testing.assert_close(solved, exact, atol=1e-4, rtol=1e-4)
    one = als._NormalEquations(conf, reg).conjugate_gradient(start, items, steps=1)
    assert bool(((one - exact).norm(dim=1) < (start - exact).norm(dim=1)).all())
