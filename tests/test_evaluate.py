"""Full-ranking evaluation: exclusion, batch invariance, oracle scores, and the numbers that must not
flatter a model (ties, cold users, non-finite scores, nothing to evaluate)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError
from towerrec.evaluation import evaluate, evaluate_scores, evaluate_split
from towerrec.models.base import FitOptions, Recommender
from towerrec.ranking import NonFiniteScores, TieOrder
from towerrec.recommendations import Recommendations
from towerrec.splits import random_split, temporal_split


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


def _exclusion(*parts: Interactions):
    total = parts[0].to_csr()
    for p in parts[1:]:
        total = total + p.to_csr()
    return total.tocsr()


@dataclass(frozen=True)
class _NoConfig:
    value: float = 0.0


class ConstantModel(Recommender):
    """Scores every item alike (or `value` everywhere, NaN included): knows nothing."""

    name = "constant"
    Config = _NoConfig

    def _fit(self, interactions, **kwargs) -> None:
        pass

    def _score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        return torch.full((len(user_idx), self.n_items), self.config.value)


def test_oracle_scores_are_perfect_and_train_items_are_excluded(split):
    # train items score highest, then the test targets: with exclusion the targets are on top
    scores = dense(split.train) * 10 + dense(split.valid) * 5 + dense(split.test)
    ties = TieOrder.seeded(split.test.n_items)
    res = evaluate_scores(lambda u: scores[torch.from_numpy(u)].clone(), split.test, ties=ties,
                          exclude=_exclusion(split.train, split.valid), k=(2,))
    assert res.summary["Precision@2"] == pytest.approx(1.0)
    assert res.summary["NDCG@2"] == pytest.approx(1.0)
    excluded = dense(split.train) + dense(split.valid)
    for row, u in enumerate(res.user_idx):
        assert excluded[u, res.top_items[row]].sum() == 0
    no_ex = evaluate_scores(lambda u: scores[torch.from_numpy(u)].clone(), split.test, ties=ties, k=(2,))
    assert no_ex.summary["Precision@2"] < 0.5  # without exclusion the train items take the slots


def test_results_do_not_depend_on_batch_size(split):
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(split.test.n_users, split.test.n_items, generator=gen)
    fn = lambda u: scores[torch.from_numpy(u)].clone()  # noqa: E731
    ties = TieOrder.seeded(split.test.n_items)
    a = evaluate_scores(fn, split.test, ties=ties, exclude=split.train.to_csr(), k=(5, 10), batch_size=7)
    b = evaluate_scores(fn, split.test, ties=ties, exclude=split.train.to_csr(), k=(5, 10), batch_size=1000)
    assert a.summary == b.summary
    assert np.array_equal(a.top_items, b.top_items)
    pd.testing.assert_frame_equal(a.per_user, b.per_user)


def test_per_user_rows_and_recs_frame(split):
    scores = torch.rand(split.test.n_users, split.test.n_items)
    res = evaluate_scores(lambda u: scores[torch.from_numpy(u)].clone(), split.test,
                          ties=TieOrder.seeded(split.test.n_items), k=(3,))
    assert len(res.per_user) == len(split.test.active_users()) == res.info["users_evaluated"]
    recs = res.recs_frame(split.test.user_map, split.test.item_map)
    assert recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3]).all()
    assert res.summary["NDCG@3"] == pytest.approx(res.per_user["NDCG@3"].mean())


def test_evaluate_recommendations_equals_evaluate_model(split):
    """`evaluate(recs, truth)` on lists made elsewhere gives the model path's numbers."""
    model = ConstantModel().fit(split.train, options=FitOptions(seed=split.seed))
    direct = evaluate(model, split, k=(5,))
    recs = model.rank_users(split.test.active_users(), 5, exclude=_exclusion(split.train, split.valid),
                            ties=TieOrder.seeded(split.train.n_items, split.seed))
    assert isinstance(recs, Recommendations)
    from_lists = evaluate(recs, split.test, k=(5,))
    assert from_lists.summary["NDCG@5"] == direct.summary["NDCG@5"]
    assert np.array_equal(from_lists.top_items, direct.top_items)


def test_a_constant_scorer_gets_no_popularity_for_free(ml100k_dir):
    """Item index follows first appearance in the file (correlated with popularity): with ties
    broken by index a model that knows nothing scored 3x random. With the seeded tie order it
    scores like random, and every list is reported as cut inside a tie."""
    from towerrec.data.registry import load_dataset

    inter = load_dataset(ml100k_dir).interactions
    split = random_split(inter, seed=0)
    model = ConstantModel().fit(split.train, options=FitOptions(seed=0))
    result = evaluate(model, split, k=(10,))
    assert result.summary["NDCG@10"] < 0.015          # index-order ties gave 0.0270, random scores 0.0087
    assert result.summary["Tied@10"] == 1.0
    counts = split.train.item_counts()
    top10 = result.top_items[0]
    assert np.median(counts[top10]) < np.percentile(counts, 90)   # not the most popular items


def test_cold_users_are_counted_reported_and_get_a_named_fallback(ml100k_dir):
    from towerrec.data.registry import load_dataset
    from towerrec.models.ease import EASE

    split = temporal_split(load_dataset(ml100k_dir).interactions, seed=0)
    model = EASE().fit(split.train, options=FitOptions(seed=0))
    result = evaluate(model, split, k=(10,))
    users = result.info["users"]
    assert users["cold"] > 0 and users["warm"] > 0
    assert users["cold"] + users["warm"] == result.info["users_evaluated"]
    assert result.info["fallback"] == {"popularity": users["cold"]}
    assert set(result.groups) == {"warm", "cold"}
    n = result.info["users_evaluated"]
    blended = (result.groups["warm"]["NDCG@10"] * users["warm"] + result.groups["cold"]["NDCG@10"] * users["cold"]) / n
    assert blended == pytest.approx(result.summary["NDCG@10"])
    assert set(result.per_user.loc[result.per_user["group"] == "cold", "fallback"]) == {"popularity"}


def test_non_finite_scores_are_an_error_naming_the_model(split):
    model = ConstantModel(value=float("nan")).fit(split.train)
    with pytest.raises(NonFiniteScores, match="model 'constant' produced"):
        evaluate(model, split)


def test_no_evaluable_users_is_an_error(split):
    model = ConstantModel().fit(split.train)
    empty = split.test.subset(np.zeros(len(split.test), dtype=bool))
    with pytest.raises(TowerrecError, match="nothing to evaluate"):
        evaluate(model, empty)


def test_evaluate_split_gives_both_parts_with_the_documented_exclusions(split):
    model = ConstantModel().fit(split.train)
    out = evaluate_split(model, split, k=(10,))
    assert set(out) == {"valid", "test"}
    assert out["valid"].info["exclude"] == [len(split.train)]
    assert out["test"].info["exclude"] == [len(split.train), len(split.valid)]
