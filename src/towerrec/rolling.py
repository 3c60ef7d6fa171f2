"""Rolling evaluation: a model that keeps up with a log window after window, against a full refit.

The log is cut by time quantiles (`towerrec.rolling_windows`: an initial part, then slices 0..N).
The first fit sees the initial part. For window t = 1..N, tested on slice t:

- **update** track: the running model is updated with slice t-1 (`Recommender.update`), then ranks;
- **refit** track: a fresh model is fitted on every row before c_t, then ranks.

Both have seen exactly the same rows when they are tested, so the difference is what an update
gives up (accuracy) for what it saves (seconds).

The protocol of one window follows EVALUATION.md, adapted to a catalogue that grows:
- every user with a row in the window is evaluated; users unknown before it ("new users") get the
  model's fallback (popularity) in both tracks, and warm users are also reported on their own;
- the catalogue is what the model knows: the items with rows before the window. A test row of an
  item first seen inside the window ("cold item") stays in the user's targets: it counts in |R|
  and can never be hit. Its share of the test rows is reported (`cold_item_share`);
- the items the model has seen for a user are excluded from the ranking; a test row repeating such
  a pair is dropped (counted in `repeated_pairs`);
- ties follow the model's seeded tie order.

`new_item_rank` measures how soon a brand-new item is recommendable: for the items first seen in
slice t-1 (learned by the update just before window t), the rank each gets among the catalogue
for the known users who take it in window t (1 = first; seen items excluded).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError
from towerrec.metrics import per_user_metrics
from towerrec.rolling_windows import RollingSplit, first_slice, rolling_split  # noqa: F401 (rolling_split: public here too)

log = logging.getLogger(__name__)

#: the metrics of a rolling evaluation (full ranking, means over the window's users)
ROLLING_METRICS = ("NDCG", "Recall", "HitRate", "MRR")


# ---- one window ------------------------------------------------------------------------------------
@dataclass
class WindowTruth:
    """A window's targets in one model's index space."""

    user_ids: np.ndarray        # [n_eval] external ids
    user_idx: np.ndarray        # [n_eval] the model's index, -1 for users it does not know
    truth: sp.csr_matrix        # [n_eval, model items]: the known target items
    n_relevant: np.ndarray      # [n_eval] all targets, cold items included
    repeated_pairs: int
    cold_item_rows: int
    rows: int


def window_truth(model, test: Interactions) -> WindowTruth:
    """Map a window's rows onto `model`'s maps; drop the pairs it has already seen."""
    ids_u = test.user_map.ids[test.user_idx].astype(str)
    users, row = np.unique(ids_u, return_inverse=True)
    pairs = np.unique(row.astype(np.int64) * np.int64(test.n_items) + test.item_idx)
    row, full_item = pairs // test.n_items, pairs % test.n_items
    user_idx = model.user_map_.get_index(users.astype(object)).astype(np.int64)
    item_idx = model.item_map_.get_index(test.item_map.ids[full_item]).astype(np.int64)
    u = user_idx[row]
    known = (u >= 0) & (u < model.seen_.shape[0]) & (item_idx >= 0)
    seen = np.zeros(len(pairs), dtype=bool)
    seen[known] = stored(model.seen_, u[known], item_idx[known])
    keep = ~seen
    row, item_idx = row[keep], item_idx[keep]
    n_rel = np.bincount(row, minlength=len(users))
    has = n_rel > 0
    remap = np.cumsum(has) - 1
    inside = item_idx >= 0
    truth = sp.csr_matrix((np.ones(int(inside.sum()), dtype=np.float32), (remap[row[inside]], item_idx[inside])),
                          shape=(int(has.sum()), model.n_items))
    return WindowTruth(users[has].astype(object), user_idx[has], truth, n_rel[has], int(seen.sum()),
                       int((~inside).sum()), len(test))


def stored(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """[n] bool: is matrix[rows[j], cols[j]] a stored non-zero? (scipy's pair indexing, made safe
    for zero pairs and for whatever matrix type it returns)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=bool)
    got = matrix[rows, cols]
    return (np.asarray(got.todense() if sp.issparse(got) else got).ravel() != 0)


