"""Training batches of the two-tower model, built on the CPU from index arrays (numpy in, tensors out).

Two sampling regimes, chosen by `TwoTowerConfig.sampling`:

- `PairBatches` ("pairs"): one sample per (user, item) row; the user's other items are the
  history, the row's own item left out (a model that sees its target in the history learns
  identity, a leak).
- `UserBatches` ("users", Mult-DAE style): one sample per user; a random `holdout` share of the
  user's items are the targets and the rest the history. Each history is pooled once per user
  instead of once per row, so an epoch costs O(interactions), not O(sum of squared lengths).

Both add `negatives` extra negatives per batch, uniform over trained items or by popularity
(count ** popularity_alpha). `StreamBatches` does the same for the (user, item) rows of a streamed
log (`towerrec.data.stream`).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from towerrec.data.interactions import Interactions
from towerrec.models.losses import negative_probabilities
from towerrec.models.two_tower.config import TwoTowerConfig
from towerrec.towers.history import history_batch


def histories(seen: sp.csr_matrix, rows: np.ndarray, **kw: object) -> dict[str, torch.Tensor]:
    """The item histories of CSR `rows` as a ragged batch of tensors (`towers.history.history_batch`)."""
    h = history_batch(seen.indptr, seen.indices, rows, n_items=seen.shape[1], **kw)
    return {k: torch.from_numpy(v) for k, v in h.items()}


class _Batches:
    def __init__(self, interactions: Interactions, seen: sp.csr_matrix, config: TwoTowerConfig) -> None:
        self.config, self.seen = config, seen
        self.user = interactions.user_idx.astype(np.int64)
        self.item = interactions.item_idx.astype(np.int64)
        self.trained = np.flatnonzero(interactions.item_counts())
        self.cdf = None
        if config.negative_sampler == "popularity" and config.popularity_alpha != 1.0:
            self.cdf = np.cumsum(negative_probabilities(interactions.item_counts(), "popularity",
                                                        config.popularity_alpha))

    def negatives(self, rng: np.random.Generator) -> torch.Tensor | None:
        c = self.config
        if c.negatives <= 0 or c.loss == "full_softmax":
            return None
        if self.cdf is not None:                 # count ** alpha, by inverting the CDF
            idx = np.searchsorted(self.cdf, rng.random(c.negatives) * self.cdf[-1], side="right")
            return torch.from_numpy(np.minimum(idx, len(self.cdf) - 1).astype(np.int64))
        if c.negative_sampler == "popularity":   # a random training pair's item ~ popularity
            return torch.from_numpy(self.item[rng.integers(0, len(self.item), c.negatives)])
        return torch.from_numpy(self.trained[rng.integers(0, len(self.trained), c.negatives)])  # uniform, trained


class PairBatches(_Batches):
    """Samples = the rows of the training log."""

    @property
    def n_samples(self) -> int:
        return len(self.user)

    def __call__(self, idx: np.ndarray, rng: np.random.Generator) -> dict:
        c = self.config
        u, i = self.user[idx], self.item[idx]
        batch: dict = {"user_idx": torch.from_numpy(u), "item_idx": torch.from_numpy(i)}
        if c.history == "mean" and c.history_dropout == 0 and c.max_history == 0:
            # each distinct user's history pooled once, the row's own item subtracted (exact)
            users, row_user = np.unique(u, return_inverse=True)
            h = histories(self.seen, users)
            h["row_user"] = torch.from_numpy(row_user.astype(np.int64))
            h["left_out"] = torch.searchsorted(h["items"], torch.from_numpy(i))   # items are sorted
            batch["history"] = h
        elif c.history != "none":
            keep = None
            if c.history_dropout > 0 or c.max_history > 0:
                keep = np.full(len(u), 1.0 - c.history_dropout)
                if c.max_history > 0:
                    lens = np.diff(self.seen.indptr)[u]
                    keep = keep * np.minimum(1.0, c.max_history / np.maximum(lens, 1))
            batch["history"] = histories(self.seen, u, exclude=i, keep_prob=keep, rng=rng)
        negatives = self.negatives(rng)
        if negatives is not None:
            batch["negatives"] = negatives
        return batch


class UserBatches(_Batches):
    """Samples = the users with training interactions (each once, or once per training row under
    `user_weighting="activity"`); targets a random `holdout` share of their items, the rest the
    history ("held_out"), or every item with the history a random 1 - holdout share of them
    ("all": Mult-DAE / Mult-VAE's input dropout)."""

    def __init__(self, interactions: Interactions, seen: sp.csr_matrix, config: TwoTowerConfig) -> None:
        super().__init__(interactions, seen, config)
        # "activity": a user is a sample once per training row (with repeats), else once
        self.users = self.user if config.user_weighting == "activity" else np.flatnonzero(interactions.user_counts())

    @property
    def n_samples(self) -> int:
        return len(self.users)

    def __call__(self, idx: np.ndarray, rng: np.random.Generator) -> dict:
        c = self.config
        u = self.users[idx]
        h = history_batch(self.seen.indptr, self.seen.indices, u, n_items=self.seen.shape[1],
                          keep_prob=1.0 - c.holdout, rng=rng)
        held = h["weights"] == 0 if c.user_targets == "held_out" else np.ones(len(h["weights"]), dtype=bool)
        lens = np.diff(np.append(h["offsets"], len(h["inverse"])))
        rows = np.repeat(np.arange(len(u)), lens)[held]
        batch: dict = {"user_idx": torch.from_numpy(u), "history": {k: torch.from_numpy(v) for k, v in h.items()},
                       "target_rows": torch.from_numpy(rows),
                       "target_items": torch.from_numpy(h["items"][h["inverse"][held]])}
        negatives = self.negatives(rng)
        if negatives is not None:
            batch["negatives"] = negatives
        return batch


class StreamBatches:
    """Streamed batches ({"user_idx", "item_idx"} from `StreamReader`), completed with the extra
    negatives of `_Batches.negatives`, drawn from the vocabulary pass's item counts."""

    def __init__(self, item_counts: np.ndarray, config: TwoTowerConfig) -> None:
        self.config = config
        self.trained = np.flatnonzero(item_counts)
        # the same draw as the logQ of the fit: count ** popularity_alpha
        self.cdf = np.cumsum(negative_probabilities(item_counts, "popularity", config.popularity_alpha))

    def __call__(self, raw: dict, rng: np.random.Generator) -> dict:
        c = self.config
        batch = dict(raw)
        if c.negatives > 0 and c.loss != "full_softmax":
            if c.negative_sampler == "popularity":
                draw = np.minimum(np.searchsorted(self.cdf, rng.random(c.negatives), side="right"), len(self.cdf) - 1)
            else:
                draw = self.trained[rng.integers(0, len(self.trained), c.negatives)]
            batch["negatives"] = torch.from_numpy(draw.astype(np.int64))
        return batch
