"""Batched full-ranking evaluation: exclusion, batch invariance, oracle scores, sampled labels."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from towerrec.data.interactions import Interactions
from towerrec.evaluate import evaluate_scores
from towerrec.split import random_split


@pytest.fixture
def split():
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 80
    frame = pd.DataFrame({
        "user_id": np.repeat([f"u{u}" for u in range(n_users)], 20),
        "item_id": [f"i{i}" for u in range(n_users) for i in rng.choice(n_items, 20, replace=False)],
    })
    return random_split(Interactions.from_frame(frame), seed=0)


def dense(inter: Interactions) -> torch.Tensor:
    return torch.from_numpy(inter.to_csr().toarray())


def test_oracle_scores_are_perfect_and_train_items_are_excluded(split):
    # train items score highest, then the test targets: with exclusion the targets are on top
    scores = dense(split.train) * 10 + dense(split.valid) * 5 + dense(split.test)
    res = evaluate_scores(lambda u: scores[torch.from_numpy(u)].clone(), split.test,
                          exclude=[split.train, split.valid], k=(2,))
    assert res.summary["Precision@2"] == pytest.approx(1.0)
    assert res.summary["NDCG@2"] == pytest.approx(1.0)
    excluded = dense(split.train) + dense(split.valid)
    for row, u in enumerate(res.user_idx):
        assert excluded[u, res.top_items[row]].sum() == 0
    no_ex = evaluate_scores(lambda u: scores[torch.from_numpy(u)].clone(), split.test, k=(2,))
    assert no_ex.summary["Precision@2"] < 0.5  # without exclusion the train items take the slots


def test_results_do_not_depend_on_batch_size(split):
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(split.test.n_users, split.test.n_items, generator=gen)
    fn = lambda u: scores[torch.from_numpy(u)].clone()  # noqa: E731
    a = evaluate_scores(fn, split.test, exclude=[split.train], k=(5, 10), batch_size=7)
    b = evaluate_scores(fn, split.test, exclude=[split.train], k=(5, 10), batch_size=1000)
    assert a.summary == b.summary
    assert np.array_equal(a.top_items, b.top_items)
    pd.testing.assert_frame_equal(a.per_user, b.per_user)


def test_per_user_rows_and_recs_frame(split):
    scores = torch.rand(split.test.n_users, split.test.n_items)
    res = evaluate_scores(lambda u: scores[torch.from_numpy(u)].clone(), split.test, k=(3,))
    assert len(res.per_user) == len(split.test.active_users()) == res.info["users_evaluated"]
    recs = res.recs_frame(split.test.user_map, split.test.item_map)
    assert recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3]).all()
    assert res.summary["NDCG@3"] == pytest.approx(res.per_user["NDCG@3"].mean())
