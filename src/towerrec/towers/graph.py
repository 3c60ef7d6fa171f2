"""LightGCN propagation over the user-item graph as an id encoder (He et al., "LightGCN: Simplifying
and Powering Graph Convolution Network for Recommendation", SIGIR 2020).

Users and items are the nodes of one bipartite graph built from the training interactions. Each
node has a free ("ego") embedding E0; a layer is E(k+1) = A_hat E(k) with the symmetric
normalisation A_hat = D^-1/2 A D^-1/2 and no weights nor non-linearity; a node's output is the
mean of E(0..K). The adjacency is a torch sparse matrix (2 x nnz entries, never dense n x n): one
propagation costs O(K x nnz x d) and runs once per training step (`GraphPropagation.shared()`
lets both towers of a step read one propagation).

`GraphIdEncoder(graph, "user" | "item")` is a drop-in for `IdEmbedding` in a tower ("id" input):
codes 0 = unknown / dropped -> zeros, code c >= 1 -> node c - 1 of that side. A fitted model keeps
the last propagated table (`final`, saved with the weights), so a loaded model needs no graph.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


def normalized_adjacency(user_item: sp.spmatrix) -> torch.Tensor:
    """The symmetric-normalised bipartite adjacency of a [n_users, n_items] 0/1 matrix, as a
    torch sparse CSR tensor [n_users + n_items, n_users + n_items] (isolated nodes: zero rows)."""
    r = sp.csr_matrix(user_item, dtype=np.float32)
    r.data[:] = 1.0
    r.sum_duplicates()
    n_users, n_items = r.shape
    adj = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0).astype(np.float32)
    adj = sp.diags(inv) @ adj @ sp.diags(inv)
    adj = adj.tocsr()
    adj.sort_indices()
    with warnings.catch_warnings():   # "sparse CSR support is in beta": sparse.mm on CSR is what we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(adj.indptr.astype(np.int64)),
                                       torch.from_numpy(adj.indices.astype(np.int64)),
                                       torch.from_numpy(adj.data.astype(np.float32)), size=adj.shape)


class GraphPropagation(nn.Module):
    """Ego embeddings of all users and items and their LightGCN propagation.

    table() -> [n_users + n_items, dim]: users first, then items. `adjacency` None (a loaded
    model) uses the saved `final` table.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, layers: int = 2,
                 adjacency: torch.Tensor | None = None) -> None:
        super().__init__()
        if layers < 0:
            raise ValueError(f"graph layers must be >= 0, got {layers}")
        self.n_users, self.n_items, self.dim, self.layers = n_users, n_items, dim, layers
        self.ego = nn.Parameter(torch.randn(n_users + n_items, dim) * 0.05)
        self.register_buffer("final", torch.zeros(n_users + n_items, dim))
        self.adjacency = adjacency
        self._sharing = False
        self._cache: torch.Tensor | None = None

    def _apply(self, fn, recurse: bool = True):  # .to(device) moves the (non-buffer) sparse adjacency too
        out = super()._apply(fn, recurse)
        if self.adjacency is not None:
            self.adjacency = fn(self.adjacency)
        return out

    def propagate(self) -> torch.Tensor:
        if self.adjacency is None:
            return self.final
        x = self.ego
        total = x
        for _ in range(self.layers):
            x = torch.sparse.mm(self.adjacency, x)
            total = total + x
        out = total / (self.layers + 1)
        if not torch.is_grad_enabled():
            self.final.copy_(out)
        return out

    def table(self) -> torch.Tensor:
        if self._cache is not None:
            return self._cache
        out = self.propagate()
        if self._sharing:
            self._cache = out
        return out

    def grow(self, n_users: int, n_items: int, adjacency: torch.Tensor) -> None:
        """Room for new users and items (an `update`): old rows keep their place on their side, new
        ego rows start at zero (propagation gives them their neighbours' mix), `adjacency` is the
        grown graph (`normalized_adjacency` of the new [n_users, n_items] matrix)."""
        if n_users < self.n_users or n_items < self.n_items:
            raise ValueError("a graph only grows")

        def regrow(old: torch.Tensor) -> torch.Tensor:
            out = old.new_zeros(n_users + n_items, self.dim)
            out[:self.n_users] = old[:self.n_users]
            out[n_users:n_users + self.n_items] = old[self.n_users:]
            return out

        with torch.no_grad():
            self.ego = nn.Parameter(regrow(self.ego.detach()))
            self.final = regrow(self.final)
        self.n_users, self.n_items = n_users, n_items
        self.adjacency = adjacency.to(self.ego.device)
        self._cache = None

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Inside this block every reader gets one propagation (one per training step)."""
        self._sharing, self._cache = True, None
        try:
            yield
        finally:
            self._sharing, self._cache = False, None


class GraphIdEncoder(nn.Module):
    """One side of a `GraphPropagation` as an id encoder: codes [b] int64 -> [b, dim]."""

    def __init__(self, graph: GraphPropagation, side: str) -> None:
        super().__init__()
        if side not in ("user", "item"):
            raise ValueError(f"side must be 'user' or 'item', got {side!r}")
        self._graph = [graph]            # a reference, not a submodule: the model owns the graph once
        self.side = side
        self.dim = graph.dim

    @property
    def graph(self) -> GraphPropagation:
        return self._graph[0]

    @property
    def offset(self) -> int:
        """Row of code 1 in the graph's table (items follow the users; read live: the graph grows)."""
        return 0 if self.side == "user" else self.graph.n_users

    def _rows(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        known = codes > 0
        return (codes - 1).clamp_min(0) + self.offset, known

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        rows, known = self._rows(codes)
        return self.graph.table()[rows] * known[:, None]

    def ego(self, codes: torch.Tensor) -> torch.Tensor:
        """The free (layer-0) embeddings of `codes`, for an L2 penalty on the rows a batch used."""
        rows, known = self._rows(codes)
        return self.graph.ego[rows] * known[:, None]
