"""Re-ranking a model's top candidates for diversity, calibration or less popularity bias.

    model = tr.rerank(tr.EASE().fit(split), "mmr", weight=0.5, item_features=split.item_features)
    tr.evaluate(model, split)                 # a comparable entry: the same protocol, re-ranked lists

Every re-ranker takes the model's top-C candidates of a user (`candidates`, after exclusions) with
their scores, normalises the scores to rel in [0, 1] per user (min-max over the candidates), and
builds a list of k greedily. `weight` (lambda, in [0, 1]) trades the model's relevance against the
goal; 0 gives back the model's own order exactly, 1 ignores relevance. The next item i, given the
chosen set S, maximises (docs/evaluation.md):

- `mmr`: (1 - lambda) rel_i - lambda max_{j in S} sim(i, j) (Carbonell & Goldstein 1998);
- `dpp`: (1 - lambda) rel_i + lambda log d_i^2, d_i^2 the Schur complement of i given S in
  K = sim + eps I: the greedy MAP of a DPP with quality exp(a rel), a = (1 - lambda) / (2 lambda),
  by the incremental Cholesky of the fast greedy algorithm (Chen, Zhang & Zhou, NeurIPS 2018);
- `calibrated`: (1 - lambda) rel_i - lambda KL(p_u || q~(S + i)): the category mix of the list
  approaches that of the user's history (Steck, RecSys 2018);
- `popularity`: (1 - lambda) rel_i - lambda log(1 + c_i) / log(1 + max c), c_i the item's training
  users: a popularity penalty.

sim is the cosine of the item categories (`space = "categories"`) or of the model's own item space
(`"model"`); `"auto"` takes categories when the data has them. Users are processed in blocks with
one vectorised step per list position (k steps), never one Python iteration per user.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from towerrec.beyond import CALIBRATION_ALPHA, ItemSpace, category_distribution, category_matrix
from towerrec.data.features import FeatureTable
from towerrec.data.sequences import Sequences
from towerrec.errors import TowerrecError
from towerrec.models.base import Capabilities, FitOptions, Recommender
from towerrec.recommendations import Recommendations

METHODS = ("mmr", "dpp", "calibrated", "popularity")
SPACES = ("auto", "categories", "model")
#: DPP kernel K = S + DPP_EPS * I: an item identical to a chosen one keeps d^2 = eps, not 0 (log finite)
DPP_EPS = 1e-2
# users re-ranked together: [block, C, C] similarities (C = 100: 2.6 MB per 32 users in float64)
_USER_BLOCK = 256


@dataclass(frozen=True)
class RerankConfig:
    """A re-ranker: which, how strongly, over how many candidates, with which item similarity."""

    method: str = "mmr"        # "mmr" | "dpp" | "calibrated" | "popularity"
    weight: float = 0.5        # lambda: 0 = the model's order, 1 = the goal only
    candidates: int = 100      # the model's top-C are re-ranked (at least k)
    space: str = "auto"        # mmr/dpp similarity: "categories", "model" or "auto" (categories if any)

    def validate(self) -> "RerankConfig":
        if self.method not in METHODS:
            raise TowerrecError(f"unknown re-ranker {self.method!r}; choose one of {', '.join(METHODS)}")
        if isinstance(self.weight, bool) or not 0.0 <= float(self.weight) <= 1.0:
            raise TowerrecError(f"re-rank weight must be in [0, 1], got {self.weight!r}")
        if isinstance(self.candidates, bool) or int(self.candidates) != self.candidates or self.candidates < 1:
            raise TowerrecError(f"re-rank candidates must be a positive integer, got {self.candidates!r}")
        if self.space not in SPACES:
            raise TowerrecError(f"re-rank space must be one of {', '.join(SPACES)}, got {self.space!r}")
        return self

    @property
    def label(self) -> str:
        return f"{self.method}@{self.weight:g}"


class Reranker:
    """A re-ranker bound to one catalogue: categories [n_items, G], the model's item space, item counts."""

    def __init__(self, config: RerankConfig, *, item_counts: np.ndarray, categories: sp.csr_matrix | None = None,
                 model_space: ItemSpace | None = None) -> None:
        self.config = config.validate()
        self.item_counts = np.asarray(item_counts, dtype=np.float64)
        self.categories = categories
        self.space: ItemSpace | None = None
        if config.method in ("mmr", "dpp"):
            want = config.space
            if want == "auto":
                want = "categories" if categories is not None else "model"
            self.space = ItemSpace(categories) if want == "categories" and categories is not None else \
                model_space if want == "model" else None
            if self.space is None:
                raise TowerrecError(f"re-ranker {config.method!r} needs an item similarity: "
                                    + ("the data has no item categories (genres)" if want == "categories"
                                       else "this model has no item space") + "; choose another `space`")
        if config.method == "calibrated":
            if categories is None:
                raise TowerrecError("the calibrated re-ranker needs item categories (a genres column)")
            per_item = categories.multiply(1.0 / np.maximum(np.asarray(categories.sum(1)), 1.0))
            self.item_mix = np.asarray(sp.csr_matrix(per_item).todense(), dtype=np.float64)   # p(g | i) [n_items, G]

    def rerank(self, cands: np.ndarray, scores: np.ndarray, k: int,
               history: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """cands, scores [n, C] (the model's order; -1 / NaN pad) -> (items [n, k], their model scores).

        `history` [n, n_items] (the user's known items) is read by the calibrated re-ranker only."""
        cands = np.asarray(cands, dtype=np.int64)
        n = len(cands)
        k = int(k)
        out_idx = np.full((n, k), -1, dtype=np.int64)
        out_scores = np.full((n, k), np.nan, dtype=np.float32)
        for s in range(0, n, _USER_BLOCK):
            block = slice(s, min(s + _USER_BLOCK, n))
            c, sc = cands[block], np.asarray(scores[block], dtype=np.float64)
            valid = c >= 0
            pos = self._choose(c, _relevance(sc, valid), valid, k,
                               history[block] if history is not None else None)
            got = pos >= 0
            rows = np.nonzero(got)
            out_idx[block][rows] = c[rows[0], pos[rows]]
            out_scores[block][rows] = sc[rows[0], pos[rows]]
        return out_idx, out_scores

    # ---- the greedy loops: one vectorised step per list position ------------------------------
    def _choose(self, c: np.ndarray, rel: np.ndarray, valid: np.ndarray, k: int,
                history: sp.csr_matrix | None) -> np.ndarray:
        lam = float(self.config.weight)
        method = self.config.method
        if lam == 0.0 or method == "popularity":
            penalty = 0.0
            if method == "popularity":
                counts = self.item_counts[np.maximum(c, 0)]
                penalty = np.log1p(counts) / max(np.log1p(self.item_counts.max()), 1e-12)
            objective = np.where(valid, (1 - lam) * rel - lam * penalty, -np.inf)
            order = np.argsort(-objective, axis=1, kind="stable")[:, :k]   # ties: the model's own order
            return np.where(np.take_along_axis(valid, order, 1), order, -1)
        if method == "mmr":
            return _greedy_mmr(rel, valid, self.space.block(np.maximum(c, 0)), lam, k)
        if method == "dpp":
            return _greedy_dpp(rel, valid, self.space.block(np.maximum(c, 0)), lam, k)
        p = category_distribution(history, self.categories) if history is not None \
            else np.zeros((len(c), self.categories.shape[1]))
        return _greedy_calibrated(rel, valid, self.item_mix[np.maximum(c, 0)], p, lam, k)


def _relevance(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-row min-max normalised scores over the valid candidates (all 1 when they are equal)."""
    s = np.where(valid, scores, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a row without valid candidates: all NaN, rel 0
        lo, hi = np.nanmin(s, axis=1, keepdims=True), np.nanmax(s, axis=1, keepdims=True)
        span = hi - lo
        rel = np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 1.0)
    return np.where(valid, rel, 0.0)


def _pick(objective: np.ndarray, open_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """argmax per row over open candidates (first on ties: the model's own order); (pos, found)."""
    masked = np.where(open_, objective, -np.inf)
    pos = masked.argmax(1)
    return pos, open_[np.arange(len(pos)), pos]


def _greedy_mmr(rel: np.ndarray, valid: np.ndarray, sim: np.ndarray, lam: float, k: int) -> np.ndarray:
    n, c = rel.shape
    rows = np.arange(n)
    open_ = valid.copy()
    closest = np.zeros((n, c))                 # max similarity to anything chosen so far
    out = np.full((n, min(k, c)), -1, dtype=np.int64)
    for t in range(out.shape[1]):
        pos, found = _pick((1 - lam) * rel - lam * closest, open_)
        out[found, t] = pos[found]
        open_[rows[found], pos[found]] = False
        closest[found] = np.maximum(closest[found], sim[rows[found], pos[found]])
    return _pad(out, k)


def _greedy_dpp(rel: np.ndarray, valid: np.ndarray, sim: np.ndarray, lam: float, k: int) -> np.ndarray:
    n, c = rel.shape
    rows = np.arange(n)
    kernel = sim + DPP_EPS * np.eye(c)[None]
    d2 = np.diagonal(kernel, axis1=1, axis2=2).copy()      # [n, C] Schur complements given the chosen set
    chol = np.zeros((n, min(k, c), c))                     # the incremental Cholesky rows c_i
    open_ = valid.copy()
    out = np.full((n, min(k, c)), -1, dtype=np.int64)
    for t in range(out.shape[1]):
        gain = (1 - lam) * rel + lam * np.log(np.maximum(d2, 1e-12))
        pos, found = _pick(gain, open_)
        out[found, t] = pos[found]
        open_[rows[found], pos[found]] = False
        r, j = rows[found], pos[found]
        dot = np.einsum("nt,ntc->nc", chol[r, :t, j], chol[r, :t, :])       # <c_j, c_i>
        e = (kernel[r, j, :] - dot) / np.sqrt(np.maximum(d2[r, j], 1e-12))[:, None]
        chol[r, t, :] = e
        d2[r] = d2[r] - e ** 2
    return _pad(out, k)


def _greedy_calibrated(rel: np.ndarray, valid: np.ndarray, mix: np.ndarray, p: np.ndarray, lam: float,
                       k: int) -> np.ndarray:
    """mix [n, C, G] = p(g | candidate); p [n, G] the history's mix (a row of 0: relevance only)."""
    n, c = rel.shape
    rows = np.arange(n)
    has_profile = p.sum(1) > 0
    mass = np.zeros_like(p)                                # sum of p(g | i) over the chosen items
    open_ = valid.copy()
    out = np.full((n, min(k, c)), -1, dtype=np.int64)
    for t in range(out.shape[1]):
        q = (mass[:, None, :] + mix) / (t + 1)                           # [n, C, G] with each candidate added
        q_mix = (1 - CALIBRATION_ALPHA) * q + CALIBRATION_ALPHA * p[:, None, :]
        ratio = np.divide(p[:, None, :], q_mix, out=np.ones_like(q_mix), where=p[:, None, :] > 0)
        kl = (p[:, None, :] * np.log(ratio)).sum(2)
        kl = np.where(has_profile[:, None], kl, 0.0)
        pos, found = _pick((1 - lam) * rel - lam * kl, open_)
        out[found, t] = pos[found]
        open_[rows[found], pos[found]] = False
        mass[found] += mix[rows[found], pos[found]]
    return _pad(out, k)


def _pad(out: np.ndarray, k: int) -> np.ndarray:
    return out if out.shape[1] == k else np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=-1)


# ---- a model plus a re-ranker: one comparable entry ---------------------------------------------------
class Reranked(Recommender):
    """A model whose lists are re-ranked: `fit`, `recommend` and `evaluate` work as for the model.

    Scores, exclusions, fallbacks and ties are the base model's; the re-ranker reorders its top
    `candidates`. Saving writes the base model (the re-ranker is a query-time setting: `towerrec
    serve` takes it per request as `rerank`).

    >>> model = Reranked(EASE(), method="calibrated", weight=0.3).fit(split)
    >>> model.recommend("196", k=10)
    """

    name = "reranked"
    Config = RerankConfig

    def __init__(self, base: Recommender, config: RerankConfig | None = None, *,
                 item_features: FeatureTable | None = None, categories: str | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        self.config.validate()
        self.base = base
        self.name = f"{base.name}+{self.config.label}"
        self.category_column = categories
        if hasattr(base, "seen_"):
            self._attach(item_features)

    @property
    def capabilities(self) -> Capabilities:
        return self.base.capabilities

    def __repr__(self) -> str:
        return f"Reranked({self.base!r}, {self.config.method}, weight={self.config.weight:g})"

    def fit(self, interactions, *, user_features=None, item_features=None, valid=None,
            options: FitOptions | None = None) -> "Reranked":
        """Fit the base model, then bind the re-ranker to its catalogue."""
        from towerrec.splits import Split

        self.base.fit(interactions, user_features=user_features, item_features=item_features, valid=valid,
                      options=options)
        if item_features is None and isinstance(interactions, Split):
            item_features = interactions.item_features
        self._attach(item_features)
        return self

    def _attach(self, item_features: FeatureTable | None) -> None:
        base = self.base
        for name in ("user_map_", "item_map_", "seen_", "item_popularity_", "ties_"):
            setattr(self, name, getattr(base, name))
        self.fit_seconds_ = getattr(base, "fit_seconds_", 0.0)
        categories = category_matrix(item_features, self.category_column)[0] if item_features is not None else None
        space = base.item_space()
        counts = np.bincount(base.seen_.indices, minlength=base.n_items)
        self.reranker_ = Reranker(self.config, item_counts=counts, categories=categories,
                                  model_space=ItemSpace(space) if space is not None else None)

    # the base model answers everything but the order of the lists
    def _score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        return self.base.score_users(user_idx)

    def _score_histories(self, histories: Sequences) -> torch.Tensor:
        return self.base.score_histories(histories)

    def _item_scores(self, item_idx: np.ndarray) -> torch.Tensor:
        return self.base.item_similarities(item_idx)

    def item_space(self):
        return self.base.item_space()

    def n_parameters(self) -> int:
        return self.base.n_parameters()

    def training_history(self) -> list[dict] | None:
        return self.base.training_history()

    def scores_cold_users(self) -> bool:
        return self.base.scores_cold_users()

    def save(self, path):
        return self.base.save(path)

    def _candidates(self, k: int) -> int:
        return min(max(int(self.config.candidates), k), self.n_items)

    def rank_users(self, user_idx: np.ndarray, k: int, *, histories: Sequences | None = None,
                   exclude: sp.csr_matrix | None = None, exclude_seen: bool = False, allowed: np.ndarray | None = None,
                   ties=None, batch_size: int = 1024, desc: str | None = None,
                   user_ids: np.ndarray | None = None, distributed: bool = False) -> Recommendations:
        """The base model's top `candidates` (same exclusions, fallbacks and ties), re-ranked to k
        (under torchrun every rank gets every list, and re-ranks it)."""
        self._check_fitted()
        recs = self.base.rank_users(user_idx, self._candidates(k), histories=histories, exclude=exclude,
                                    exclude_seen=exclude_seen, allowed=allowed, ties=ties, batch_size=batch_size,
                                    desc=desc, user_ids=user_ids, distributed=distributed)
        known = _known_rows(np.asarray(user_idx, dtype=np.int64), self.seen_, exclude, histories, self.n_items)
        idx, scores = self.reranker_.rerank(recs.item_idx, recs.scores, k, known)
        return Recommendations(recs.user_ids, idx, scores, recs.item_map, recs.fallback, recs.user_idx,
                               np.zeros(len(idx), dtype=bool))

    def _recommend_history(self, history: list, label: str, k: int, exclude_seen: bool,
                           allowed: np.ndarray | None) -> Recommendations:
        recs = self.base._recommend_history(history, label, self._candidates(k), exclude_seen, allowed)
        items = self.item_map_.index(history)
        known = sp.csr_matrix((np.ones(len(items), dtype=np.float32), (np.zeros(len(items), dtype=np.int64), items)),
                              shape=(1, self.n_items))
        idx, scores = self.reranker_.rerank(recs.item_idx, recs.scores, k, known)
        return Recommendations(recs.user_ids, idx, scores, recs.item_map, recs.fallback)


def _known_rows(user_idx: np.ndarray, seen: sp.csr_matrix, exclude: sp.csr_matrix | None,
                histories: Sequences | None, n_items: int) -> sp.csr_matrix:
    """[n, n_items] binary: each user's training items, excluded items and history (the calibration profile)."""
    def rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
        inside = (user_idx >= 0) & (user_idx < matrix.shape[0])
        picked = sp.csr_matrix(matrix)[np.where(inside, user_idx, 0)]
        return sp.diags(inside.astype(np.float32)) @ picked

    total = rows(seen)
    if exclude is not None:
        total = total + rows(exclude)
    if histories is not None:
        total = total + rows(histories.to_csr(n_items))
    total = sp.csr_matrix(total)
    total.data[:] = 1.0
    return total


def categories_from_values(values) -> sp.csr_matrix:
    """Binary [n_items, G] from one attribute per item ('|'-separated, case and spaces ignored; missing
    values: no category), as a served catalogue stores them."""
    import pandas as pd

    text = pd.Series(values, dtype="string").str.lower().fillna("")
    exploded = text.str.split("|").explode().str.strip()
    exploded = exploded[exploded.fillna("") != ""]
    codes, names = pd.factorize(exploded, sort=True)
    m = sp.csr_matrix((np.ones(len(codes), dtype=np.float32), (exploded.index.to_numpy(), codes)),
                      shape=(len(text), len(names)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def rerank(model: Recommender, method: str = "mmr", *, weight: float = 0.5, candidates: int = 100,
           space: str = "auto", item_features: FeatureTable | None = None,
           categories: str | None = None) -> Reranked:
    """`model` (fitted or not) with a re-ranker: `tr.rerank(ease, "dpp", weight=0.3, item_features=...)`."""
    return Reranked(model, RerankConfig(method, weight, candidates, space), item_features=item_features,
                    categories=categories)


def sweep(method: str, weights: Sequence[float], **kwargs: object) -> list[RerankConfig]:
    """Configs of one re-ranker at several weights (a trade-off curve)."""
    return [RerankConfig(method, float(w), **kwargs).validate() for w in weights]


__all__ = ["METHODS", "RerankConfig", "Reranked", "Reranker", "rerank", "sweep"]
