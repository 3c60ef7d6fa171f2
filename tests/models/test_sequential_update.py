"""Sequence models' `update`: longer sequences, a grown item table that leaves old scores alone, the
windows that carry the new targets, and new items that start from their content."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from towerrec.data.delta import admit
from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.data.sequences import Sequences, periodic_interactions
from towerrec.models.base import FitOptions
from towerrec.models.bert4rec import BERT4Rec
from towerrec.models.gru4rec import GRU4Rec
from towerrec.models.sasrec import SASRec
from towerrec.models.sequential_update import append, new_windows

OPTIONS = FitOptions(seed=0, progress=False, threads=1)
TINY = dict(embedding_dim=16, max_len=8, epochs=3, batch_size=64, learning_rate=1e-2)


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return periodic_interactions(n_users=30, period=10, seed=0).to_frame()


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Old rows: each user's first 60% by time; new rows: the rest, plus two new users."""
    frame = frame.sort_values(["user_id", "timestamp"])
    rank = frame.groupby("user_id").cumcount()
    size = frame.groupby("user_id")["item_id"].transform("size")
    old, new = frame[rank < 0.6 * size], frame[rank >= 0.6 * size]
    extra = pd.DataFrame({"user_id": ["n1", "n1", "n2"], "item_id": ["i1", "i2", "i3"], "timestamp": [10, 20, 10]})
    return old, pd.concat([new, extra], ignore_index=True)


def test_append_equals_the_sequences_of_all_rows(log):
    old, new = _split(log)
    base = Interactions.from_frame(old, time_col="timestamp")
    delta = admit(base.user_map, base.item_map, Interactions.from_frame(new, time_col="timestamp"))
    got = append(Sequences.from_interactions(base), Sequences.from_interactions(delta.rows))
    everything = Interactions.from_frame(pd.concat([old, new]), user_map=delta.user_map, item_map=delta.item_map,
                                         time_col="timestamp")
    want = Sequences.from_interactions(everything)
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_array_equal(got.times, want.times)


@pytest.mark.parametrize("cls", [SASRec, GRU4Rec, BERT4Rec])
def test_growth_alone_keeps_old_scores(cls, log):
    """passes = 0: the item table grows (BERT4Rec's [MASK] row moves to the end), new users and items
    are known, and a user without new rows scores the old items exactly as before."""
    old, new = _split(log)
    model = cls(**TINY, **{"update.passes": 0}).fit(Interactions.from_frame(old, time_col="timestamp"), options=OPTIONS)
    before = model.score_users(np.arange(3))
    mask_row = model.module_.item_embedding.weight[-1].clone() if cls is BERT4Rec else None
    untouched = new[~new.user_id.isin(model.user_map_.ids[:3])]
    model.update(untouched.assign(item_id=untouched.item_id.replace({"i9": "i-new"})), options=OPTIONS)
    assert "i-new" in model.item_map_ and "n2" in model.user_map_
    after = model.score_users(np.arange(3))
    torch.testing.assert_close(after[:, :before.shape[1]], before)
    assert (after[:, before.shape[1]:] == 0).all()                  # the new item: a zero row, no evidence
    if mask_row is not None:
        torch.testing.assert_close(model.module_.item_embedding.weight[-1], mask_row)
        assert model.module_.mask_token == model.n_items + 1


def test_new_windows_train_only_the_new_targets(log):
    old, new = _split(log)
    model = SASRec(**TINY).fit(Interactions.from_frame(old, time_col="timestamp"), options=OPTIONS)
    delta = admit(model.user_map_, model.item_map_, Interactions.from_frame(new, time_col="timestamp"))
    sequences = append(model.sequences_, Sequences.from_interactions(delta.rows))
    windows = new_windows(model, sequences, model.sequences_.lengths(), np.sort(delta.touched_users))
    assert windows.n_targets == len(delta.rows) - int((delta.rows.user_counts()[delta.new_users] > 0).sum())
    # every target of a window is one of its user's new items (tokens beyond the old length)
    new_tokens = {(u, t) for u, t in zip(delta.rows.user_idx, delta.rows.item_idx + 1)}
    touched = np.sort(delta.touched_users)
    for w in range(len(windows)):
        user = touched[windows.user_idx[w]]
        assert all((user, t) in new_tokens for t in windows.targets[w][windows.targets[w] > 0])


def test_new_item_starts_from_its_content(log):
    """SASRec with item features: a new item's vector right after a growth-only update is its
    content vector (its id row is zero), so items of the same category score alike."""
    old, new = _split(log)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(10)] + ["i-new"],
                          "kind": [f"k{i % 2}" for i in range(10)] + ["k1"]})
    base = Interactions.from_frame(old, time_col="timestamp")
    table = FeatureTable.from_frame(items, base.item_map, id_col="item_id")
    model = SASRec(**TINY, item_features=True, **{"update.passes": 0}).fit(base, item_features=table, options=OPTIONS)
    model.update(pd.DataFrame({"user_id": ["n1"], "item_id": ["i-new"], "timestamp": [5]}), items=items,
                 options=OPTIONS)
    module = model.module_
    new_row = module.item_table()[model.item_map_.index(["i-new"])[0] + 1]
    content = module.content()[model.item_map_.index(["i-new"])[0] + 1]
    torch.testing.assert_close(new_row, content)
    assert module.item_embedding.weight[model.n_items].abs().sum() == 0
    assert torch.count_nonzero(content) > 0
