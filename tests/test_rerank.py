"""Re-rankers: hand-worked greedy steps, weight 0 gives the model's order back, a naive DPP agrees,
and a re-ranked model is an ordinary entry for `evaluate`."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from towerrec.beyond import ItemSpace
from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError
from towerrec.evaluation import evaluate_split
from towerrec.models import EASE
from towerrec.models.base import FitOptions
from towerrec.rerank import DPP_EPS, Reranked, RerankConfig, Reranker, rerank
from towerrec.splits import random_split

# three items: 0 and 1 share their one category, 2 has another
CATS = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32))
CANDS = np.array([[0, 1, 2]])
SCORES = np.array([[3.0, 2.8, 1.0]])          # rel after min-max: 1, 0.9, 0


def run(method: str, weight: float, history=None, counts=(5, 5, 5)) -> list[int]:
    r = Reranker(RerankConfig(method, weight), item_counts=np.array(counts), categories=CATS)
    idx, scores = r.rerank(CANDS, SCORES, 3, history)
    assert np.all(np.isin(scores[0], SCORES[0].astype(np.float32)))     # the model's scores travel with the items
    return idx[0].tolist()


def test_weight_zero_keeps_the_model_order_for_every_method():
    history = sp.csr_matrix(np.array([[0, 0, 1]], dtype=np.float32))
    for method in ("mmr", "dpp", "calibrated", "popularity"):
        assert run(method, 0.0, history) == [0, 1, 2], method


def test_mmr_hand_worked():
    # step 2 at lambda 0.5: item 1 scores 0.5*0.9 - 0.5*1 = -0.05, item 2 scores 0.5*0 - 0.5*0 = 0
    assert run("mmr", 0.5) == [0, 2, 1]
    # at lambda 0.04: item 1 scores 0.96*0.9 - 0.04 = 0.824 > 0: relevance wins
    assert run("mmr", 0.04) == [0, 1, 2]


def test_dpp_hand_worked():
    # after item 0: d^2(1) = (1 + eps) - 1 / (1 + eps); d^2(2) = 1 + eps
    d1 = (1 + DPP_EPS) - 1 / (1 + DPP_EPS)
    gain1, gain2 = 0.5 * 0.9 + 0.5 * math.log(d1), 0.5 * 0 + 0.5 * math.log(1 + DPP_EPS)
    assert gain2 > gain1
    assert run("dpp", 0.5) == [0, 2, 1]


def naive_dpp(rel: np.ndarray, kernel: np.ndarray, lam: float, k: int) -> list[int]:
    """Greedy on log det of the chosen kernel, computed from scratch each step."""
    chosen: list[int] = []
    for _ in range(k):
        base = np.linalg.slogdet(kernel[np.ix_(chosen, chosen)])[1] if chosen else 0.0
        gains = [(1 - lam) * rel[i] + lam * (np.linalg.slogdet(kernel[np.ix_(chosen + [i], chosen + [i])])[1] - base)
                 if i not in chosen else -np.inf for i in range(len(rel))]
        chosen.append(int(np.argmax(gains)))
    return chosen


def test_fast_greedy_dpp_agrees_with_determinants():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 5))
    scores = rng.normal(size=(4, 30))
    cands = np.tile(np.arange(30), (4, 1))
    r = Reranker(RerankConfig("dpp", 0.6, space="model"), item_counts=np.ones(30), model_space=ItemSpace(vectors))
    got, _ = r.rerank(cands, scores, 8)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    kernel = unit @ unit.T + DPP_EPS * np.eye(30)
    for u in range(4):
        rel = (scores[u] - scores[u].min()) / (scores[u].max() - scores[u].min())
        assert got[u].tolist() == naive_dpp(rel, kernel, 0.6, 8)


def test_calibrated_pulls_the_list_towards_the_history_mix():
    history = sp.csr_matrix(np.array([[0, 0, 1]], dtype=np.float32))   # the user watched category B only
    # lambda 0.5, step 1: KL(p || q~) is ~ log(1/0.01) for an A item and 0 for item 2
    assert run("calibrated", 0.5, history) == [2, 0, 1]
    assert run("calibrated", 0.5, None) == [0, 1, 2]      # no profile: relevance only


def test_popularity_penalty():
    # n = 100, 1, 10: penalty log(1+n)/log(101) = 1, 0.150, 0.520; at lambda 0.5: 0, 0.375, -0.26
    assert run("popularity", 0.5, counts=(100, 1, 10)) == [1, 0, 2]
    assert run("popularity", 1.0, counts=(100, 1, 10)) == [1, 2, 0]


def test_padding_and_short_candidate_lists():
    r = Reranker(RerankConfig("mmr", 0.5), item_counts=np.ones(3), categories=CATS)
    idx, scores = r.rerank(np.array([[2, 0, -1]]), np.array([[1.0, 0.5, np.nan]]), 4)
    assert idx.tolist() == [[2, 0, -1, -1]] and np.isnan(scores[0, 2:]).all()


def test_bad_configs_are_one_line_errors():
    for bad in (RerankConfig("xmr"), RerankConfig(weight=1.5), RerankConfig(candidates=0), RerankConfig(space="x")):
        with pytest.raises(TowerrecError):
            bad.validate()
    with pytest.raises(TowerrecError, match="categories"):
        Reranker(RerankConfig("calibrated"), item_counts=np.ones(3))


@pytest.fixture(scope="module")
def genre_data():
    rng = np.random.default_rng(1)
    rows = []
    for u in range(80):
        own = [i for i in range(40) if i % 4 == u % 4]
        rows += [(f"u{u}", f"i{i}") for i in rng.choice(own, 7, replace=False)]
        rows += [(f"u{u}", f"i{i}") for i in rng.choice(40, 2, replace=False)]
    inter = Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]).drop_duplicates())
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(40)], "genres": [f"g{i % 4}" for i in range(40)]})
    return random_split(inter, seed=0), FeatureTable.from_frame(items, inter.item_map, id_col="item_id")


def test_a_reranked_model_is_an_ordinary_entry(genre_data, tmp_path):
    split, items = genre_data
    base = evaluate_split(EASE(l2=5.0).fit(split.train, options=FitOptions(seed=0)), split, k=5, parts=("test",),
                          item_features=items)["test"]
    same = Reranked(EASE(l2=5.0), method="mmr", weight=0.0).fit(split.train, item_features=items,
                                                                options=FitOptions(seed=0))
    zero = evaluate_split(same, split, k=5, parts=("test",), item_features=items)["test"]
    assert np.array_equal(zero.top_items, base.top_items)
    diverse = Reranked(EASE(l2=5.0), method="mmr", weight=0.7).fit(split.train, item_features=items,
                                                                   options=FitOptions(seed=0))
    result = evaluate_split(diverse, split, k=5, parts=("test",), item_features=items)["test"]
    assert result.summary["ILD@5"] > base.summary["ILD@5"] + 0.1
    assert diverse.name == "ease+mmr@0.7"
    seen = split.train.to_csr() + split.valid.to_csr()
    assert not seen[result.user_idx[:, None], np.maximum(result.top_items, 0)].toarray().any()   # exclusions kept
    recs = diverse.recommend(history=["i0", "i4"], k=5)
    assert len(set(recs.item_ids[0])) == 5 and not {"i0", "i4"} & set(recs.item_ids[0])
    assert (diverse.save(tmp_path / "m") / "model.json").exists()
    assert rerank(EASE(), "dpp", weight=0.2).config == RerankConfig("dpp", 0.2)
