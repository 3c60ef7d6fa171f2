"""Full-ranking evaluation in batches: score all items, mask seen ones, top-k, count hits.

Memory is bounded by `batch_size x n_items` floats; there is never a dense users x items matrix.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from towerrec.data.interactions import Interactions
from towerrec.metrics import METRICS, coverage, mean_popularity, per_user_metrics
from towerrec.progress import progress
from towerrec.ranking import mask_rows, top_k


@dataclass
class EvalResult:
    """Summary (means over evaluated users), per-user values and the top-K lists behind them."""

    summary: dict[str, float]
    per_user: pd.DataFrame            # user_id + one column per metric@k
    user_idx: np.ndarray              # [n_eval]
    top_items: np.ndarray             # [n_eval, K_max] item indices (-1 = padding)
    top_scores: np.ndarray            # [n_eval, K_max]
    seconds: float
    info: dict = field(default_factory=dict)

    def recs_frame(self, user_map, item_map) -> pd.DataFrame:
        """`user_id, rank, item_id, score` for every evaluated user (rank from 1)."""
        n, k = self.top_items.shape
        flat = self.top_items.reshape(-1)
        keep = flat >= 0
        return pd.DataFrame({
            "user_id": np.repeat(user_map.ids[self.user_idx], k)[keep],
            "rank": np.tile(np.arange(1, k + 1), n)[keep],
            "item_id": item_map.ids[flat[keep]],
            "score": self.top_scores.reshape(-1)[keep],
        })


def evaluate_scores(score_fn, target: Interactions, *, exclude: Sequence[Interactions] = (),
                    k: Sequence[int] = (10, 20), metrics: Sequence[str] = METRICS, batch_size: int = 1024,
                    item_share: np.ndarray | None = None, exclude_rows: sp.csr_matrix | None = None,
                    desc: str = "evaluate") -> EvalResult:
    """Evaluate any `score_fn(user_idx [b]) -> scores [b, n_items]` on the users of `target`.

    `exclude` lists interactions whose items are removed from each user's ranking (train for
    valid; train + valid for test). `exclude_rows`, if given, is a ready [n_users, n_items] CSR.
    """
    start = time.perf_counter()
    ks = tuple(sorted(set(int(x) for x in k)))
    k_max = ks[-1]
    n_items = target.n_items
    truth = target.to_csr()
    users = target.active_users()
    if exclude_rows is None and exclude:
        exclude_rows = sp.csr_matrix((target.n_users, n_items), dtype=np.float32)
        for part in exclude:
            exclude_rows = exclude_rows + part.to_csr()
        exclude_rows = exclude_rows.tocsr()
    top_items = np.full((len(users), min(k_max, n_items)), -1, dtype=np.int64)
    top_scores = np.full(top_items.shape, np.nan, dtype=np.float32)
    hits = np.zeros((len(users), k_max), dtype=bool)
    for start_row in progress(range(0, len(users), batch_size), desc=desc,
                              total=-(-len(users) // batch_size)):
        batch = users[start_row:start_row + batch_size]
        with torch.no_grad():
            scores = score_fn(batch).float()
        scores = scores.cpu() if scores.device.type != "cpu" else scores
        if exclude_rows is not None:
            if scores.data_ptr() and not scores.is_contiguous():
                scores = scores.contiguous()
            mask_rows(scores, exclude_rows, batch)
        idx, vals = top_k(scores, k_max)
        idx_np, vals_np = idx.numpy(), vals.numpy()
        idx_np = np.where(np.isfinite(vals_np), idx_np, -1)
        rows = slice(start_row, start_row + len(batch))
        top_items[rows, : idx_np.shape[1]] = idx_np
        top_scores[rows, : idx_np.shape[1]] = vals_np
        t = truth[batch]
        safe = np.maximum(idx_np, 0)
        h = np.asarray(t[np.arange(len(batch))[:, None], safe].todense()).astype(bool) & (idx_np >= 0)
        hits[rows, : h.shape[1]] = h
    n_rel = np.diff(truth.indptr)[users]
    values = per_user_metrics(hits, n_rel, ks, tuple(metrics))
    summary = {name: float(v.mean()) if len(v) else float("nan") for name, v in values.items()}
    for kk in ks:
        summary[f"Coverage@{kk}"] = coverage(top_items[:, :kk], n_items)
        if item_share is not None:
            summary[f"Popularity@{kk}"] = mean_popularity(top_items[:, :kk], item_share)
    per_user = pd.DataFrame({"user_id": target.user_map.ids[users], **values})
    return EvalResult(summary, per_user, users, top_items, top_scores, time.perf_counter() - start,
                      {"users_evaluated": int(len(users)), "full_ranking": True,
                       "exclude": [len(e) for e in exclude]})


def evaluate(model, target: Interactions, *, exclude: Sequence[Interactions] = (),
             k: Sequence[int] = (10, 20), metrics: Sequence[str] = METRICS, batch_size: int = 1024,
             desc: str | None = None) -> EvalResult:
    """Full-ranking evaluation of a fitted towerrec model on `target` (external protocol:
    pass `exclude=[train]` for valid and `exclude=[train, valid]` for test)."""
    return evaluate_scores(model.score_users, target, exclude=exclude, k=k, metrics=metrics,
                           batch_size=batch_size, item_share=getattr(model, "item_popularity_", None),
                           desc=desc or f"evaluate {getattr(model, 'name', 'model')}")
