"""Top-k with exclusion and deterministic tie-breaking."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from towerrec.ranking import mask_rows, top_k, top_k_row


def test_ties_go_to_the_lower_index_inside_and_at_the_boundary():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 3.0]])
    idx, vals = top_k(scores, 3)
    assert idx.tolist() == [[1, 2, 4]]
    assert vals.tolist() == [[3.0, 3.0, 3.0]]


def test_all_equal_scores_rank_by_index():
    idx, _ = top_k(torch.zeros(2, 50), 5)
    assert idx.tolist() == [[0, 1, 2, 3, 4]] * 2


def test_matches_a_stable_full_sort_on_random_ties():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (64, 200), generator=gen).float()
    idx, _ = top_k(scores, 10)
    expected = torch.sort(-scores, dim=1, stable=True).indices[:, :10]
    assert torch.equal(idx, expected)


def test_k_larger_than_catalogue():
    idx, vals = top_k(torch.tensor([[0.1, 0.5]]), 10)
    assert idx.tolist() == [[1, 0]]


def test_mask_rows_uses_the_given_rows_of_the_exclusion_matrix():
    excl = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 1]], dtype=np.float32))
    scores = torch.ones(2, 3)
    mask_rows(scores, excl, np.array([1, 0]))
    assert torch.isinf(scores[0, 1]) and torch.isinf(scores[0, 2]) and torch.isinf(scores[1, 0])
    assert torch.isfinite(scores[0, 0]) and torch.isfinite(scores[1, 1])


def test_top_k_row_matches_top_k_on_ties_and_infinities():
    """The one-row numpy path (serving) must give exactly the batched torch ranking."""
    rng = np.random.default_rng(3)
    for trial in range(300):
        n = int(rng.integers(1, 60))
        scores = rng.integers(0, 4, n).astype(np.float32)          # many ties
        scores[rng.random(n) < 0.2] = -np.inf                       # excluded items
        k = int(rng.integers(1, n + 2))
        idx, vals = top_k_row(scores.copy(), k)
        ref_idx, ref_vals = top_k(torch.from_numpy(scores)[None, :], k)
        np.testing.assert_array_equal(idx, ref_idx[0].numpy(), err_msg=f"trial {trial}")
        np.testing.assert_array_equal(vals, ref_vals[0].numpy())
