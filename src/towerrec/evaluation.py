"""Full-ranking evaluation: recommendation lists and the truth in, per-user metrics out.

    evaluate(recs, truth)                  # lists already made (any model, any tool)
    evaluate(model, split)                 # EVALUATION.md's protocol on the test part
    evaluate(model, split, part="valid")   # ... or the valid part (train items excluded)

Lists come from the one ranking path (`towerrec.ranking`): every catalogue item scored, seen
items excluded, ties broken by a seeded random order of the items (the split's seed), never by
item index. Memory is bounded by `batch_size x n_items` scores; there is never a dense users x
items matrix.

What is reported beside the metrics, so that no number flatters a model:
- `Tied@K`: the share of users whose top-K list was cut inside a run of equal scores;
- users without training interactions ("cold"): counted, with metrics for all, warm and cold users,
  and the model's fallback for them (popularity, or their features) named with how many used it.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from towerrec.beyond import BeyondContext, BeyondOptions, ItemSpace, ItemStats, beyond_metrics, group_gaps, user_groups
from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.data.sequences import Sequences
from towerrec.errors import TowerrecError
from towerrec.metrics import METRICS, coverage, mean_popularity, per_user_metrics
from towerrec.ranking import TieOrder, rank_batches
from towerrec.recommendations import Recommendations
from towerrec.splits import Split

ScoreFn = Callable[[np.ndarray], torch.Tensor]


@dataclass
class EvalResult:
    """Summary (means over evaluated users), per-user values and the top-K lists behind them.

    `groups` holds the summaries of warm users (with training interactions) and cold users
    (without) when the truth has any cold user; `info` the counts (users, warm/cold, fallbacks).
    """

    summary: dict[str, float]
    per_user: pd.DataFrame            # user_id + one column per metric@k (+ group, fallback)
    user_idx: np.ndarray              # [n_eval]
    top_items: np.ndarray             # [n_eval, K_max] item indices (-1 = padding)
    top_scores: np.ndarray            # [n_eval, K_max]
    seconds: float
    info: dict = field(default_factory=dict)
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    fairness: dict[str, dict] = field(default_factory=dict)   # user attribute -> group means and gaps

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

    def __repr__(self) -> str:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in list(self.summary.items())[:4])
        return f"EvalResult({self.info.get('users_evaluated', len(self.user_idx)):,} users: {shown}, ...)"


# ---- metrics of given lists -----------------------------------------------------------------------
def _metrics(recs: Recommendations, truth: Interactions, ks: tuple[int, ...], metrics: Sequence[str],
             item_share: np.ndarray | None, warm: np.ndarray | None, seconds: float,
             beyond: BeyondContext | None = None) -> EvalResult:
    if recs.item_map is not truth.item_map and recs.item_map != truth.item_map:
        raise TowerrecError("the recommendations and the truth use different item maps")
    users = truth.active_users()
    if len(users) == 0:
        raise TowerrecError("no user has a target item in the evaluated part: nothing to evaluate "
                            "(is the split too small, or were all its rows filtered out?)")
    if recs.user_idx is None:
        rec_users = truth.user_map.get_index(recs.user_ids)
    else:
        rec_users = np.asarray(recs.user_idx, dtype=np.int64)
    position = pd.Series(np.arange(len(rec_users)), index=rec_users)
    position = position[~position.index.duplicated(keep="first")]
    rows = position.reindex(users).to_numpy()
    if np.isnan(rows.astype(np.float64)).any():
        missing = truth.user_map.ids[users[np.isnan(rows.astype(np.float64))]][:5].tolist()
        raise TowerrecError(f"no recommendation list for user(s) with targets: {missing}")
    rows = rows.astype(np.int64)
    k_max = ks[-1]
    n_items = truth.n_items
    if recs.k < min(k_max, n_items):
        raise TowerrecError(f"the lists hold {recs.k} items; K={k_max} needs at least {min(k_max, n_items)}")
    top_items, top_scores = recs.item_idx[rows, :k_max], recs.scores[rows, :k_max]
    truth_csr = truth.to_csr()[users]
    safe = np.maximum(top_items, 0)
    hits = np.asarray(truth_csr[np.arange(len(users))[:, None], safe].todense()).astype(bool) & (top_items >= 0)
    if hits.shape[1] < k_max:
        hits = np.pad(hits, ((0, 0), (0, k_max - hits.shape[1])))
    n_rel = np.diff(truth_csr.indptr)
    values = per_user_metrics(hits, n_rel, ks, tuple(metrics))
    summary = {name: float(v.mean()) for name, v in values.items()}
    tied_k = _tied_at(recs, rows, top_scores, ks)
    if item_share is None and beyond is not None:   # lists made elsewhere: popularity from the context
        counts = beyond.stats.item_counts.astype(np.float64)
        item_share = counts / max(counts.sum(), 1.0)
    for kk in ks:
        summary[f"Coverage@{kk}"] = coverage(top_items[:, :kk], n_items)
        if item_share is not None:
            summary[f"Popularity@{kk}"] = mean_popularity(top_items[:, :kk], item_share)
        summary[f"Tied@{kk}"] = float(tied_k[kk].mean())
    fairness: dict[str, dict] = {}
    if beyond is not None:
        beyond_k = tuple(kk for kk in (beyond.ks or ks) if kk <= k_max)
        extra, catalogue = beyond_metrics(users, top_items, hits, beyond_k, beyond)
        extra = {m: v for m, v in extra.items() if not np.isnan(v).all()}   # e.g. no user has a categorised history
        values.update(extra)
        summary.update({m: float(np.nanmean(v)) for m, v in extra.items()})
        summary.update(catalogue)
        shown = {m: v for m, v in values.items() if int(m.rsplit("@", 1)[1]) in beyond_k}
        fairness = {attr: group_gaps(shown, labels[users]) for attr, labels in beyond.groups.items()}
    per_user = pd.DataFrame({"user_id": truth.user_map.ids[users], **values})
    fallback = np.asarray(recs.fallback, dtype=object)[rows] if recs.fallback else np.full(len(rows), None)
    info: dict = {"users_evaluated": int(len(users)), "full_ranking": True}
    used = pd.Series([f for f in fallback if f]).value_counts()
    if len(used):
        info["fallback"] = {str(name): int(n) for name, n in used.items()}
        per_user["fallback"] = fallback
    groups: dict[str, dict[str, float]] = {}
    if warm is not None:
        is_warm = np.asarray(warm, dtype=bool)[users]
        info["users"] = {"warm": int(is_warm.sum()), "cold": int((~is_warm).sum())}
        if not is_warm.all():
            per_user["group"] = np.where(is_warm, "warm", "cold")
            for name, mask in (("warm", is_warm), ("cold", ~is_warm)):
                if mask.any():
                    groups[name] = {"users": int(mask.sum()), **{m: _mean(v[mask]) for m, v in values.items()}}
    return EvalResult(summary, per_user, users, top_items, top_scores, seconds, info, groups, fairness)


def _mean(v: np.ndarray) -> float:
    """Mean over the users with a value (beyond-accuracy values are NaN where undefined)."""
    return float(np.nanmean(v)) if not np.isnan(v).all() else float("nan")


def _tied_at(recs: Recommendations, rows: np.ndarray, top_scores: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """[n] bool per K: the scores at ranks K and K + 1 were equal (the cut fell inside a tie)."""
    out = {}
    for kk in ks:
        if kk < top_scores.shape[1]:
            a, b = top_scores[:, kk - 1], top_scores[:, kk]
            out[kk] = np.isfinite(a) & (a == b)
        elif kk == recs.k and recs.tied is not None:
            out[kk] = np.asarray(recs.tied, dtype=bool)[rows]
        else:
            out[kk] = np.zeros(len(rows), dtype=bool)
    return out


def _ks(k: Sequence[int] | int) -> tuple[int, ...]:
    ks = tuple(sorted({int(x) for x in ([k] if isinstance(k, int) else k)}))
    if not ks or ks[0] <= 0:
        raise TowerrecError(f"k must be positive integers, got {k}")
    return ks


# ---- lists from a model ---------------------------------------------------------------------------
def _exclusion(parts: Sequence[Interactions], n_users: int, n_items: int) -> sp.csr_matrix | None:
    if not parts:
        return None
    m = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    for part in parts:
        m = m + part.to_csr()
    return m.tocsr()


def beyond_context(model, split: Split, options: BeyondOptions = BeyondOptions(), *,
                   item_features: FeatureTable | None = None,
                   user_features: FeatureTable | None = None) -> BeyondContext:
    """The split-level part of the beyond-accuracy context: training popularity and categories, the
    model's own item space, user groups (`evaluate_split` adds each part's history and exclusions)."""
    items = item_features if item_features is not None else split.item_features
    users = user_features if user_features is not None else split.user_features
    space = model.item_space() if hasattr(model, "item_space") else None
    return BeyondContext(ItemStats.from_train(split.train, items, options.categories),
                         space=ItemSpace(space, model.name) if space is not None else None,
                         groups=user_groups(users, options.fairness), ks=options.k)


def _distributed(flag: bool | None) -> bool:
    """None: split the users over ranks when a process group of several ranks runs (torchrun)."""
    from towerrec.distributed import active

    return active() if flag is None else bool(flag) and active()


def evaluate_split(model, split: Split, *, k: Sequence[int] | int = (10, 20), metrics: Sequence[str] = METRICS,
                   exclude_seen: bool = True, batch_size: int = 1024, parts: Sequence[str] = ("valid", "test"),
                   ties: TieOrder | None = None, beyond: BeyondOptions | None = BeyondOptions(),
                   item_features: FeatureTable | None = None,
                   user_features: FeatureTable | None = None,
                   distributed: bool | None = None) -> dict[str, EvalResult]:
    """EVALUATION.md's protocol for a fitted model on `split`: {part: EvalResult}.

    Valid excludes the train items, test the train and valid items (nothing with
    `exclude_seen=False`). Cold-user splits score held-out users from their input histories
    (time order), which are then also excluded. Models declaring `capabilities.sequences` read
    the newest history at test time: train + valid (RecBole's protocol). Users the model cannot
    score get its named fallback; ties follow the split's seed (or `ties`).

    Beyond-accuracy figures (`towerrec.beyond`) are added unless `beyond=None`; categories come from
    `item_features` (default: the split's), fairness groups from `user_features`.

    Under torchrun (`distributed` None: whenever a process group of several ranks runs) this is a
    collective: call it on every rank. Each rank ranks a contiguous slice of the users and the
    lists are gathered, so every rank gets the one-process result exactly (`ranking.rank_batches`).
    """
    ks = _ks(k)
    distributed = _distributed(distributed)
    ties = ties if ties is not None else TieOrder.seeded(split.train.n_items, split.seed)
    warm = split.train.user_counts() > 0
    context = beyond_context(model, split, beyond, item_features=item_features, user_features=user_features) \
        if beyond is not None else None
    out = {}
    for part in parts:
        truth = getattr(split, part)
        histories = None
        exclude_parts = [split.train] + ([split.valid] if part == "test" else [])
        if split.method == "cold-user":
            history = split.valid_history if part == "valid" else split.test_history
            histories = Sequences.from_interactions(history)
            exclude_parts = [history]
        elif part == "test" and model.capabilities.sequences:
            histories = Sequences.from_interactions(split.train.concat(split.valid))
        known = _exclusion(exclude_parts, truth.n_users, truth.n_items)
        exclude = known if exclude_seen else None
        start = time.perf_counter()
        recs = model.rank_users(truth.active_users(), ks[-1], histories=histories, exclude=exclude, ties=ties,
                                batch_size=batch_size, desc=f"{model.name} {part}", distributed=distributed)
        seconds = time.perf_counter() - start
        part_context = dataclasses.replace(context, history=known, exclude=exclude, ties=ties) \
            if context is not None else None
        result = _metrics(recs, truth, ks, metrics, model.item_popularity_, warm, seconds, part_context)
        result.info["exclude"] = [len(p) for p in exclude_parts] if exclude_seen else []
        out[part] = result
    return out


def evaluate(subject, truth: Interactions | Split, *, part: str = "test", exclude_seen: bool = True,
             k: Sequence[int] | int = (10, 20), metrics: Sequence[str] = METRICS, batch_size: int = 1024,
             beyond: BeyondOptions | BeyondContext | None = BeyondOptions(),
             distributed: bool | None = None) -> EvalResult:
    """Full-ranking metrics of `subject` on `truth`.

    - `subject` a `Recommendations`, `truth` its targets (Interactions): the metrics of those lists
      (`exclude_seen` and `part` do not apply: exclusions are the lists' business); beyond-accuracy
      figures only when `beyond` is a `BeyondContext` (they need the training data).
    - `subject` a fitted model, `truth` a `Split`: the protocol of `evaluate_split` on `part`
      ("test" or "valid"), seen items excluded unless `exclude_seen=False`.
    - `subject` a fitted model, `truth` Interactions: lists for its users, the model's own training
      items excluded when `exclude_seen`.

    Beyond-accuracy figures (`towerrec.beyond`: diversity, novelty, serendipity, popularity bias,
    calibration, user-group gaps in `.fairness`) come with every model evaluation unless
    `beyond=None`; categories and user groups need the split's feature tables (a split of a Dataset).

    Under torchrun a model's evaluation is a collective (see `evaluate_split`; `distributed=False`
    to evaluate on one rank alone).
    """
    ks = _ks(k)
    if isinstance(subject, Recommendations):
        truth = getattr(truth, part) if isinstance(truth, Split) else truth
        context = beyond if isinstance(beyond, BeyondContext) else None
        return _metrics(subject, truth, ks, metrics, None, None, 0.0, context)
    if isinstance(truth, Split):
        if part not in ("valid", "test"):
            raise TowerrecError(f"part must be 'valid' or 'test', got {part!r}")
        options = beyond if not isinstance(beyond, BeyondContext) else BeyondOptions(k=beyond.ks)
        return evaluate_split(subject, truth, k=ks, metrics=metrics, exclude_seen=exclude_seen,
                              batch_size=batch_size, parts=(part,), beyond=options, distributed=distributed)[part]
    start = time.perf_counter()
    recs = subject.rank_users(truth.active_users(), ks[-1], exclude_seen=exclude_seen, batch_size=batch_size,
                              desc=f"evaluate {subject.name}", distributed=_distributed(distributed))
    seconds = time.perf_counter() - start
    warm = np.zeros(truth.n_users, dtype=bool)
    warm[: subject.seen_.shape[0]] = np.diff(subject.seen_.indptr) > 0
    context = beyond if isinstance(beyond, BeyondContext) else None
    if isinstance(beyond, BeyondOptions):
        seen = sp.vstack([subject.seen_, sp.csr_matrix((max(truth.n_users - subject.seen_.shape[0], 0),
                                                        subject.n_items), dtype=np.float32)]).tocsr()
        space = subject.item_space()
        context = BeyondContext(ItemStats.from_seen(subject.seen_), history=seen,
                                exclude=seen if exclude_seen else None, ties=subject.ties_,
                                space=ItemSpace(space, subject.name) if space is not None else None, ks=beyond.k)
    return _metrics(recs, truth, ks, metrics, subject.item_popularity_, warm, seconds, context)


def evaluate_holdout(model, holdout, *, k: Sequence[int] | int = (10, 20), metrics: Sequence[str] = METRICS,
                     seed: int = 0, batch_size: int = 1024) -> dict[str, EvalResult]:
    """A streamed log's held-out user sample (`towerrec.data.stream_log.Holdout`), as `evaluate_split`
    would: valid with the users' training items masked, test with their training and valid items
    masked, full ranking, ties by a seeded order of the items."""
    ks = _ks(k)
    ties = TieOrder.seeded(model.n_items, seed)
    out = {}
    for part, truth, exclude in (("valid", holdout.valid, holdout.train_seen),
                                 ("test", holdout.test, holdout.test_exclusion())):
        if len(truth) == 0:
            raise TowerrecError("the stream's held-out sample is empty: no sampled user has 3 interactions "
                                "(raise holdout_users)")
        start = time.perf_counter()
        recs = model.rank_users(truth.active_users(), ks[-1], exclude=exclude, ties=ties, batch_size=batch_size,
                                desc=f"{model.name} {part}")
        out[part] = _metrics(recs, truth, ks, metrics, model.item_popularity_, None, time.perf_counter() - start)
    return out


def evaluate_scores(score_fn: ScoreFn, truth: Interactions, *, ties: TieOrder, exclude: sp.csr_matrix | None = None,
                    allowed: np.ndarray | None = None, k: Sequence[int] | int = (10,), metrics: Sequence[str] = METRICS,
                    batch_size: int = 1024, who: str = "the model", desc: str = "valid",
                    show: bool | None = None, distributed: bool | None = None) -> EvalResult:
    """Evaluate any `score_fn(user_idx [b]) -> [b, n_items]` on the users of `truth` (the training
    loop's validation, where no fitted model exists yet). `exclude` [n_users, n_items] is masked;
    `allowed` [n_items] bool restricts every list to those items. Under torchrun a collective, as
    `evaluate_split`."""
    ks = _ks(k)
    start = time.perf_counter()
    users = truth.active_users()
    top = rank_batches(lambda pos: score_fn(users[pos]), users, ks[-1], ties,
                       exclude=[exclude] if exclude is not None else [], allowed=allowed, batch_size=batch_size,
                       who=who, desc=desc, show=show, distributed=_distributed(distributed))
    recs = Recommendations.from_top(truth.user_map.ids[users], top, truth.item_map, user_idx=users)
    return _metrics(recs, truth, ks, metrics, None, None, time.perf_counter() - start)
