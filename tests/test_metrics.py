"""Metric formulas against hand-worked cases, hypothesis properties and ranx parity."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerrec import metrics as M


def one(hits: list[int]) -> np.ndarray:
    return np.array([hits], dtype=bool)


def test_hand_computed_single_user():
    # list of 5, relevant at ranks 2 and 4, |R| = 3
    h, r = one([0, 1, 0, 1, 0]), np.array([3])
    assert M.precision(h, r, 5)[0] == pytest.approx(2 / 5)
    assert M.recall(h, r, 5)[0] == pytest.approx(2 / 3)
    assert M.f1(h, r, 5)[0] == pytest.approx(2 * 0.4 * (2 / 3) / (0.4 + 2 / 3))
    assert M.hit_rate(h, r, 5)[0] == 1
    assert M.mrr(h, r, 5)[0] == pytest.approx(1 / 2)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg(h, r, 5)[0] == pytest.approx(dcg / idcg)
    assert M.average_precision(h, r, 5)[0] == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_cutoff_and_idcg_uses_min_of_relevant_and_k():
    h, r = one([1, 0, 0, 0]), np.array([10])
    assert M.ndcg(h, r, 2)[0] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert M.average_precision(h, r, 2)[0] == pytest.approx(1 / 2)
    assert M.recall(h, r, 1)[0] == pytest.approx(1 / 10)


def test_no_hits_gives_zero_everywhere():
    h, r = one([0, 0, 0]), np.array([2])
    for fn in M.FUNCTIONS.values():
        assert fn(h, r, 3)[0] == 0


def test_per_user_metrics_rejects_users_without_targets():
    with pytest.raises(ValueError, match="at least one target"):
        M.per_user_metrics(one([1]), np.array([0]), (1,))


def test_coverage_and_popularity_ignore_padding():
    recs = np.array([[0, 1, -1], [1, 2, -1]])
    assert M.coverage(recs, 10) == pytest.approx(0.3)
    share = np.array([0.5, 0.3, 0.2, 0.0])
    assert M.mean_popularity(recs, share) == pytest.approx((0.5 + 0.3 + 0.3 + 0.2) / 4)


hit_lists = st.lists(st.booleans(), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(hit_lists, st.integers(1, 40), st.integers(1, 30))
def test_metrics_are_bounded(hits, n_rel, k):
    n_rel = max(n_rel, sum(hits))
    h, r = one([int(x) for x in hits]), np.array([n_rel])
    for fn in M.FUNCTIONS.values():
        v = fn(h, r, k)[0]
        assert 0.0 <= v <= 1.0 + 1e-12


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 20), st.integers(1, 20))
def test_perfect_ranking_scores_one(n_rel, k):
    h = one([1] * n_rel + [0] * 20)
    r = np.array([n_rel])
    assert M.ndcg(h, r, k)[0] == pytest.approx(1.0)
    assert M.average_precision(h, r, k)[0] == pytest.approx(1.0)
    assert M.mrr(h, r, k)[0] == 1.0
    assert M.recall(h, r, k)[0] == pytest.approx(min(n_rel, k) / n_rel)


@settings(max_examples=100, deadline=None)
@given(hit_lists, st.integers(1, 30))
def test_moving_a_hit_up_never_lowers_ndcg(hits, k):
    hits = [int(x) for x in hits]
    if 1 not in hits or 0 not in hits[: hits.index(1)]:
        return
    first = hits.index(1)
    better = hits.copy()
    better[first - 1], better[first] = 1, 0
    r = np.array([sum(hits)])
    assert M.ndcg(one(better), r, k)[0] >= M.ndcg(one(hits), r, k)[0] - 1e-12


def test_parity_with_ranx():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(1)
    n_users, n_items, k = 50, 40, 10
    qrels, run = {}, {}
    hits = np.zeros((n_users, k), dtype=bool)
    n_rel = np.zeros(n_users, dtype=int)
    for u in range(n_users):
        rel = set(rng.choice(n_items, rng.integers(1, 8), replace=False).tolist())
        ranked = rng.permutation(n_items)[:k]
        qrels[f"q{u}"] = {f"d{i}": 1 for i in rel}
        run[f"q{u}"] = {f"d{i}": float(k - j) for j, i in enumerate(ranked)}
        hits[u] = [i in rel for i in ranked]
        n_rel[u] = len(rel)
    ours = M.per_user_metrics(hits, n_rel, (k,))
    report = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run),
                           [f"ndcg@{k}", f"recall@{k}", f"precision@{k}", f"mrr@{k}", f"hit_rate@{k}", f"map@{k}"])
    assert ours[f"NDCG@{k}"].mean() == pytest.approx(report[f"ndcg@{k}"], abs=1e-6)
    assert ours[f"Recall@{k}"].mean() == pytest.approx(report[f"recall@{k}"], abs=1e-6)
    assert ours[f"Precision@{k}"].mean() == pytest.approx(report[f"precision@{k}"], abs=1e-6)
    assert ours[f"MRR@{k}"].mean() == pytest.approx(report[f"mrr@{k}"], abs=1e-6)
    assert ours[f"HitRate@{k}"].mean() == pytest.approx(report[f"hit_rate@{k}"], abs=1e-6)
    # ranx's MAP@k divides by |R|; ours (EVALUATION.md, RecBole) by min(|R|, k): equal when |R| <= k
    assert (n_rel <= k).all()
    assert ours[f"MAP@{k}"].mean() == pytest.approx(report[f"map@{k}"], abs=1e-6)
