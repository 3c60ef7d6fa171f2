"""Ranking metrics as pure functions of a hit matrix (EVALUATION.md has every formula).

Inputs: `hits` [n_users, K] bool, hits[u, i] = the item at rank i+1 is one of u's targets;
`n_relevant` [n_users] = |R_u| > 0. Each function returns per-user values [n_users] at cut-off k.
"""
from __future__ import annotations

import numpy as np

METRICS = ("Precision", "Recall", "F1", "NDCG", "MAP", "MRR", "HitRate")


def _cut(hits: np.ndarray, k: int) -> np.ndarray:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    return hits[:, :k].astype(np.float64)


def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """hits@k / k (a list shorter than k still divides by k)."""
    return _cut(hits, k).sum(1) / k


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """hits@k / |R|."""
    return _cut(hits, k).sum(1) / n_relevant


def f1(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per-user harmonic mean of P@k and R@k; 0 when both are 0."""
    p, r = precision(hits, n_relevant, k), recall(hits, n_relevant, k)
    denom = p + r
    return np.divide(2 * p * r, denom, out=np.zeros_like(p), where=denom > 0)


def hit_rate(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """1 if any of the top k is relevant."""
    return (_cut(hits, k).sum(1) > 0).astype(np.float64)


def mrr(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """1 / rank of the first relevant item within the top k, else 0."""
    h = _cut(hits, k)
    first = h.argmax(1)
    return np.where(h.any(1), 1.0 / (first + 1), 0.0)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """DCG@k / IDCG@k with binary gains; IDCG over min(|R|, k) positions."""
    h = _cut(hits, k)
    disc = _discounts(k)[: h.shape[1]]
    dcg = h @ disc
    ideal = np.concatenate([[0.0], np.cumsum(_discounts(k))])
    return dcg / ideal[np.minimum(n_relevant, k)]


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """MAP@k for one user: sum of Precision@i at relevant ranks i, / min(|R|, k)."""
    h = _cut(hits, k)
    prec_at_i = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return (prec_at_i * h).sum(1) / np.minimum(n_relevant, k)


FUNCTIONS = {
    "Precision": precision,
    "Recall": recall,
    "F1": f1,
    "NDCG": ndcg,
    "MAP": average_precision,
    "MRR": mrr,
    "HitRate": hit_rate,
}


def per_user_metrics(hits: np.ndarray, n_relevant: np.ndarray, ks: tuple[int, ...],
                     metrics: tuple[str, ...] = METRICS) -> dict[str, np.ndarray]:
    """{"NDCG@10": [n_users], ...} for every metric and k."""
    n_relevant = np.asarray(n_relevant)
    if (n_relevant <= 0).any():
        raise ValueError("every evaluated user needs at least one target item")
    unknown = [m for m in metrics if m not in FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(FUNCTIONS)}")
    return {f"{m}@{k}": FUNCTIONS[m](hits, n_relevant, k) for k in ks for m in metrics}


def coverage(rec_items: np.ndarray, n_items: int) -> float:
    """Share of the catalogue appearing in at least one list ([n_users, k] indices, -1 = padding)."""
    items = rec_items[rec_items >= 0]
    return float(np.unique(items).size / n_items) if n_items else 0.0


def mean_popularity(rec_items: np.ndarray, item_share: np.ndarray) -> float:
    """Mean over all recommended items of the item's share of train interactions."""
    items = rec_items[rec_items >= 0]
    return float(item_share[items].mean()) if items.size else 0.0
