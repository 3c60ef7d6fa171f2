"""Checks shared by the sequence model tests (SASRec, GRU4Rec, NextItNet, HSTU): on a periodic log
the next item is known, so a working model must rank it first, and the order of a history must
change the answer."""
from __future__ import annotations

import numpy as np
import torch

from towerrec.data.sequences import periodic_interactions
from towerrec.evaluate import evaluate_scores
from towerrec.models.base import FitOptions, Recommender
from towerrec.split import Split, leave_one_out

OPTIONS = FitOptions(seed=0, progress=False)


def periodic_split(seed: int = 0) -> tuple[Split, list[str]]:
    """leave-one-out split of the periodic log, and the item ids in cycle order."""
    inter = periodic_interactions(n_users=60, period=12, seed=seed)
    split = leave_one_out(inter)
    # recover the cycle from the data: successor of each item
    order = inter.order()
    u, i = inter.user_idx[order], inter.item_idx[order]
    same_user = u[1:] == u[:-1]
    succ = dict(zip(i[:-1][same_user].tolist(), i[1:][same_user].tolist()))
    cycle = [0]
    while len(cycle) < inter.n_items:
        cycle.append(succ[cycle[-1]])
    return split, [str(inter.item_map.ids[j]) for j in cycle]


def assert_next_item_first(model: Recommender, split: Split, cycle: list[str], min_hit_rate: float = 1.0,
                           served_k: int = 1) -> None:
    """Known users: top-1 is the valid item (their next one) for a share >= `min_hit_rate` of them.
    Test pass with train + valid as the history: top-1 is the test item. New users: the cycle
    successor of the last history item is in the top `served_k`, and reversing the history
    changes the top-1 (an order-blind model cannot pass)."""
    valid = evaluate_scores(model.score_users, split.valid, k=(1,))
    assert valid.summary["HitRate@1"] >= min_hit_rate
    test = evaluate_scores(model.history_scorer(split.train.concat(split.valid)), split.test, k=(1,))
    assert test.summary["HitRate@1"] >= min_hit_rate
    history = cycle[3:7]
    recs = model.recommend(history=history, k=served_k, exclude_seen=False)
    assert cycle[7] in recs.item_ids[0] and recs.fallback == ["history"]
    reverse = model.recommend(history=history[::-1], k=1, exclude_seen=False)
    assert reverse.item_ids[0, 0] != recs.item_ids[0, 0]   # same items, other order: other answer
    assert model.similar_items([cycle[3]], k=1).item_ids[0, 0] == cycle[4]


def assert_save_load_same_scores(model: Recommender, tmp_path) -> None:
    path = model.save(tmp_path / model.name)
    loaded = type(model).load(path)
    users = np.arange(5)
    assert torch.allclose(model.score_users(users), loaded.score_users(users), atol=1e-6)
    assert loaded.config == model.config
    a = model.recommend(history=["i1", "i2"], k=3, exclude_seen=False)
    b = loaded.recommend(history=["i1", "i2"], k=3, exclude_seen=False)
    assert (a.item_idx == b.item_idx).all()
