"""The one ranking path: exclusions, seeded tie-breaking, boundary ties, non-finite scores."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from towerrec.ranking import NonFiniteScores, TieOrder, mask_rows, rank, rank_batches, rank_row, top_k


def _ties(keys: list[float]) -> TieOrder:
    return TieOrder(np.asarray(keys, dtype=np.float64))


def _reference(scores: torch.Tensor, k: int, ties: TieOrder) -> torch.Tensor:
    """Full sort by (score desc, tie key asc): the definition the fast path must match."""
    out = []
    for row in scores.numpy():
        order = np.lexsort((ties.keys, -row))
        out.append(order[:k])
    return torch.from_numpy(np.array(out))


def test_ties_follow_the_tie_order_inside_and_at_the_boundary():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 3.0]])
    ties = _ties([0.5, 0.9, 0.1, 0.0, 0.3, 0.2])     # among the 3.0s: item 2, then 5, then 4, then 1
    idx, vals, tied = top_k(scores, 3, ties)
    assert idx.tolist() == [[2, 5, 4]]
    assert vals.tolist() == [[3.0, 3.0, 3.0]]
    assert tied.tolist() == [True]                    # the 4th 3.0 (item 1) was cut by the tie rule


def test_all_equal_scores_follow_the_seeded_permutation_not_the_index():
    ties = TieOrder.seeded(50, seed=3)
    idx, _, tied = top_k(torch.zeros(2, 50), 5, ties)
    assert idx.tolist() == [ties.permutation[:5].tolist()] * 2
    assert idx[0].tolist() != [0, 1, 2, 3, 4]
    assert tied.all()


def test_seeded_order_is_reproducible_prefix_stable_and_unrelated_to_index():
    a, b = TieOrder.seeded(1000, seed=0), TieOrder.seeded(1000, seed=0)
    assert np.array_equal(a.permutation, b.permutation)
    assert not np.array_equal(TieOrder.seeded(1000, seed=1).permutation, a.permutation)
    grown = a.extended(1200)
    assert np.array_equal(grown.keys[:1000], a.keys)                  # old items keep their keys
    rank_of = np.empty(1000)
    rank_of[a.permutation] = np.arange(1000)
    assert abs(np.corrcoef(rank_of, np.arange(1000))[0, 1]) < 0.1     # not index order


def test_matches_a_full_sort_on_random_ties():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (64, 200), generator=gen).float()
    ties = TieOrder.seeded(200, seed=7)
    idx, _, tied = top_k(scores, 10, ties)
    assert torch.equal(idx, _reference(scores, 10, ties))
    sorted_vals = torch.sort(scores, dim=1, descending=True).values
    assert torch.equal(tied, sorted_vals[:, 9] == sorted_vals[:, 10])


def test_k_larger_than_catalogue_and_padding_of_excluded_items():
    ties = _ties([0.2, 0.1])
    idx, vals, tied = top_k(torch.tensor([[0.1, 0.5]]), 10, ties)
    assert idx.tolist() == [[1, 0]] and not tied.any()
    top = rank(torch.tensor([[0.1, 0.5, 0.3]]), 3, TieOrder.seeded(3), exclude=sp.csr_matrix(np.array([[0, 1, 0]])))
    assert top.item_idx.tolist() == [[2, 0, -1]]       # the excluded item never fills the list
    assert np.isnan(top.scores[0, 2])


def test_mask_rows_uses_the_given_rows_of_the_exclusion_matrix():
    excl = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 1]], dtype=np.float32))
    scores = torch.ones(2, 3)
    mask_rows(scores, excl, np.array([1, 0]))
    assert torch.isinf(scores[0, 1]) and torch.isinf(scores[0, 2]) and torch.isinf(scores[1, 0])
    assert torch.isfinite(scores[0, 0]) and torch.isfinite(scores[1, 1])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_model_scores_are_an_error_naming_the_model_and_count(bad):
    scores = torch.ones(3, 4)
    scores[1, 2] = bad
    scores[2, 0] = bad
    with pytest.raises(NonFiniteScores, match=r"model 'x' produced 2 non-finite score\(s\).* in 2 of 3 rows"):
        rank(scores, 2, TieOrder.seeded(4), who="model 'x'")


def test_rank_batches_equals_one_rank_and_masks_by_row():
    gen = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 3, (10, 30), generator=gen).float()
    ties = TieOrder.seeded(30, seed=2)
    excl = sp.random(12, 30, density=0.2, format="csr", random_state=0)
    rows = np.array([3, 1, 11, 0, 5, 7, 2, 9, 8, 4])
    whole = rank(scores.clone(), 5, ties, exclude=excl, exclude_rows=rows)
    batched = rank_batches(lambda pos: scores[pos].clone(), rows, 5, ties, exclude=[excl], batch_size=3, show=False)
    assert np.array_equal(whole.item_idx, batched.item_idx)
    assert np.array_equal(whole.tied, batched.tied)


def test_rank_row_matches_top_k_on_ties_and_infinities():
    """The one-row numpy path (serving) must give exactly the batched torch ranking."""
    rng = np.random.default_rng(3)
    for trial in range(300):
        n = int(rng.integers(1, 60))
        scores = rng.integers(0, 4, n).astype(np.float32)          # many ties
        scores[rng.random(n) < 0.2] = -np.inf                       # excluded items
        k = int(rng.integers(1, n + 2))
        ties = TieOrder.seeded(n, seed=trial)
        idx, vals, tied = rank_row(scores.copy(), k, ties)
        ref_idx, ref_vals, ref_tied = top_k(torch.from_numpy(scores)[None, :], k, ties)
        np.testing.assert_array_equal(idx, ref_idx[0].numpy(), err_msg=f"trial {trial}")
        np.testing.assert_array_equal(vals, ref_vals[0].numpy())
        assert tied == bool(ref_tied[0]), trial
