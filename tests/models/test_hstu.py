"""HSTU: the shared contract, the next item of a periodic sequence ranks first (order matters), and
timestamps survive save/load."""
from __future__ import annotations

import pytest
import torch
from contract import RecommenderContract
from sequence_checks import OPTIONS, assert_next_item_first, assert_save_load_same_scores, periodic_split

from towerrec.models.hstu import HSTU

TINY = dict(embedding_dim=16, blocks=1, heads=1, max_len=10, dropout=0.1, epochs=8, batch_size=64,
            learning_rate=1e-2, patience=8)


# the shared contract on its block data (random order within a user: order carries no signal there)
CONTRACT = dict(embedding_dim=16, blocks=1, heads=1, max_len=8, dropout=0.3, epochs=30, batch_size=64,
                learning_rate=1e-2)


class TestHSTUContract(RecommenderContract):
    def make_model(self) -> HSTU:
        return HSTU(**CONTRACT)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny ops: threading only costs (2-core CI boxes)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def periodic():
    return periodic_split()


@pytest.fixture(scope="module")
def periodic_model(periodic):
    split, _ = periodic
    return HSTU(**TINY).fit(split.train, options=OPTIONS)   # all epochs: valid HitRate@1 saturates early


def test_next_item_ranks_first(periodic_model, periodic):
    split, cycle = periodic
    assert_next_item_first(periodic_model, split, cycle)


def test_save_load_keeps_times(periodic_model, tmp_path):
    assert periodic_model.sequences_.times is not None           # the time bias reads them
    assert_save_load_same_scores(periodic_model, tmp_path)
