"""Beyond-accuracy metrics: hand-computed cases for every formula of docs/evaluation.md, a naive
re-implementation for parity, and the figures `evaluate` reports (popularity has zero serendipity)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from towerrec.beyond import (
    BeyondContext,
    ItemSpace,
    ItemStats,
    average_popularity,
    category_matrix,
    gini,
    group_gaps,
    head_items,
    intra_list_diversity,
    miscalibration,
    long_tail_share,
    novelty,
    serendipity,
    user_groups,
)
from towerrec.data.features import FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.evaluation import evaluate
from towerrec.models import EASE, Popularity
from towerrec.models.base import FitOptions
from towerrec.splits import random_split

S = 1 / math.sqrt(2)


def test_ild_is_the_mean_pairwise_cosine_distance_and_ignores_padding():
    space = ItemSpace(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]))     # rows need not be unit length
    lists = np.array([[0, 1, 2], [0, -1, 1], [0, -1, -1]])
    ild = intra_list_diversity(lists, space, 3)
    # pairs (0,1): 1 - 0; (0,2) and (1,2): 1 - 1/sqrt(2)
    assert ild[0] == pytest.approx((1 + 2 * (1 - S)) / 3)
    assert ild[1] == pytest.approx(1.0)          # only the pair (0, 1)
    assert np.isnan(ild[2])                      # one item: no pair
    assert intra_list_diversity(lists, space, 2)[0] == pytest.approx(1.0)   # the cut-off applies first


def test_ild_over_categories_and_over_a_sparse_space():
    ids = IdMap(["a", "b", "c"], name="item")
    table = FeatureTable.from_frame(pd.DataFrame({"item_id": ["a", "b", "c"], "genres": ["X", "X|Y", "Z"]}), ids,
                                    id_col="item_id")
    cats, column, names = category_matrix(table)
    assert column == "genres" and names == ["X", "Y", "Z"]
    assert cats.toarray().tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    ild = intra_list_diversity(np.array([[0, 1, 2]]), ItemSpace(cats), 3)
    assert ild[0] == pytest.approx(((1 - S) + 1 + 1) / 3)
    dense = intra_list_diversity(np.array([[0, 1, 2]]), ItemSpace(cats.toarray()), 3)
    assert dense[0] == pytest.approx(ild[0])


def test_wide_dense_spaces_take_each_lists_own_gram_and_agree_with_the_pairs(monkeypatch):
    """Many distinct listed items in a wide dense space (EASE's rows): each list's K x K Gram, not
    a gather of both rows of every pair; the same cosines either way, padding pairs 0."""
    from towerrec import beyond

    rng = np.random.default_rng(0)
    space = ItemSpace(rng.normal(size=(40, 30)))
    lists = rng.permutation(np.tile(np.arange(40), 3))[:60].reshape(12, 5)
    lists[3, 2:] = -1
    reference, valid = beyond.list_pair_similarity(lists, space)          # one Gram of the 40 items
    monkeypatch.setattr(beyond, "_BLOCK", 64)                            # 40^2 > 64: too many for one Gram
    calls = []
    monkeypatch.setattr(ItemSpace, "pairs", lambda *a: calls.append(1))
    sim, valid_again = beyond.list_pair_similarity(lists, space)
    assert not calls and (valid == valid_again).all() and not valid.all()
    np.testing.assert_allclose(sim, reference, atol=1e-6)
    assert (sim[~valid] == 0).all()


def test_novelty_is_mean_self_information():
    # 4 training users; items held by 4, 2, 1 and 0 of them: -log2 p = 0, 1, 2 and 2 (p floored at 1/4)
    item_users = np.array([4, 2, 1, 0])
    values = novelty(np.array([[0, 1, 2], [3, -1, -1]]), item_users, 4, 3)
    assert values.tolist() == pytest.approx([1.0, 2.0])


def test_serendipity_counts_hits_the_popularity_list_would_not_show():
    lists = np.array([[0, 1, 2], [5, 6, 7]])
    hits = np.array([[True, True, False], [True, False, False]])
    primitive = np.array([[0, 5, 6], [5, 6, 7]])
    assert serendipity(lists, hits, primitive, 3).tolist() == pytest.approx([1 / 3, 0.0])
    assert serendipity(lists, hits, primitive, 1).tolist() == pytest.approx([0.0, 0.0])


def test_average_popularity_and_long_tail_share():
    counts = np.array([10, 5, 1, 0, 7])
    assert average_popularity(np.array([[0, 2, -1]]), counts, 3).tolist() == [5.5]
    head = head_items(counts, 0.2)               # round(0.2 * 5) = 1 item: the most popular
    assert head.tolist() == [True, False, False, False, False]
    assert long_tail_share(np.array([[0, 1], [2, 4]]), ~head, 2).tolist() == [0.5, 1.0]


def test_miscalibration_is_steck_kl_with_mixing():
    cats = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32))   # items: {A}, {A, B}, {B}
    history = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float32))
    lists = np.array([[2, -1], [0, 1], [0, 1]])
    got = miscalibration(lists, history, cats, 2)
    # user 0: p = (A 0.75, B 0.25); the list {B}: q = (0, 1); q~ = 0.99 q + 0.01 p = (0.0075, 0.9925)
    expected = 0.75 * math.log(0.75 / 0.0075) + 0.25 * math.log(0.25 / 0.9925)
    assert got[0] == pytest.approx(expected)
    assert got[1] == pytest.approx(0.0)         # the same items as the history: perfectly calibrated
    assert np.isnan(got[2])                     # no history: undefined


def test_gini_of_exposure():
    assert gini(np.array([[0, 1], [2, 3]]), 4, 2) == pytest.approx(0.0)        # every item once
    assert gini(np.array([[0, 1], [0, 1]]), 4, 2) == pytest.approx(8 / 12)     # sorted e = 0,0,2,2: (1*2 + 3*2) / (3*4)
    assert gini(np.array([[0], [0]]), 4, 1) == pytest.approx(1.0)              # one item takes every slot
    assert gini(np.array([[0, -1], [0, -1]]), 4, 2) == pytest.approx(1.0)      # padding is no exposure


def test_group_gaps_and_user_groups():
    values = {"NDCG@10": np.array([1.0, 0.0, 0.5, 0.5]), "ILD@10": np.array([np.nan, 0.2, 0.4, 0.9])}
    out = group_gaps(values, np.array(["M", "F", "M", None], dtype=object))
    assert out["groups"]["M"] == {"users": 2, "NDCG@10": 0.75, "ILD@10": 0.4}
    assert out["groups"]["F"]["NDCG@10"] == 0.0
    assert out["gap"]["NDCG@10"] == pytest.approx(0.75)
    assert out["gap"]["ILD@10"] == pytest.approx(0.2)
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(12)], "gender": list("MF" * 6),
                          "age": [18, 19, 20, 25, 26, 30, 35, 38, 40, 60, 65, 70], "job": [f"j{i}" for i in range(12)]})
    table = FeatureTable.from_frame(users, IdMap(users.user_id.to_numpy(), name="user"), id_col="user_id",
                                    kinds={"job": "categorical"})
    groups = user_groups(table)
    assert set(groups) == {"gender", "age"}       # 12 job values > MAX_GROUPS: used only when asked for
    assert groups["gender"].tolist() == list("MF" * 6)
    assert groups["age"].tolist() == ["18-20"] * 3 + ["25-30"] * 3 + ["35-40"] * 3 + ["60-70"] * 3
    assert set(user_groups(table, ["job"])) == {"job"}


@pytest.fixture(scope="module")
def genre_split():
    """100 users in 4 taste blocks over 40 items with genres; a popular head of 4 items."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(100):
        own = [i for i in range(40) if i % 4 == u % 4]
        rows += [(f"u{u}", f"i{i}") for i in rng.choice(own, 6, replace=False)]
        rows += [(f"u{u}", f"i{i}") for i in rng.choice(4, 2, replace=False)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"]).drop_duplicates()
    inter = Interactions.from_frame(frame)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(40)],
                          "genres": [["A", "B", "C", "D"][i % 4] + ("|E" if i % 3 == 0 else "") for i in range(40)]})
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(100)], "gender": ["M", "F"] * 50,
                          "age": np.arange(100) % 50 + 18})
    split = random_split(inter, seed=0)
    item_table = FeatureTable.from_frame(items, inter.item_map, id_col="item_id")
    user_table = FeatureTable.from_frame(users, inter.user_map, id_col="user_id")
    return split, item_table, user_table


