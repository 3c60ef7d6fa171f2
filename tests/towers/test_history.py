import numpy as np
import scipy.sparse as sp
import torch

from towerrec.towers.history import HistoryPooling, history_batch


def _csr():
    # user 0: items 1, 2, 3; user 1: no items; user 2: item 3
    return sp.csr_matrix((np.ones(4), ([0, 0, 0, 2], [1, 2, 3, 3])), shape=(3, 5))


def _tensors(h):
    return {k: torch.from_numpy(v) for k, v in h.items()}


def test_history_batch_excludes_target_and_uniques():
    m = _csr()
    h = history_batch(m.indptr, m.indices, np.array([0, 1, 2, 0]), n_items=5, exclude=np.array([2, 0, 4, 9]))
    assert h["items"].tolist() == [1, 2, 3]
    assert h["offsets"].tolist() == [0, 3, 3, 4]
    flat = h["items"][h["inverse"]]
    assert flat.tolist() == [1, 2, 3, 3, 1, 2, 3]
    assert h["weights"].tolist() == [1, 0, 1, 1, 1, 1, 1]    # target 2 left out of row 0 only


def test_history_dropout_is_seeded():
    m = _csr()
    a = history_batch(m.indptr, m.indices, np.array([0] * 50), n_items=5, keep_prob=0.5, rng=np.random.default_rng(1))
    b = history_batch(m.indptr, m.indices, np.array([0] * 50), n_items=5, keep_prob=0.5, rng=np.random.default_rng(1))
    assert np.array_equal(a["weights"], b["weights"])
    kept = a["weights"] > 0
    assert 0.3 < kept.mean() < 0.7


def test_kept_entries_weigh_one_over_their_keep_probability():
    """Inverted dropout, per row's keep probability: a sum pooling keeps its expected size."""
    m = _csr()
    h = history_batch(m.indptr, m.indices, np.array([0] * 50 + [2] * 50), n_items=5,
                      keep_prob=np.array([0.5] * 50 + [0.25] * 50), rng=np.random.default_rng(1))
    row = np.repeat(np.arange(100), np.diff(np.append(h["offsets"], len(h["weights"]))))
    kept = h["weights"] > 0
    assert np.allclose(h["weights"][kept & (row < 50)], 2.0) and np.allclose(h["weights"][kept & (row >= 50)], 4.0)
    assert kept[row < 50].any() and kept[row >= 50].any()


def test_mean_pooling_masks_and_empty_rows():
    m = _csr()
    h = _tensors(history_batch(m.indptr, m.indices, np.array([0, 1, 2]), n_items=5, exclude=np.array([3, -1, -1])))
    reps = torch.randn(len(h["items"]), 4)
    out = HistoryPooling(4, "mean")(reps, h["inverse"], h["offsets"], h["weights"])
    assert out.shape == (3, 4)
    assert torch.allclose(out[0], reps[:2].mean(0), atol=1e-6)     # items 1, 2 (3 excluded)
    assert torch.all(out[1] == 0)
    assert torch.allclose(out[2], reps[2], atol=1e-6)


def test_attention_pooling_is_a_convex_combination_and_ignores_masked():
    m = _csr()
    h = _tensors(history_batch(m.indptr, m.indices, np.array([0, 1]), n_items=5, exclude=np.array([3, -1])))
    reps = torch.randn(len(h["items"]), 4)
    pool = HistoryPooling(4, "attention")
    out = pool(reps, h["inverse"], h["offsets"], h["weights"])
    assert torch.all(out[1] == 0)
    reps2 = reps.clone()
    reps2[2] += 100.0                                  # the masked item must not matter
    out2 = pool(reps2, h["inverse"], h["offsets"], h["weights"])
    assert torch.allclose(out[0], out2[0], atol=1e-5)
    lo, hi = reps[:2].min(0).values, reps[:2].max(0).values
    assert torch.all(out[0] >= lo - 1e-5) and torch.all(out[0] <= hi + 1e-5)


def test_pooling_gradients_flow():
    m = _csr()
    h = _tensors(history_batch(m.indptr, m.indices, np.array([0, 2]), n_items=5))
    reps = torch.randn(len(h["items"]), 4, requires_grad=True)
    HistoryPooling(4, "attention")(reps, h["inverse"], h["offsets"], h["weights"]).sum().backward()
    assert reps.grad is not None and reps.grad.abs().sum() > 0


def test_mean_leaving_out_equals_per_row_exclusion():
    """Training batches pool each distinct user once and subtract the row's target: the same
    vectors (and gradients) as pooling every row's history with its target left out."""
    rng = np.random.default_rng(0)
    dense = (np.random.default_rng(1).random((6, 12)) < 0.5).astype(np.float32)
    dense[5] = 0
    dense[5, 4] = 1                                 # a user with one item: an empty history once left out
    m = sp.csr_matrix(dense)
    users, items = m.nonzero()
    rows = rng.permutation(len(users))[:15]
    u, i = users[rows], items[rows]
    pool = HistoryPooling(3, "mean")
    reps = torch.randn(12, 3, requires_grad=True)
    explicit = _tensors(history_batch(m.indptr, m.indices, u, n_items=12, exclude=i))
    want = pool(reps[explicit["items"]], explicit["inverse"], explicit["offsets"], explicit["weights"])
    distinct, row_user = np.unique(u, return_inverse=True)
    shared = _tensors(history_batch(m.indptr, m.indices, distinct, n_items=12))
    left_out = torch.searchsorted(shared["items"], torch.from_numpy(i))
    got = pool.mean_leaving_out(reps[shared["items"]], shared["inverse"], shared["offsets"],
                                torch.from_numpy(row_user), left_out)
    torch.testing.assert_close(got, want)
    (g_want,) = torch.autograd.grad(want.square().sum(), reps)
    (g_got,) = torch.autograd.grad(got.square().sum(), reps)
    torch.testing.assert_close(g_got, g_want)
    if 5 in u:
        assert torch.all(got[torch.from_numpy(u == 5)] == 0)   # nothing left to pool: zeros, as before
