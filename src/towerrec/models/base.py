"""The contract every towerrec recommender follows (checked by tests/models/contract.py).

Public methods take the user's own ids; subclasses implement index-level math:
`_fit`, `_score_users(user_idx) -> [batch, n_items]`, optionally `_score_histories(seen)` for users
unseen at training time, and `_state`/`_load_state` for artifacts.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from towerrec.artifact import load_recommender, save_recommender
from towerrec.data.features import FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.errors import NotFittedError, TowerrecError, UnknownIdError
from towerrec.ranking import mask_rows, top_k


@dataclass(frozen=True)
class FitOptions:
    """Settings that are not hyperparameters: they never change what a model means."""

    seed: int = 0
    device: str = "auto"          # "auto" picks cuda when present
    progress: bool | None = None  # None: a bar only on a terminal
    threads: int | None = None    # torch intra-op threads; None keeps torch's default
    verbose: bool = False

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass(frozen=True)
class Recommendations:
    """Top-k lists: `item_idx`/`scores` are [n_users, k]; -1 pads lists shorter than k."""

    user_ids: np.ndarray
    item_idx: np.ndarray
    scores: np.ndarray
    item_map: IdMap
    fallback: list[str | None] = field(default_factory=list)

    @property
    def item_ids(self) -> np.ndarray:
        ids = np.append(self.item_map.ids, None)  # index -1 -> None
        return ids[self.item_idx]

    def to_frame(self) -> pd.DataFrame:
        """Long format `user_id, rank, item_id, score` (rank starts at 1; padding left out)."""
        n, k = self.item_idx.shape
        valid = self.item_idx.reshape(-1) >= 0
        return pd.DataFrame({
            "user_id": np.repeat(self.user_ids, k)[valid],
            "rank": np.tile(np.arange(1, k + 1), n)[valid],
            "item_id": self.item_map.ids[self.item_idx.reshape(-1)[valid]],
            "score": self.scores.reshape(-1)[valid],
        })


class Recommender:
    """Base class: config in, `fit` returns self, batch `recommend` over the full catalogue."""

    name: ClassVar[str] = "base"
    Config: ClassVar[type] = object
    #: "ids" (needs the user in training), "history" (scores any item history) or "features"
    cold_start: ClassVar[str] = "ids"

    @property
    def supports_history(self) -> bool:
        """Can score a user from an item history alone (new users, cold-user splits)."""
        return self.cold_start != "ids"

    @property
    def supports_cold_items(self) -> bool:
        """Can score items that had no training interactions (from their features)."""
        return self.cold_start == "features"

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        base = config if config is not None else self.Config()
        self.config = dataclasses.replace(base, **overrides) if overrides else base

    # ---- lifecycle -------------------------------------------------------------------------
    def fit(self, interactions: Interactions, *, user_features: FeatureTable | None = None,
            item_features: FeatureTable | None = None, valid: Interactions | None = None,
            options: FitOptions | None = None) -> "Recommender":
        options = options or FitOptions()
        if options.threads:
            torch.set_num_threads(options.threads)
        start = time.perf_counter()
        self.user_map_ = interactions.user_map
        self.item_map_ = interactions.item_map
        self.seen_ = interactions.to_csr()
        counts = interactions.item_counts().astype(np.float32)
        self.item_popularity_ = counts / max(counts.sum(), 1.0)
        self._fit(interactions, user_features=user_features, item_features=item_features,
                  valid=valid, options=options)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _fit(self, interactions: Interactions, *, user_features: FeatureTable | None,
             item_features: FeatureTable | None, valid: Interactions | None, options: FitOptions) -> None:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "seen_"):
            raise NotFittedError(f"{self.name}: call fit() before querying the model")

    # ---- index-level scoring (subclasses) --------------------------------------------------
    def _score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        """Scores [len(user_idx), n_items] for known users."""
        raise NotImplementedError

    def _score_histories(self, seen: sp.csr_matrix) -> torch.Tensor:
        """Scores [n, n_items] for users given only their item histories (rows of `seen`)."""
        raise NotImplementedError(f"{self.name} cannot score users it was not trained on")

    def _score_sequences(self, sequences: list[np.ndarray]) -> torch.Tensor:
        """Scores [n, n_items] from ordered histories (item indices, oldest first). Order-aware
        models (SASRec, GRU4Rec, ...) implement it; `recommend(history=...)` tries it first."""
        raise NotImplementedError(f"{self.name} does not use the order of a history")

    def score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        self._check_fitted()
        return self._score_users(np.asarray(user_idx, dtype=np.int64)).float()

    # ---- public queries --------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.item_map_)

    def score(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        """Pairwise scores for (user_ids[j], item_ids[j]), shape [n]."""
        self._check_fitted()
        u = self.user_map_.index(user_ids)
        i = self.item_map_.index(item_ids)
        uniq, inv = np.unique(u, return_inverse=True)
        scores = self.score_users(uniq)
        return scores[torch.from_numpy(inv), torch.from_numpy(i)].cpu().numpy()

    def recommend(self, user_ids: Sequence[str] | str | None = None, k: int = 10, *,
                  exclude_seen: bool = True, history: Sequence[str] | None = None,
                  exclude_items: Sequence[str] | None = None, batch_size: int = 1024) -> Recommendations:
        """Top-k for known users, or for one new user given `history` (external item ids).

        Users unknown to the model fall back to their `history` when the model can use it,
        else to popularity; `Recommendations.fallback` says which ("history", "popularity").
        """
        self._check_fitted()
        if k <= 0:
            raise TowerrecError(f"k must be positive, got {k}")
        if history is not None:
            return self._recommend_history([history], np.array(["<history>" if user_ids is None else str(user_ids)],
                                                               dtype=object), k, exclude_seen, exclude_items)
        if user_ids is None:
            raise TowerrecError("recommend needs user_ids or history")
        ids = np.asarray([user_ids] if isinstance(user_ids, str) else list(user_ids), dtype=object)
        idx = self.user_map_.get_index(ids)
        known = idx >= 0
        n = len(ids)
        out_idx = np.full((n, min(k, self.n_items)), -1, dtype=np.int64)
        out_scores = np.full(out_idx.shape, np.nan, dtype=np.float32)
        fallback: list[str | None] = [None] * n
        extra = self._exclusion_matrix(exclude_items, len(idx))
        known_pos = np.flatnonzero(known)
        for start in range(0, len(known_pos), batch_size):
            pos = known_pos[start:start + batch_size]
            scores = self.score_users(idx[pos]).clone()
            if exclude_seen:
                mask_rows(scores, self.seen_, idx[pos])
            if extra is not None:
                mask_rows(scores, extra, pos)
            top, vals = top_k(scores, k)
            self._fill(out_idx, out_scores, pos, top, vals)
        if (~known).any():
            unknown = np.flatnonzero(~known)
            scores = torch.from_numpy(np.tile(self.item_popularity_, (len(unknown), 1)))
            if extra is not None:
                mask_rows(scores, extra, unknown)
            top, vals = top_k(scores, k)
            self._fill(out_idx, out_scores, unknown, top, vals)
            for p in unknown:
                fallback[p] = "popularity"
        return Recommendations(ids, out_idx, out_scores, self.item_map_, fallback)

    def _recommend_history(self, histories: list[Sequence[str]], ids: np.ndarray, k: int,
                           exclude_seen: bool, exclude_items: Sequence[str] | None) -> Recommendations:
        rows = [self.item_map_.index(h) for h in histories]
        seen = sp.csr_matrix((np.ones(sum(map(len, rows)), dtype=np.float32),
                              np.concatenate(rows) if rows else np.array([], dtype=np.int64),
                              np.cumsum([0] + [len(r) for r in rows])), shape=(len(rows), self.n_items))
        try:
            try:
                scores = self._score_sequences(rows).float().clone()
            except NotImplementedError:
                scores = self._score_histories(seen).float().clone()
            kind = "history"
        except NotImplementedError:
            scores = torch.from_numpy(np.tile(self.item_popularity_, (len(rows), 1)))
            kind = "popularity"
        if exclude_seen:
            mask_rows(scores, seen, np.arange(len(rows)))
        extra = self._exclusion_matrix(exclude_items, len(rows))
        if extra is not None:
            mask_rows(scores, extra, np.arange(len(rows)))
        top, vals = top_k(scores, k)
        out_idx = np.full((len(rows), top.shape[1]), -1, dtype=np.int64)
        out_scores = np.full(out_idx.shape, np.nan, dtype=np.float32)
        self._fill(out_idx, out_scores, np.arange(len(rows)), top, vals)
        return Recommendations(ids, out_idx, out_scores, self.item_map_, [kind] * len(rows))

    def _exclusion_matrix(self, exclude_items: Sequence[str] | None, n_rows: int) -> sp.csr_matrix | None:
        if not exclude_items:
            return None
        cols = self.item_map_.index(exclude_items)
        data = np.ones(len(cols) * n_rows, dtype=np.float32)
        return sp.csr_matrix((data, np.tile(cols, n_rows), np.arange(n_rows + 1) * len(cols)),
                             shape=(n_rows, self.n_items))

    @staticmethod
    def _fill(out_idx: np.ndarray, out_scores: np.ndarray, pos: np.ndarray, top: torch.Tensor,
              vals: torch.Tensor) -> None:
        top_np, vals_np = top.cpu().numpy(), vals.cpu().numpy()
        top_np = np.where(np.isfinite(vals_np), top_np, -1)  # excluded items never fill a list
        out_idx[pos, : top_np.shape[1]] = top_np
        out_scores[pos, : vals_np.shape[1]] = np.where(top_np >= 0, vals_np, np.nan)

    def _item_scores(self, item_idx: np.ndarray) -> torch.Tensor:
        """Similarity of each query item to every item, [len(item_idx), n_items]; -inf = never."""
        raise NotImplementedError(f"{self.name} has no item-item similarity")

    def similar_items(self, item_ids: Sequence[str] | str, k: int = 10) -> Recommendations:
        """Items most similar to each of `item_ids` (the query item itself excluded)."""
        self._check_fitted()
        ids = np.asarray([item_ids] if isinstance(item_ids, str) else list(item_ids), dtype=object)
        q = self.item_map_.index(ids)
        scores = self._item_scores(q).float().clone()
        scores[torch.arange(len(q)), torch.from_numpy(q)] = -torch.inf
        top, vals = top_k(scores, k)
        out_idx = np.full((len(q), top.shape[1]), -1, dtype=np.int64)
        out_scores = np.full(out_idx.shape, np.nan, dtype=np.float32)
        self._fill(out_idx, out_scores, np.arange(len(q)), top, vals)
        return Recommendations(ids, out_idx, out_scores, self.item_map_, [None] * len(q))

    # ---- artifacts -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _load_state(self, tensors: dict[str, np.ndarray], extra: dict) -> None:
        raise NotImplementedError

    def _extra(self) -> dict:
        return {}

    def save(self, path: str | Path) -> Path:
        """Write a folder loadable by `towerrec.models.load` (no pickle anywhere; see towerrec.artifact)."""
        self._check_fitted()
        return save_recommender(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "Recommender":
        """The model saved at `path`; a damaged or mismatched folder is a TowerrecError naming the file."""
        return load_recommender(cls, path)