def naive_ild(lists: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """A loop over users and pairs, written from the formula."""
    out = []
    for row in lists:
        items = [i for i in row[:k] if i >= 0]
        dists = []
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                x, y = vectors[items[a]], vectors[items[b]]
                nx, ny = np.linalg.norm(x), np.linalg.norm(y)
                dists.append(1 - (x @ y / (nx * ny) if nx and ny else 0.0))
        out.append(np.mean(dists) if dists else np.nan)
    return np.array(out)


def test_evaluate_reports_beyond_accuracy_figures(genre_split):
    split, items, users = genre_split
    from towerrec.evaluation import evaluate_split

    ease = EASE(l2=10.0).fit(split.train, options=FitOptions(seed=0))
    pop = Popularity().fit(split.train, options=FitOptions(seed=0))
    got = {m.name: evaluate_split(m, split, k=(5, 10), item_features=items, user_features=users,
                                  parts=("test",))["test"] for m in (ease, pop)}
    result = got["ease"]
    for name in ("ILD", "EmbILD", "Novelty", "Serendipity", "ARP", "LongTail", "Miscalibration", "Gini"):
        assert f"{name}@10" in result.summary and f"{name}@5" in result.summary
    assert "EmbILD@10" not in got["pop"].summary          # popularity has no item space
    assert got["pop"].summary["Serendipity@10"] == 0.0    # its lists are the primitive lists
    assert result.summary["Serendipity@10"] > 0
    # per-user values are kept (for the significance tests) and agree with a naive loop
    cats = category_matrix(items)[0].toarray()
    naive = naive_ild(result.top_items, cats, 10)
    assert result.per_user["ILD@10"].to_numpy() == pytest.approx(naive)
    assert result.summary["ILD@10"] == pytest.approx(np.nanmean(naive))
    emb = naive_ild(result.top_items, ease.weights_.numpy(), 10)
    assert result.per_user["EmbILD@10"].to_numpy() == pytest.approx(emb, abs=1e-5)
    assert set(result.fairness) == {"gender", "age"}
    gender = result.fairness["gender"]
    assert gender["groups"]["M"]["users"] + gender["groups"]["F"]["users"] == len(result.per_user)
    m, f = gender["groups"]["M"]["NDCG@10"], gender["groups"]["F"]["NDCG@10"]
    assert gender["gap"]["NDCG@10"] == pytest.approx(abs(m - f))


def test_lists_made_elsewhere_get_the_same_figures_from_a_context(genre_split):
    split, items, users = genre_split
    from towerrec.evaluation import _exclusion, evaluate_split

    ease = EASE(l2=10.0).fit(split.train, options=FitOptions(seed=0))
    model_path = evaluate_split(ease, split, k=10, item_features=items, parts=("test",))["test"]
    seen = _exclusion([split.train, split.valid], split.test.n_users, split.test.n_items)
    recs = ease.rank_users(split.test.active_users(), 10, exclude=seen, ties=model_path_ties(split))
    context = BeyondContext(ItemStats.from_train(split.train, items), history=seen, exclude=seen,
                            ties=model_path_ties(split), space=ItemSpace(ease.item_space()))
    lists_path = evaluate(recs, split.test, k=10, beyond=context)
    for name, value in model_path.summary.items():
        assert lists_path.summary[name] == pytest.approx(value), name


def model_path_ties(split):
    from towerrec.ranking import TieOrder

    return TieOrder.seeded(split.train.n_items, split.seed)


def test_beyond_can_be_switched_off(genre_split):
    split, _, _ = genre_split
    from towerrec.evaluation import evaluate_split

    pop = Popularity().fit(split.train, options=FitOptions(seed=0))
    result = evaluate_split(pop, split, k=10, beyond=None, parts=("test",))["test"]
    assert not any(k.startswith(("Novelty", "ILD", "Gini")) for k in result.summary)
