"""Top-k over the whole catalogue with seen-item exclusion and deterministic ties.

Ties are broken by the lower item index (EVALUATION.md). `torch.topk` does not promise that, so
rows whose k-th score is tied with an item left out are re-ranked with a stable sort; for
continuous scores that almost never happens, for popularity-like scores it does.
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


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k per row of [batch, n_items] scores; ties go to the lower index. Returns (idx, values)."""
    k = min(k, scores.shape[1])
    values, idx = torch.topk(scores, k, dim=1, sorted=True)
    # order inside the list: score desc, index asc
    order = torch.argsort(idx, dim=1)
    idx = torch.gather(idx, 1, order)
    values = torch.gather(values, 1, order)
    order = torch.argsort(-values, dim=1, stable=True)
    idx = torch.gather(idx, 1, order)
    values = torch.gather(values, 1, order)
    # membership at the boundary: any left-out item tied with the k-th score and a lower index?
    kth = values[:, -1:]
    n_tied_all = (scores == kth).sum(dim=1)
    n_tied_in = (values == kth).sum(dim=1)
    suspect = (n_tied_all > n_tied_in).nonzero().flatten()
    if suspect.numel():
        sub = scores[suspect]
        order = torch.sort(-sub, dim=1, stable=True).indices[:, :k]
        idx[suspect] = order
        values[suspect] = torch.gather(sub, 1, order)
    return idx, values
