"""Explanations: why a model recommends an item to a user, in the model's own terms.

    model.explain("196", "242")                     # one item: an Explanation
    model.explain("196")                            # the user's top 10, each explained
    model.explain(item_ids="242", history=["50"])   # a new user given a history

Every model answers through one protocol (`towerrec.models.base`):

- `because`: the history items that raise the item's score most, with their contribution, from
  `Recommender.history_effects(user_idx, history, item_idx)` -> [len(history), m]:
  * EASE, ItemKNN: exact, W[h, i] (the score is the sum over the history of these weights);
  * ALS: the implicit-ALS decomposition (Hu, Koren & Volinsky 2008, sec. 5): the score is
    sum_h c_uh y_i^T W_u y_h with W_u = (Y^T C_u Y + lambda_u I)^-1;
  * sequence models and two-tower models with a history encoder: leave one out, the score with
    the whole history minus the score without that entry (one position at a time for sequences);
  * popularity and id-only two-tower models: the history does not enter the score (all 0), and
    the explanation says so;
- `nearest`: the history items nearest to the item in the model's own item space (cosine of
  `Recommender.item_space`), for every model that has one;
- `features` (two-tower): leave-one-feature-out attributions for the user's and the item's
  features (the score minus the score with that feature missing).

`deletion_test` measures faithfulness: removing the top-explained history item must lower the
item's score more than removing a random other history item.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from towerrec.data.sequences import Sequences
from towerrec.errors import TowerrecError


@dataclass(frozen=True)
class Contribution:
    """A history item and how much it adds to the explained item's score (or its cosine for `nearest`)."""

    item_id: str
    weight: float


@dataclass(frozen=True)
class FeatureEffect:
    """A user or item feature and how much the score drops when it is missing."""

    side: str          # "user" or "item"
    feature: str
    weight: float


@dataclass(frozen=True)
class Explanation:
    """Why `item_id` is recommended to `user_id` (None: a new user given a history)."""

    user_id: str | None
    item_id: str
    score: float
    method: str                                   # how `because` was computed
    because: list[Contribution] = field(default_factory=list)
    nearest: list[Contribution] = field(default_factory=list)
    features: list[FeatureEffect] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def sentence(self, titles: dict[str, str] | None = None) -> str:
        """"because you liked X" (the top contribution, else the nearest history item, else the method)."""
        name = (lambda i: (titles or {}).get(i, i))
        if self.because:
            return f"because you liked {name(self.because[0].item_id)}"
        if self.nearest:
            return f"close to {name(self.nearest[0].item_id)} in the model's item space"
        return self.method


# ---- leave one out, the default history_effects -----------------------------------------------------
def without_each(history: Sequences, positions: np.ndarray) -> Sequences:
    """One row per position p: the one-row `history` with position p removed, then the full history
    as the last row (times kept when the history has them)."""
    tokens = history.tokens
    n, p = len(tokens), len(positions)
    keep = np.ones((p, n), dtype=bool)
    keep[np.arange(p), positions] = False
    flat = np.concatenate([np.tile(tokens, (p, 1))[keep], tokens])
    indptr = np.concatenate([np.arange(p + 1) * (n - 1), [p * (n - 1) + n]]).astype(np.int64)
    times = None
    if history.times is not None:
        times = np.concatenate([np.tile(history.times, (p, 1))[keep], history.times])
    return Sequences(flat, indptr, times)


def leave_one_out(model, user_idx: int, history: Sequences, item_idx: np.ndarray,
                  positions: np.ndarray | None = None) -> np.ndarray:
    """[len(history), m]: score with the whole history minus score without each entry (0 for entries
    outside `positions`), through `model.score_history_variants`."""
    length = int(history.lengths()[0])
    positions = np.arange(length) if positions is None else np.asarray(positions, dtype=np.int64)
    out = np.zeros((length, len(item_idx)))
    if length == 0 or len(positions) == 0:
        return out
    scores = model.score_history_variants(user_idx, without_each(history, positions), np.asarray(item_idx))
    scores = np.asarray(torch.as_tensor(scores).detach().cpu().double())
    out[positions] = scores[-1][None, :] - scores[:-1]
    return out


# ---- explanations -------------------------------------------------------------------------------------
def explain_indices(model, user_idx: int, history: Sequences, item_idx: np.ndarray, *, k: int = 3,
                    user_id: str | None = None, features: bool = True, scores: np.ndarray | None = None,
                    space=None) -> list[Explanation]:
    """Explanations of `item_idx` for one user (index -1: new) with the one-row ordered `history`.

    `scores` [m]: the items' scores when the caller has them (a served list); `space`: the model's
    `towerrec.beyond.ItemSpace` when the caller keeps one (building it reads the whole item table)."""
    item_idx = np.asarray(item_idx, dtype=np.int64)
    hist = history.tokens - 1
    ids = model.item_map_.ids
    effects = model.history_effects(user_idx, history, item_idx) if len(hist) else np.zeros((0, len(item_idx)))
    effects = np.asarray(effects, dtype=np.float64)
    if scores is None:
        scores = model.score_history_variants(user_idx, history, item_idx) if len(hist) or user_idx >= 0 else None
        scores = np.asarray(torch.as_tensor(scores).detach().cpu().double())[0] if scores is not None \
            else np.full(len(item_idx), np.nan)
    near = _nearest(model, hist, item_idx, space)
    attributions = model.feature_effects(user_idx, history, item_idx) if features else [[] for _ in item_idx]
    method = model.explanation_method()
    if len(hist) and not effects.any():
        method += " (no history item changes this score)"
    uniq, inv = np.unique(hist, return_inverse=True)
    # an item listed twice in the history: its entries' effects add up (its cosine is the same for each)
    totals = np.zeros((len(uniq), len(item_idx)))
    np.add.at(totals, inv, effects)
    cosines = None
    if near is not None:
        cosines = np.zeros((len(uniq), len(item_idx)))
        cosines[inv] = near
    because = _top(uniq, totals, k, ids, positive=True)
    nearest = _top(uniq, cosines, k, ids) if cosines is not None else [[] for _ in item_idx]
    # a handful of items per request: building the answer
    return [Explanation(user_id, str(ids[item]), float(scores[j]), method, because[j], nearest[j],
                        list(attributions[j])) for j, item in enumerate(item_idx)]


