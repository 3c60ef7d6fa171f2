"""LightGCN propagation (towers/graph.py) against the dense formula on a hand-sized graph."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from towerrec.towers.graph import GraphIdEncoder, GraphPropagation, normalized_adjacency


def _graph():
    # 3 users, 4 items; item 3 has no interaction (an isolated node)
    return sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]], dtype=np.float32))


def test_normalized_adjacency_matches_dense():
    r = _graph().toarray()
    a = np.block([[np.zeros((3, 3)), r], [r.T, np.zeros((4, 4))]])
    deg = a.sum(1)
    inv = np.where(deg > 0, np.maximum(deg, 1) ** -0.5, 0.0)
    expected = inv[:, None] * a * inv[None, :]
    got = normalized_adjacency(_graph()).to_dense().numpy()
    assert got.shape == (7, 7)
    assert np.allclose(got, expected, atol=1e-6)
    assert abs(got[0, 3] - 1 / np.sqrt(2 * 2)) < 1e-6      # user 0 (degree 2) - item 0 (degree 2)
    assert np.all(got[6] == 0)                              # the isolated item


def test_propagation_is_the_mean_of_layers_and_sides_read_their_rows():
    adj = normalized_adjacency(_graph())
    g = GraphPropagation(3, 4, dim=5, layers=2, adjacency=adj)
    e0 = g.ego.detach()
    dense = adj.to_dense()
    expected = (e0 + dense @ e0 + dense @ (dense @ e0)) / 3
    out = g.table()
    assert torch.allclose(out, expected, atol=1e-6)
    out.sum().backward()                                     # gradients reach the ego embeddings
    assert g.ego.grad is not None and torch.isfinite(g.ego.grad).all()
    users, items = GraphIdEncoder(g, "user"), GraphIdEncoder(g, "item")
    codes = torch.tensor([0, 1, 3])                          # 0: unknown -> zeros; c -> row c - 1
    with torch.no_grad():
        assert torch.allclose(users(codes)[1:], expected[[0, 2]], atol=1e-6) and not users(codes)[0].any()
        assert torch.allclose(items(codes)[1:], expected[[3 + 0, 3 + 2]], atol=1e-6)
    assert "ego" not in dict(users.named_parameters())       # the graph is owned once, by the model


def test_shared_propagates_once_and_loaded_graph_uses_final():
    g = GraphPropagation(3, 4, dim=2, layers=1, adjacency=normalized_adjacency(_graph()))
    calls = []
    real = g.propagate
    g.propagate = lambda: calls.append(1) or real()
    with g.shared():
        g.table(), g.table()
    assert len(calls) == 1
    with torch.no_grad():
        final = g.table()                                    # an eval pass keeps the table
    loaded = GraphPropagation(3, 4, dim=2, layers=1, adjacency=None)
    loaded.load_state_dict(g.state_dict())
    assert torch.equal(loaded.table(), final)
