"""Training losses (next-item losses of the sequence models, the in-batch sampled softmax of the
two towers) against hand-computed or brute-force values."""
from __future__ import annotations

import math

import pytest
import torch

from towerrec.models.losses import gbce, gbce_beta, shared_negative_softmax


def test_shared_negative_softmax_is_cross_entropy_over_positive_and_negatives():
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    expected = (-math.log(math.e**2 / (math.e**2 + math.e + 1)) - math.log(1 / 3)) / 2
    assert shared_negative_softmax(pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_accidental_hits_and_log_q():
    pos = torch.tensor([1.0])
    neg = torch.tensor([[5.0, 1.0]])
    # the first negative is the positive item itself: it leaves the softmax
    got = shared_negative_softmax(pos, neg, same_item=torch.tensor([[True, False]]))
    assert got.item() == pytest.approx(math.log(2.0), rel=1e-6)
    # logQ: a candidate drawn e times more often loses 1 from its logit
    got = shared_negative_softmax(pos, torch.tensor([[2.0]]), log_q_positive=torch.tensor([0.0]),
                                  log_q_negative=torch.tensor([1.0]))
    assert got.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_gbce():
    assert gbce_beta(99, 100, 0.75) == pytest.approx(1.0)          # all negatives: plain BCE
    assert gbce_beta(1, 101, 1.0) == pytest.approx(0.01)            # t = 1: beta = alpha
    assert gbce_beta(1, 101, 0.0) == pytest.approx(1.0)             # t = 0: plain BCE
    pos, neg = torch.tensor([0.5]), torch.tensor([[0.0, -1.0]])
    bce = -math.log(1 / (1 + math.exp(-0.5))) - math.log(0.5) - math.log(1 / (1 + math.exp(-1.0)))
    assert gbce(pos, neg, 1.0).item() == pytest.approx(bce, rel=1e-6)
    beta = 0.3
    expected = bce + (beta - 1) * -math.log(1 / (1 + math.exp(-0.5)))
    assert gbce(pos, neg, beta).item() == pytest.approx(expected, rel=1e-6)


def test_distinct_sampled_softmax_equals_softmax_over_every_copy():
    """`sampled_softmax` over distinct candidates (multiplicity as log count) equals the softmax
    over all C in-batch columns with the row's other copies of its positive removed."""
    from towerrec.models.losses import distinct_candidates, sampled_softmax

    g = torch.Generator().manual_seed(0)
    cands = torch.tensor([3, 1, 3, 0, 3, 1, 7, 0])       # 5 positives, then 3 extra negatives
    b, log_q = 5, torch.rand(8, generator=g)
    u, z = torch.randn(b, 4, generator=g), torch.randn(8, 4, generator=g)   # z: one vector per item
    full = u @ z[cands].T - log_q[cands][None, :]
    other_copy = (cands[None, :] == cands[:b, None]) & ~torch.eye(b, len(cands), dtype=torch.bool)
    want = torch.nn.functional.cross_entropy(full.masked_fill(other_copy, -torch.inf), torch.arange(b))
    distinct, column, log_count = distinct_candidates(cands)
    assert distinct.tolist() == [0, 1, 3, 7] and log_count.exp().tolist() == [2, 2, 3, 1]
    logits = u @ z[distinct].T + (log_count - log_q[distinct])[None, :]
    got = sampled_softmax(logits, column[:b], log_count)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    # an accidental column leaves that row's softmax
    acc = torch.tensor([-1, -1, -1, 3, -1])               # row 3 (item 0) must not see item 7
    logits = u @ z[distinct].T + (log_count - log_q[distinct])[None, :]
    got = sampled_softmax(logits, column[:b], log_count, acc)
    masked = full.masked_fill(other_copy, -torch.inf)
    masked[3, 6] = -torch.inf
    want = torch.nn.functional.cross_entropy(masked, torch.arange(b))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