def evaluate_window(model, test: Interactions, *, k: Sequence[int] = (10, 20),
                    metrics: Sequence[str] = ROLLING_METRICS, batch_size: int = 1024) -> dict:
    """Metrics of `model` on one window's rows (module docstring): all users, warm users, counts."""
    ks = tuple(sorted(set(int(x) for x in k)))
    truth = window_truth(model, test)
    if len(truth.user_ids) == 0:
        raise TowerrecError("the window has no user with a target the model has not seen")
    recs = model.rank_users(truth.user_idx, ks[-1], exclude_seen=True, batch_size=batch_size,
                            user_ids=truth.user_ids, desc=f"{model.name} window")
    top = recs.item_idx[:, :ks[-1]]
    hits = np.asarray(truth.truth[np.arange(len(top))[:, None], np.maximum(top, 0)].todense()).astype(bool) & (top >= 0)
    if hits.shape[1] < ks[-1]:
        hits = np.pad(hits, ((0, 0), (0, ks[-1] - hits.shape[1])))
    values = per_user_metrics(hits, truth.n_relevant, ks, tuple(metrics))
    warm = model.known_users(truth.user_idx)
    out = {name: float(v.mean()) for name, v in values.items()}
    out.update({f"{name} (warm)": float(v[warm].mean()) if warm.any() else None for name, v in values.items()})
    out.update({"users": len(truth.user_ids), "warm_users": int(warm.sum()), "repeated_pairs": truth.repeated_pairs,
                "cold_item_rows": truth.cold_item_rows, "rows": truth.rows})
    return out


def new_item_ranks(model, test: Interactions, fresh: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Ranks (1 = first) of the window's rows whose item is in `fresh` (indices of the log's item
    map), for users the model knows, among the items not excluded for them (seen, retired)."""
    rows = np.isin(test.item_idx, fresh)
    u = model.user_map_.get_index(test.user_map.ids[test.user_idx[rows]].astype(object)).astype(np.int64)
    i = model.item_map_.get_index(test.item_map.ids[test.item_idx[rows]].astype(object)).astype(np.int64)
    ok = (u >= 0) & (i >= 0)
    ok[ok] = model.known_users(u[ok])
    ok[ok] &= ~stored(model.seen_, u[ok], i[ok])
    u, i = u[ok], i[ok]
    ranks = np.zeros(len(u), dtype=np.int64)
    keys = torch.from_numpy(model.ties_.keys)
    retired = torch.from_numpy(model._retired())
    for s in range(0, len(u), batch_size):
        uu, ii = u[s:s + batch_size], torch.from_numpy(i[s:s + batch_size])
        scores = model.score_users(uu).clone()
        seen = model.seen_[uu]
        scores[torch.from_numpy(np.repeat(np.arange(len(uu)), np.diff(seen.indptr))),
               torch.from_numpy(seen.indices.astype(np.int64))] = -torch.inf
        scores[:, retired] = -torch.inf
        own = scores.gather(1, ii[:, None])
        ahead = (scores > own) | ((scores == own) & (keys[None, :] < keys[ii][:, None]))
        ranks[s:s + batch_size] = 1 + ahead.sum(1).numpy()
    return ranks


def rank_summary(ranks: np.ndarray, n_items: int, k: int = 20) -> dict:
    """Median rank, HitRate@k and mean reciprocal rank of `ranks`, with how many there are."""
    if len(ranks) == 0:
        return {"pairs": 0, "median_rank": None, f"hit@{k}": None, "mrr": None, "catalogue": n_items}
    return {"pairs": len(ranks), "median_rank": float(np.median(ranks)), f"hit@{k}": float((ranks <= k).mean()),
            "mrr": float((1.0 / ranks).mean()), "catalogue": n_items}


# ---- the two tracks ------------------------------------------------------------------------------
@dataclass
class RollingResult:
    """One row per (model, window, track) and the split's window facts."""

    rows: list[dict]
    info: dict
    seconds: float = 0.0

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def summary(self, metric: str = "NDCG@10") -> pd.DataFrame:
        """Per model: the mean over windows of each track's `metric`, Recall@20 and seconds, the
        update / refit ratios of both."""
        frame = self.frame()
        out = []
        for label, part in frame.groupby("model", sort=False):
            refit, update = part[part.track == "refit"], part[part.track == "update"]
            row = {"model": label, f"refit {metric}": refit[metric].mean(), f"update {metric}": update[metric].mean()}
            for col in ("Recall@20",):
                if col in part:
                    row[f"refit {col}"], row[f"update {col}"] = refit[col].mean(), update[col].mean()
            row["refit s"], row["update s"] = refit["seconds"].mean(), update["seconds"].mean()
            row[f"{metric} ratio"] = row[f"update {metric}"] / row[f"refit {metric}"] if row[f"refit {metric}"] else None
            row["seconds ratio"] = row["update s"] / row["refit s"] if row["refit s"] else None
            out.append(row)
        return pd.DataFrame(out)


