"""BERT4Rec: the shared contract, and the next item of a periodic sequence ranks first (order matters)."""
from __future__ import annotations

import pytest
import torch
from contract import RecommenderContract
from sequence_checks import OPTIONS, assert_next_item_first, periodic_split

from towerrec.models.bert4rec import BERT4Rec

TINY = dict(embedding_dim=32, blocks=1, heads=2, inner_dim=32, max_len=10, dropout=0.0, attn_dropout=0.0,
            mask_ratio=0.2, last_mask_prob=1.0, epochs=40, batch_size=32, learning_rate=3e-3)


# the shared contract on its block data (random order within a user: order carries no signal there)
CONTRACT = dict(embedding_dim=32, blocks=1, heads=2, inner_dim=32, max_len=8, dropout=0.0, attn_dropout=0.0,
                mask_ratio=0.4, last_mask_prob=1.0, epochs=40, batch_size=32, learning_rate=1e-2)


class TestBERT4RecContract(RecommenderContract):
    def make_model(self) -> BERT4Rec:
        return BERT4Rec(**CONTRACT)


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
    return BERT4Rec(**TINY).fit(split.train, options=OPTIONS)   # all epochs: valid HitRate@1 saturates early


def test_next_item_ranks_first(periodic_model, periodic):
    split, cycle = periodic
    # masked-item training learns the toy cycle more slowly than next-item training; a lone item
    # followed by [MASK] is too far from its training chunks for similar_items to be checked
    assert_next_item_first(periodic_model, split, cycle, served_k=3, check_similar=False)