def _top(items: np.ndarray, values: np.ndarray, k: int, ids: np.ndarray,
         positive: bool = False) -> list[list[Contribution]]:
    """Per column j of `values` [len(items), m]: the k `items` with the largest values, largest first
    (ties in `items` order; only positive values with `positive`). One sort for all m columns."""
    order = np.argsort(-values, axis=0, kind="stable")[:k]                  # [<=k, m]
    top = np.take_along_axis(values, order, axis=0)
    names = ids[items[order]].tolist()
    return [[Contribution(str(names[r][j]), float(top[r, j])) for r in range(len(order))
             if not positive or top[r, j] > 0] for j in range(values.shape[1])]


def item_space_of(model):
    """The model's `towerrec.beyond.ItemSpace`, or None for a model without one."""
    from towerrec.beyond import ItemSpace

    space = model.item_space()
    return ItemSpace(space, model.name) if space is not None else None


def _nearest(model, hist: np.ndarray, item_idx: np.ndarray, space=None) -> np.ndarray | None:
    """cos [len(hist), m] in the model's item space (None without one)."""
    space = space if space is not None else item_space_of(model)
    if space is None:
        return None
    if len(hist) == 0:
        return np.zeros((0, len(item_idx)))
    return space.cross(hist, item_idx)


def explain(model, user_id: str | None = None, item_ids: Sequence[str] | str | None = None, *,
            history: Sequence[str] | None = None, k: int = 3, n: int = 10):
    """`Recommender.explain`: an `Explanation` for one item id, a list for several (default: the
    user's top `n` recommendations)."""
    model._check_fitted()
    if k <= 0:
        raise TowerrecError(f"k must be positive, got {k}")
    single = isinstance(item_ids, (str, int, np.integer))
    if history is not None:
        user_idx = -1
        seqs = Sequences.from_lists([model.item_map_.index(list(history))])
    elif user_id is not None:
        user_idx = int(model.user_map_.index([user_id])[0])
        seqs = model.history_of(user_idx)
    else:
        raise TowerrecError("explain needs a user_id or a history")
    if item_ids is None:
        recs = model.recommend(history=list(history), k=n) if history is not None else model.recommend([user_id], k=n)
        items = recs.item_idx[0][recs.item_idx[0] >= 0]
    else:
        items = model.item_map_.index([item_ids] if single else list(item_ids))
    out = explain_indices(model, user_idx, seqs, items, k=k, user_id=None if user_id is None else str(user_id))
    return out[0] if single else out


# ---- faithfulness ------------------------------------------------------------------------------------------
def deletion_test(model, user_idx: int, history: Sequences, item_idx: np.ndarray, rng: np.random.Generator,
                  ) -> dict[str, np.ndarray]:
    """For each item: the score drop when the top-explained history item is removed, and when a random
    other history item is removed, for `because` (history_effects) and for `nearest` (item space).

    Returns {"top": [m], "random_top": [m], "nearest": [m], "random_nearest": [m]} of drops ("nearest" only
    for models with an item space)
    (score with the whole history minus score without the item; every copy of it removed)."""
    item_idx = np.asarray(item_idx, dtype=np.int64)
    hist = history.tokens - 1
    effects = np.asarray(model.history_effects(user_idx, history, item_idx), dtype=np.float64)
    uniq, inv = np.unique(hist, return_inverse=True)
    per_item = np.stack([np.bincount(inv, weights=effects[:, j], minlength=len(uniq)) for j in range(len(item_idx))], 1)
    choices = {"top": uniq[per_item.argmax(0)]}
    near = _nearest(model, hist, item_idx)
    if near is not None:
        near_u = np.stack([np.bincount(inv, weights=near[:, j], minlength=len(uniq)) / np.bincount(inv)
                           for j in range(len(item_idx))], 1)
        choices["nearest"] = uniq[near_u.argmax(0)]
    out = {}
    full = np.asarray(torch.as_tensor(model.score_history_variants(user_idx, history, item_idx)).double())[0]
    for name, chosen in choices.items():
        other = np.array([rng.choice(uniq[uniq != c]) for c in chosen])   # m draws: the test's own sampling
        rows = [hist[hist != c] for c in chosen] + [hist[hist != o] for o in other]
        times = None
        if history.times is not None:
            times = np.concatenate([history.times[hist != c] for c in np.concatenate([chosen, other])])
        tokens = np.concatenate(rows) + 1
        indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        scores = np.asarray(torch.as_tensor(model.score_history_variants(
            user_idx, Sequences(tokens, indptr, times), item_idx)).double())
        m = len(item_idx)
        drop = full[None, :] - scores
        out[name] = drop[np.arange(m), np.arange(m)]
        out[f"random_{name}"] = drop[m + np.arange(m), np.arange(m)]
    return out


__all__ = ["Contribution", "Explanation", "FeatureEffect", "deletion_test", "explain", "explain_indices",
           "leave_one_out", "without_each"]
