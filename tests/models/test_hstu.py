"""HSTU (HSTU next-item model): the next item of a periodic sequence ranks first, order matters,
save/load and seeding are exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sequence_checks import OPTIONS, assert_next_item_first, assert_save_load_same_scores, periodic_split

from towerrec.models import MODELS
from towerrec.models.hstu import HSTU

TINY = dict(embedding_dim=16, blocks=1, heads=1, max_len=10, dropout=0.1, epochs=8, batch_size=64, learning_rate=1e-2, patience=8)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny ops: threading only costs (2-core CI boxes)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def periodic():
    return periodic_split()


@pytest.fixture(scope="module")
def fitted(periodic):
    split, _ = periodic
    torch.set_num_threads(1)
    return HSTU(**TINY).fit(split.train, valid=split.valid, options=OPTIONS)


def test_registered():
    assert MODELS["hstu"] is HSTU


def test_next_item_ranks_first(fitted, periodic):
    split, cycle = periodic
    assert_next_item_first(fitted, split, cycle)


def test_save_load_and_seed(fitted, periodic, tmp_path):
    split, _ = periodic
    assert_save_load_same_scores(fitted, tmp_path)
    again = HSTU(**TINY).fit(split.train, valid=split.valid, options=OPTIONS)
    assert torch.equal(again.score_users(np.arange(6)), fitted.score_users(np.arange(6)))
