"""GRU4Rec: the shared contract, and the next item of a periodic sequence ranks first (order matters)."""
from __future__ import annotations

import pytest
import torch
from contract import RecommenderContract
from sequence_checks import OPTIONS, assert_next_item_first, periodic_split

from towerrec.models.gru4rec import GRU4Rec

TINY = dict(embedding_dim=16, hidden_dim=32, max_len=10, dropout=0.0, epochs=8, batch_size=64,
            learning_rate=1e-2, patience=8)


# the shared contract on its block data (random order within a user: order carries no signal there)
CONTRACT = dict(embedding_dim=16, hidden_dim=32, max_len=8, dropout=0.5, epochs=30, batch_size=64,
                learning_rate=1e-2)


class TestGRU4RecContract(RecommenderContract):
    def make_model(self) -> GRU4Rec:
        return GRU4Rec(**CONTRACT)


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
    return GRU4Rec(**TINY).fit(split.train, options=OPTIONS)   # all epochs: valid HitRate@1 saturates early


def test_next_item_ranks_first(periodic_model, periodic):
    split, cycle = periodic
    assert_next_item_first(periodic_model, split, cycle)
