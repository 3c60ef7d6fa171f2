"""Checks shared by the sequence model tests (SASRec, GRU4Rec, NextItNet, HSTU, BERT4Rec): on a
periodic log the next item is known, so a working model must rank it first, and the order of a
history must change the answer.

`SequenceModelTests` bundles what every `test_<model>.py` of a sequence model needs: the shared
contract (`contract.RecommenderContract`) on the block data, one thread for these tiny ops, the
periodic split, one model fitted on it, and the next-item check. A test file only sets the model
class and two configs:

    class TestGRU4Rec(SequenceModelTests):
        model_class = GRU4Rec
        contract_config = dict(embedding_dim=16, ...)   # the contract's block data
        periodic_config = dict(embedding_dim=16, ...)   # the periodic log

and adds its model's own tests as methods (they may use the `periodic` and `periodic_model` fixtures).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from contract import RecommenderContract

from towerrec.data.sequences import periodic_interactions
from towerrec.evaluation import evaluate_split
from towerrec.models.base import FitOptions, Recommender
from towerrec.splits import Split, leave_one_out

OPTIONS = FitOptions(seed=0, progress=False)


def periodic_split(seed: int = 0) -> tuple[Split, list[str]]:
    """leave-one-out split of the periodic log (half the users walk the cycle backwards), and the
    item ids in cycle order."""
    inter = periodic_interactions(n_users=80, period=12, seed=seed, backward_share=0.5)
    split = leave_one_out(inter)
    # recover the cycle from the forward walkers (user ids "u..."): successor of each item
    order = inter.order()
    u, i = inter.user_idx[order], inter.item_idx[order]
    forward = np.char.startswith(inter.user_map.ids[u].astype(str), "u")
    step = (u[1:] == u[:-1]) & forward[1:]
    succ = dict(zip(i[:-1][step].tolist(), i[1:][step].tolist()))
    cycle = [0]
    while len(cycle) < inter.n_items:
        cycle.append(succ[cycle[-1]])
    return split, [str(inter.item_map.ids[j]) for j in cycle]


def assert_next_item_first(model: Recommender, split: Split, cycle: list[str], min_hit_rate: float = 0.9,
                           served_k: int = 1, check_similar: bool = True) -> None:
    """Known users: top-1 is the valid item (their next one) for a share >= `min_hit_rate` of them
    (an order-blind model cannot tell the walk's direction: about 50%).
    Test pass with train + valid as the history: top-1 is the test item. New users: the next item
    of a forward walk and of the same items in reverse order (a backward walk) are in the top
    `served_k`: an order-blind model cannot pass. `similar_items` of an item: a cycle neighbour."""
    results = evaluate_split(model, split, k=(1,), exclude_seen=False)   # test: train + valid as the history
    assert results["valid"].summary["HitRate@1"] >= min_hit_rate
    assert results["test"].summary["HitRate@1"] >= min_hit_rate
    history = cycle[3:7]
    recs = model.recommend(history=history, k=served_k, exclude_seen=False)
    assert cycle[7] in recs.item_ids[0] and recs.fallback == ["history"]
    # the same items in the other order are a backward walk: its next item is the other neighbour
    reverse = model.recommend(history=history[::-1], k=served_k, exclude_seen=False)
    assert cycle[2] in reverse.item_ids[0]
    if check_similar:
        assert model.similar_items([cycle[3]], k=1).item_ids[0, 0] in (cycle[2], cycle[4])


def assert_save_load_same_scores(model: Recommender, tmp_path) -> None:
    path = model.save(tmp_path / model.name)
    loaded = type(model).load(path)
    users = np.arange(5)
    assert torch.allclose(model.score_users(users), loaded.score_users(users), atol=1e-6)
    assert loaded.config == model.config
    a = model.recommend(history=["i1", "i2"], k=3, exclude_seen=False)
    b = loaded.recommend(history=["i1", "i2"], k=3, exclude_seen=False)
    assert (a.item_idx == b.item_idx).all()


class SequenceModelTests(RecommenderContract):
    """The contract + the periodic next-item check for one sequence model (see the module docstring)."""
    untouched_top1_share = 0.9   # an update fine-tunes shared weights: a borderline user may move

    model_class: ClassVar[type[Recommender]]
    contract_config: ClassVar[dict[str, Any]] = {}
    periodic_config: ClassVar[dict[str, Any]] = {}
    next_item_checks: ClassVar[dict[str, Any]] = {}   # keyword arguments of assert_next_item_first

    def make_model(self) -> Recommender:
        return self.model_class(**self.contract_config)

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def one_thread(cls):
        before = torch.get_num_threads()
        torch.set_num_threads(1)   # tiny ops: threading only costs (2-core CI boxes)
        yield
        torch.set_num_threads(before)

    @pytest.fixture(scope="class")
    @classmethod
    def periodic(cls) -> tuple[Split, list[str]]:
        return periodic_split()

    @pytest.fixture(scope="class")
    @classmethod
    def periodic_model(cls, periodic) -> Recommender:
        split, _ = periodic
        # all epochs, no valid split: valid HitRate@1 saturates early
        return cls.model_class(**cls.periodic_config).fit(split.train, options=OPTIONS)

    def test_next_item_ranks_first(self, periodic_model, periodic) -> None:
        split, cycle = periodic
        assert_next_item_first(periodic_model, split, cycle, **self.next_item_checks)