def fit_initial(split: RollingSplit, make: Callable[[], object], options) -> object:
    """A fresh model fitted on the rows before the first slice (with the feature tables of its ids)."""
    initial = split.before(0)
    uf, itf = split.features(initial)
    return make().fit(initial, user_features=uf, item_features=itf, options=options)


def update_track(split: RollingSplit, label: str, model, *, options, k: Sequence[int] = (10, 20),
                 metrics: Sequence[str] = ROLLING_METRICS, batch_size: int = 1024,
                 on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Window by window: update `model` (fitted by `fit_initial`, changed in place) with the slice
    before the window, then evaluate it on the window."""
    rows = []
    first_item = first_slice(split.log.item_idx, split.slice_of, split.log.n_items)
    for t in range(1, split.windows + 1):
        new = split.slice(t - 1)
        items, users = split.content(new)
        model.update(new, items=items, users=users, options=options)
        rows.append(_row(split, label, model, t, "update", model.update_seconds_, np.flatnonzero(first_item == t - 1),
                         k, metrics, batch_size))
        if on_row is not None:
            on_row(rows[-1])
    return rows


def refit_track(split: RollingSplit, label: str, make: Callable[[], object], *, options,
                k: Sequence[int] = (10, 20), metrics: Sequence[str] = ROLLING_METRICS, batch_size: int = 1024,
                on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Window by window: a fresh model fitted on every row before the window, evaluated on it."""
    rows = []
    first_item = first_slice(split.log.item_idx, split.slice_of, split.log.n_items)
    for t in range(1, split.windows + 1):
        train = split.before(t)
        uf, itf = split.features(train)
        model = make().fit(train, user_features=uf, item_features=itf, options=options)
        rows.append(_row(split, label, model, t, "refit", model.fit_seconds_, np.flatnonzero(first_item == t - 1),
                         k, metrics, batch_size))
        if on_row is not None:
            on_row(rows[-1])
    return rows


def _row(split: RollingSplit, label: str, model, t: int, track: str, seconds: float, fresh: np.ndarray,
         k: Sequence[int], metrics: Sequence[str], batch_size: int) -> dict:
    test = split.slice(t)
    t0 = time.perf_counter()
    row = {"model": label, "window": t, "track": track, "seconds": seconds,
           **evaluate_window(model, test, k=k, metrics=metrics, batch_size=batch_size)}
    row["new_item"] = rank_summary(new_item_ranks(model, test, fresh), model.n_items)
    row.update({"eval_seconds": time.perf_counter() - t0, "version": model.version, "catalogue": model.n_items,
                "load": os.getloadavg()[0]})
    log.info("%s window %d %s: NDCG@10 %s, %.2f s", label, t, track, row.get("NDCG@10"), seconds)
    return row


def run_rolling(split: RollingSplit, models: Sequence[tuple[str, Callable[[], object]]], *,
                k: Sequence[int] = (10, 20), metrics: Sequence[str] = ROLLING_METRICS, options=None,
                batch_size: int = 1024, tracks: Sequence[str] = ("update", "refit"),
                on_row: Callable[[dict], None] | None = None) -> RollingResult:
    """Both tracks for every (label, factory) model: `factory()` builds an unfitted model."""
    from towerrec.models.base import FitOptions

    options = options or FitOptions(seed=split.seed, progress=False)
    start, rows = time.perf_counter(), []
    common = dict(options=options, k=k, metrics=metrics, batch_size=batch_size, on_row=on_row)
    for label, make in models:
        if "update" in tracks:
            model = fit_initial(split, make, options)
            log.info("%s: initial fit on %d rows in %.1f s", label, int((split.slice_of < 0).sum()), model.fit_seconds_)
            rows += update_track(split, label, model, **common)
        if "refit" in tracks:
            rows += refit_track(split, label, make, **common)
    return RollingResult(rows, dict(split.info), time.perf_counter() - start)
