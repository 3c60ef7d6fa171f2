"""NextItNet: the shared contract, and the next item of a periodic sequence ranks first (order matters)."""
from __future__ import annotations

import pytest
import torch
from contract import RecommenderContract
from sequence_checks import OPTIONS, assert_next_item_first, periodic_split

from towerrec.models.nextitnet import NextItNet

TINY = dict(embedding_dim=16, blocks=1, dilations=(1, 2), max_len=10, epochs=8, batch_size=64,
            learning_rate=1e-2, patience=8)


# the shared contract on its block data (random order within a user: order carries no signal there)
CONTRACT = dict(embedding_dim=16, blocks=1, dilations=(1,), max_len=8, dropout=0.5, epochs=40,
                batch_size=32, learning_rate=3e-3)


class TestNextItNetContract(RecommenderContract):
    def make_model(self) -> NextItNet:
        return NextItNet(**CONTRACT)


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
    return NextItNet(**TINY).fit(split.train, options=OPTIONS)   # all epochs: valid HitRate@1 saturates early


def test_next_item_ranks_first(periodic_model, periodic):
    split, cycle = periodic
    assert_next_item_first(periodic_model, split, cycle)
