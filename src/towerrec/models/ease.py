"""EASE: a linear item-item autoencoder with a closed-form solution.

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019:

    min_B ||X - X B||_F^2 + l2 ||B||_F^2   subject to diag(B) = 0
    P = (X^T X + l2 I)^-1,   B[i, j] = -P[i, j] / P[j, j]  (i != j),   B[j, j] = 0
    score(u, j) = (x_u @ B)[j]

Cost: one dense n_items x n_items inverse in float64 (8 n_items^2 bytes: 0.8 GB at 10k items, and
O(n_items^3) time), so it suits catalogues up to roughly 10-20k items.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from towerrec.errors import TowerrecError
from towerrec.models.base import ItemRowRecommender


@dataclass(frozen=True)
class EASEConfig:
    """One hyperparameter. The default is RecBole's `reg_weight` (250), kept for comparability."""

    l2: float = 250.0  # ml-100k valid NDCG@10: 100 -> 0.255, 250 -> 0.263, 500 -> 0.264, 1000 -> 0.255


class EASE(ItemRowRecommender):
    """Closed-form item-item model; among the strongest baselines on dense-ish data.

    Use it when the catalogue fits a dense n_items x n_items matrix (up to ~10-20k items). It scores
    new users from their history and exposes its item-item weights through `similar_items`.

    >>> model = EASE(l2=250.0).fit(split.train)
    >>> recs = model.recommend(["196", "186"], k=10)
    >>> recs = model.recommend(history=["242", "302"], k=10)
    """

    name = "ease"
    Config = EASEConfig

    def _solve(self, gram: sp.csr_matrix) -> None:
        """B from G = X^T X: fit, and `update` after its incremental change of G (a full re-solve)."""
        self.weights_ = weights_from_gram(gram, self.config.l2).float()  # B [n_items, n_items]

    def _score_rows(self, seen: sp.csr_matrix) -> torch.Tensor:
        """[n, n_items] = seen [n, n_items] @ B, as the sum of B's rows over each user's items
        (weighted by the row's values): nnz x n_items work, where the dense product costs
        n x n_items^2 (an evaluation on amazon-beauty, 22K users x 12K items: 67 s before, 24 s with
        the ranking included)."""
        seen = seen.tocsr()
        return F.embedding_bag(torch.from_numpy(seen.indices.astype(np.int64)), self.weights_,
                               torch.from_numpy(seen.indptr[:-1].astype(np.int64)), mode="sum",
                               per_sample_weights=torch.from_numpy(seen.data.astype(np.float32)))

    def item_weights(self) -> torch.Tensor:
        return self.weights_

    def _item_scores(self, item_idx: np.ndarray) -> torch.Tensor:
        """Rows B[q, :]: what the model recommends to someone who has seen only q."""
        return self.weights_[torch.from_numpy(item_idx)]

    def _state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_.numpy()}

    def _load_state(self, tensors: dict[str, np.ndarray], extra: dict) -> None:
        self.weights_ = torch.from_numpy(tensors["weights"])


def ease_weights(seen: sp.csr_matrix, l2: float) -> torch.Tensor:
    """B [n_items, n_items] (float64) from a user x item matrix, by Cholesky in float64."""
    x = seen.astype(np.float64)
    return weights_from_gram(x.T @ x, l2)


def weights_from_gram(gram_matrix: sp.spmatrix, l2: float) -> torch.Tensor:
    """B [n_items, n_items] (float64) from G = X^T X, by Cholesky in float64."""
    if l2 <= 0:
        raise TowerrecError(f"EASE needs l2 > 0 (the Gram matrix is singular otherwise), got {l2}")
    gram = torch.from_numpy(gram_matrix.astype(np.float64).toarray())
    gram.diagonal().add_(l2)
    p = torch.cholesky_inverse(torch.linalg.cholesky(gram))
    b = p / (-p.diagonal())[None, :]
    b.fill_diagonal_(0.0)
    return b
