"""History encoder: a user as a pooled set of the items in their past (YouTube DNN's watch
history, FISM / Mult-DAE style). With a mean history the user tower becomes a learned item-item
model, which is very strong on MovieLens.

Histories are ragged, so they travel as offsets rather than padding: `history_batch` turns CSR
rows into (unique items, inverse [F], offsets [B], weights [F]) on the CPU, and `HistoryPooling`
pools item vectors of the unique items with `embedding_bag` (mean) or a segment softmax
(attention). Nothing loops over users or interactions in Python.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def history_batch(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray, *, n_items: int,
                  exclude: np.ndarray | None = None, keep_prob: np.ndarray | float | None = None,
                  rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Histories of CSR `rows` as a ragged batch.

    exclude [B]: one item per row to leave out of that row's history (the training target: a
    model that sees its target in the history learns identity, a leak). keep_prob: scalar or
    [B] probability to keep each entry (history dropout / length cap); needs `rng`.
    Returns items [m] (unique item indices), inverse [F] (position in items), offsets [B],
    weights [F] (0 for excluded or dropped entries; kept ones weigh 1 / keep_prob, inverted dropout
    as in nn.Dropout, so a sum / sqrt(n) pooling keeps the expected size it has over the whole
    history at scoring time; mean and attention pooling are unchanged by the scale).
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts = indptr[rows]
    lens = indptr[rows + 1] - starts
    offsets = np.cumsum(lens) - lens
    total = int(lens.sum())
    pos = np.arange(total, dtype=np.int64) + np.repeat(starts - offsets, lens)
    flat = indices[pos].astype(np.int64)
    weights = np.ones(total, dtype=np.float32)
    if exclude is not None:
        weights[flat == np.repeat(np.asarray(exclude, dtype=np.int64), lens)] = 0.0
    if keep_prob is not None and rng is not None:
        p = np.repeat(keep_prob, lens) if np.ndim(keep_prob) else keep_prob
        kept = rng.random(total) < p                       # kept entries have p > 0
        weights = np.where(kept, weights / p, 0.0).astype(np.float32)
    # unique without sorting: O(F + n_items)
    mark = np.zeros(n_items + 1, dtype=bool)
    mark[flat] = True
    items = np.flatnonzero(mark)
    remap = np.cumsum(mark) - 1
    return {"items": items, "inverse": remap[flat], "offsets": offsets.astype(np.int64), "weights": weights}


def _segments(offsets: torch.Tensor, total: int) -> torch.Tensor:
    """Row id of each flat entry [F] from offsets [B]."""
    lens = torch.diff(offsets, append=offsets.new_tensor([total]))
    return torch.repeat_interleave(torch.arange(len(offsets), device=offsets.device), lens, output_size=total)


class HistoryPooling(nn.Module):
    """Pool item vectors over each user's history.

    forward(reps [m, d], inverse [F], offsets [B], weights [F]) -> [B, d]
    - mean: weighted mean of reps[inverse] per row (weights 0 drop an entry);
    - norm: sum / sqrt(kept entries): the L2-normalised multi-hot input of Mult-VAE / Mult-DAE;
    - attention: softmax over a learned score w . tanh(W r) per entry, masked by weights.
    An empty history (or all weights 0) gives zeros.
    """

    def __init__(self, dim: int, mode: str = "mean") -> None:
        super().__init__()
        if mode not in ("mean", "norm", "attention"):
            raise ValueError(f"history pooling must be 'mean', 'norm' or 'attention', got {mode!r}")
        self.mode = mode
        if mode == "attention":
            self.key = nn.Linear(dim, dim)
            self.query = nn.Linear(dim, 1, bias=False)

    def forward(self, reps: torch.Tensor, inverse: torch.Tensor, offsets: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:
        return self.pool_with_mass(reps, inverse, offsets, weights)[0]

    def pool_with_mass(self, reps: torch.Tensor, inverse: torch.Tensor, offsets: torch.Tensor,
                       weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(`forward`, the sum of each row's pooling weights [B]): 1 for a mean, sqrt(kept) under
        "norm", 0 for an empty history. Pooling W r + b gives W pool(r) + mass * b, so a linear
        map can run after the pooling, on B rows instead of every history item."""
        total = inverse.shape[0]
        n = offsets.shape[0]
        if total == 0:
            return reps.new_zeros(n, reps.shape[1]), reps.new_zeros(n)
        seg = _segments(offsets, total)
        if self.mode in ("mean", "norm"):
            raw = torch.zeros(n, device=reps.device, dtype=weights.dtype).index_add_(0, seg, weights)
            denom = raw.clamp_min(1e-9)
            if self.mode == "norm":
                denom = denom.sqrt()
            w = weights / denom[seg]
            mass = raw / denom
        else:
            logits = self.query(torch.tanh(self.key(reps))).squeeze(1)[inverse].float()   # [F]
            logits = logits.masked_fill(weights <= 0, -torch.inf)
            top = torch.full((n,), -torch.inf, device=reps.device).scatter_reduce(0, seg, logits, "amax")
            e = torch.exp(logits - torch.where(torch.isfinite(top), top, 0.0)[seg])
            denom = torch.zeros(n, device=reps.device).index_add_(0, seg, e)
            w = e / denom.clamp_min(1e-9)[seg]
            mass = denom / denom.clamp_min(1e-9)
        # float32: CUDA has no bf16 backward for weighted embedding_bag (autocast hands us bf16 reps)
        pooled = F.embedding_bag(inverse, reps.float(), offsets, mode="sum", per_sample_weights=w.float())
        return pooled.to(reps.dtype), mass.to(reps.dtype)

    def mean_leaving_out(self, reps: torch.Tensor, inverse: torch.Tensor, offsets: torch.Tensor,
                         row_user: torch.Tensor, left_out: torch.Tensor) -> torch.Tensor:
        """Mean pooling of many training rows that share users, each leaving its own target out.

        The batch's distinct users' full histories (inverse [F], offsets [D]) are summed once;
        row r gets (sum[row_user[r]] - reps[left_out[r]]) / (len - 1), with `left_out` [B] an
        index into `reps` of an item that is in that user's history. Equal to `forward` over
        per-row histories with the target excluded, at O(F) instead of O(sum over rows of the
        user's history length): with random (user, item) rows, heavy users recur in every batch.
        -> [B, d]
        """
        return self.mean_leaving_out_with_mass(reps, inverse, offsets, row_user, left_out)[0]

    def mean_leaving_out_with_mass(self, reps: torch.Tensor, inverse: torch.Tensor, offsets: torch.Tensor,
                                   row_user: torch.Tensor, left_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(`mean_leaving_out`, each row's weight mass [B]: 1, or 0 when the left-out item was the
        user's only one), as `pool_with_mass`."""
        if self.mode != "mean":
            raise ValueError("leaving one item out of a shared sum is exact for mean pooling only")
        total = inverse.shape[0]
        sums = F.embedding_bag(inverse, reps, offsets, mode="sum") if total else reps.new_zeros(len(offsets), reps.shape[1])
        lens = torch.diff(offsets, append=offsets.new_tensor([total]))
        kept = (lens[row_user] - 1).to(reps.dtype)
        rest = kept.clamp_min(1)
        return (sums[row_user] - reps[left_out]) / rest[:, None], kept / rest
