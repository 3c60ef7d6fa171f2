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
    valid = evaluate_scores(model.score_users, split.valid, k=(1,))
    assert valid.summary["HitRate@1"] >= min_hit_rate
    test = evaluate_scores(model.history_scorer(split.train.concat(split.valid)), split.test, k=(1,))
    assert test.summary["HitRate@1"] >= min_hit_rate
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
