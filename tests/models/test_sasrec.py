"""SASRec: the shared contract; the next item of a periodic sequence ranks first for every loss and
both LayerNorm placements; order matters; save/load after early stopping is exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from contract import RecommenderContract
from sequence_checks import OPTIONS, assert_next_item_first, assert_save_load_same_scores, periodic_split

from towerrec.data.sequences import periodic_interactions
from towerrec.errors import NotFittedError, TowerrecError
from towerrec.models.sasrec import SASRec
from towerrec.split import leave_one_out

TINY = dict(embedding_dim=16, max_len=10, blocks=1, heads=1, inner_dim=32, dropout=0.1, attn_dropout=0.1,
            epochs=8, batch_size=64, learning_rate=1e-2, patience=8)


# the shared contract on its block data (random order within a user: order carries no signal there)
CONTRACT = dict(embedding_dim=16, max_len=8, blocks=1, heads=1, inner_dim=32, dropout=0.1, attn_dropout=0.1, epochs=30,
                batch_size=64, learning_rate=1e-2)


class TestSASRecContract(RecommenderContract):
    def make_model(self) -> SASRec:
        return SASRec(**CONTRACT)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny ops: threading only costs (2-core CI boxes)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def periodic():
    return periodic_split()


@pytest.fixture(scope="module")
def periodic_model(periodic):
    split, _ = periodic
    return SASRec(**TINY).fit(split.train, valid=split.valid, options=OPTIONS)


def test_next_item_ranks_first(periodic_model, periodic):
    split, cycle = periodic
    assert_next_item_first(periodic_model, split, cycle)
    assert periodic_model.best_epoch_ >= 0 and len(periodic_model.history_) <= TINY["epochs"]


@pytest.mark.parametrize("loss,extra", [("sampled_softmax", {"n_negatives": 8}),
                                        ("sampled_softmax", {"n_negatives": 8, "negative_sampler": "popularity"}),
                                        ("bce", {"n_negatives": 4}), ("gbce", {"n_negatives": 4})])
def test_every_loss_learns_the_cycle(periodic, loss, extra):
    split, cycle = periodic
    model = SASRec(**{**TINY, "epochs": 20, "patience": 20}, loss=loss, **extra)
    model.fit(split.train, valid=split.valid, options=OPTIONS)
    assert_next_item_first(model, split, cycle)


def test_pre_ln_variant_learns_too(periodic):
    split, cycle = periodic
    model = SASRec(**TINY, norm_first=True).fit(split.train, valid=split.valid, options=OPTIONS)
    assert_next_item_first(model, split, cycle)


def test_save_load_after_early_stopping(periodic_model, tmp_path):
    assert_save_load_same_scores(periodic_model, tmp_path)


def test_errors(periodic):
    split, _ = periodic
    with pytest.raises(NotFittedError):
        SASRec().recommend(["u1"])
    with pytest.raises(TowerrecError, match="unknown loss"):
        SASRec(**TINY, loss="hinge").fit(split.train, options=OPTIONS)


def test_seen_before_marks_the_items_each_position_has_read():
    module = SASRec(embedding_dim=8, blocks=1, heads=1, inner_dim=16, seen_bias=True)._build(5)
    inputs = torch.tensor([[0, 2, 3, 2], [1, 4, 5, 1]])
    where = torch.tensor([[False, True, True, True], [True, True, True, False]])
    seen = module.seen_before(inputs, where)
    expected = [[2], [2, 3], [2, 3], [1], [1, 4], [1, 4, 5]]       # tokens at positions <= t
    assert seen.tolist() == [[float(tok in row) for tok in range(6)] for row in expected]


def test_seen_bias_learns_that_items_do_not_repeat():
    inter = periodic_interactions(n_users=60, period=12, length=(6, 11), seed=1)   # a walk never wraps
    split = leave_one_out(inter)
    plain = SASRec(**TINY).fit(split.train, valid=split.valid, options=OPTIONS)
    model = SASRec(**TINY, seen_bias=True).fit(split.train, valid=split.valid, options=OPTIONS)
    assert model.module_.seen_logit.item() < 0 and plain.module_.seen_logit is None
    users = np.arange(inter.n_users)
    seen = torch.from_numpy(split.train.to_csr()[users].toarray() > 0)

    def seen_in_top3(m: SASRec) -> float:
        return seen.gather(1, m.score_users(users).topk(3).indices).float().mean().item()

    assert seen_in_top3(model) < seen_in_top3(plain)   # already-read items move down the list
