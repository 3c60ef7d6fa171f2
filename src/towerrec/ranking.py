"""Top-k over the whole catalogue with seen-item exclusion and deterministic ties.

Ties are broken by the lower item index (EVALUATION.md). `torch.topk` does not promise that, so
we ask it for k + 1 items: when the (k+1)-th score is strictly below the k-th, the top-k set is
already exact and only its order needs fixing (k elements). Rows tied at the boundary, common for
popularity-like scores and rare for learned ones, are completed in index order in O(n_items).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def mask_rows(scores: torch.Tensor, exclude: sp.csr_matrix | None, rows: np.ndarray) -> torch.Tensor:
    """Set scores[b, j] = -inf where exclude[rows[b], j] is stored. In place; returns `scores`."""
    if exclude is None:
        return scores
    sub = exclude[rows]
    if sub.nnz:
        r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
        scores[torch.from_numpy(r), torch.from_numpy(sub.indices.astype(np.int64))] = -torch.inf
    return scores


def _order_desc_then_index(idx: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.argsort(idx, dim=1)
    idx, values = torch.gather(idx, 1, order), torch.gather(values, 1, order)
    order = torch.argsort(-values, dim=1, stable=True)
    return torch.gather(idx, 1, order), torch.gather(values, 1, order)


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k per row of [batch, n_items] scores; ties go to the lower index. Returns (idx, values)."""
    n_items = scores.shape[1]
    k = min(k, n_items)
    if k == n_items:
        values, idx = torch.sort(scores, dim=1, descending=True, stable=True)
        return idx, values
    values, idx = torch.topk(scores, k + 1, dim=1, sorted=True)
    tied = (values[:, k] == values[:, k - 1]).nonzero().flatten()
    idx, values = _order_desc_then_index(idx[:, :k], values[:, :k])
    if tied.numel():
        sub = scores[tied]
        kth = values[tied, k - 1:k]
        above = sub > kth
        need = k - above.sum(dim=1, keepdim=True)
        equal = sub == kth
        take = above | (equal & (torch.cumsum(equal, dim=1) <= need))
        cols = take.nonzero()[:, 1].view(len(tied), k)  # exactly k per row, in index order
        vals = torch.gather(sub, 1, cols)
        idx[tied], values[tied] = _order_desc_then_index(cols, vals)
    return idx, values


def top_k_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` for one row of scores [n_items] in numpy: the serving path, where one request's
    handful of torch calls would cost more than the product itself. Same order and ties."""
    n = scores.shape[0]
    k = min(k, n)
    if k == n:
        idx = np.argsort(-scores, kind="stable")
        return idx, scores[idx]
    cand = np.argpartition(-scores, k)[:k + 1]               # the k+1 largest, unordered
    cand = cand[np.lexsort((cand, -scores[cand]))]           # by score desc, then index
    kth = scores[cand[k - 1]]
    if scores[cand[k]] == kth:                               # a tie at the boundary: lowest indices win
        above = np.flatnonzero(scores > kth)
        equal = np.flatnonzero(scores == kth)[:k - len(above)]
        cand = np.concatenate([above, equal])
        cand = cand[np.lexsort((cand, -scores[cand]))]
    idx = cand[:k]
    return idx, scores[idx]
