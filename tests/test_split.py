"""Splits: disjoint parts, no test pair in train, deterministic per seed, the right items held out."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from towerrec.data.interactions import Interactions
from towerrec.data.load import load_interactions
from towerrec.errors import TowerrecError
from towerrec.splits import SPLITS, leave_one_out, make_split, random_split


def pairs(inter: Interactions) -> set[tuple[int, int]]:
    return set(zip(inter.user_idx.tolist(), inter.item_idx.tolist()))


def rows(inter: Interactions) -> set[int]:
    return set(inter.row.tolist())


@pytest.fixture(scope="module")
def ml100k():
    from shared_data import shared_dataset

    inter, _ = load_interactions(shared_dataset("ml-100k") / "interactions.csv")
    return inter


@pytest.mark.parametrize("method", SPLITS)
def test_parts_are_disjoint_cover_everything_and_never_leak(ml100k, method):
    split = make_split(ml100k, method, seed=3)
    parts = [split.train, split.valid, split.test]
    if split.valid_history is not None:
        parts += [split.valid_history, split.test_history]
    all_rows = [rows(p) for p in parts]
    assert sum(len(r) for r in all_rows) == len(ml100k)  # nothing lost
    assert set().union(*all_rows) == set(range(len(ml100k)))
    assert not pairs(split.test) & pairs(split.train)
    assert not pairs(split.valid) & pairs(split.train)
    assert not pairs(split.test) & pairs(split.valid)
    assert split.train.item_map is ml100k.item_map and split.test.user_map is ml100k.user_map


@pytest.mark.parametrize("method", SPLITS)
def test_same_seed_same_split_other_seed_differs(ml100k, method):
    a, b = make_split(ml100k, method, seed=1), make_split(ml100k, method, seed=1)
    assert np.array_equal(a.test.row, b.test.row)
    if method in ("random", "cold-item", "cold-user"):
        assert not np.array_equal(a.test.row, make_split(ml100k, method, seed=2).test.row)


def test_random_split_sizes_follow_recbole_rule(ml100k):
    split = random_split(ml100k, seed=0)
    # RecBole 1.2.1 RS 8:1:1 on ml-100k gives 80,808 / 9,596 / 9,596 (peers/SUMMARY.md)
    assert (len(split.train), len(split.valid), len(split.test)) == (80808, 9596, 9596)
    counts = ml100k.user_counts()
    assert np.array_equal(split.test.user_counts(), np.floor(counts * 0.1).astype(int))


def test_leave_one_out_picks_the_last_and_second_to_last_item():
    frame = pd.DataFrame({
        "user_id": ["a"] * 4 + ["b"] * 3 + ["c"] * 2,
        "item_id": ["x", "y", "z", "w", "x", "y", "z", "x", "y"],
        "timestamp": [40, 10, 30, 20, 5, 5, 1, 1, 2],  # b has a tie: original row order breaks it
    })
    inter = Interactions.from_frame(frame, time_col="timestamp")
    split = leave_one_out(inter)
    test = dict(zip(split.test.to_frame().user_id, split.test.to_frame().item_id))
    valid = dict(zip(split.valid.to_frame().user_id, split.valid.to_frame().item_id))
    assert test == {"a": "x", "b": "y"} and valid == {"a": "z", "b": "x"}
    assert split.info["users_kept_in_train_only"] == 1  # c has 2 rows: train only, not evaluated
    assert "c" in set(split.train.to_frame().user_id)


def test_temporal_split_is_a_global_time_cut(ml100k):
    split = make_split(ml100k, "temporal")
    assert split.train.time.max() <= split.valid.time.min()
    assert split.valid.time.max() <= split.test.time.min()
    assert split.info["test_users_unseen_in_train"] > 0  # reported, not hidden


def test_user_temporal_split_keeps_each_users_latest_rows_for_test(ml100k):
    split = make_split(ml100k, "user-temporal")
    last_train = pd.Series(split.train.time).groupby(split.train.user_idx).max()
    first_test = pd.Series(split.test.time).groupby(split.test.user_idx).min()
    assert (last_train.loc[first_test.index] <= first_test).all()


def test_cold_item_split_holds_items_out_entirely(ml100k):
    split = make_split(ml100k, "cold-item", seed=0, ratios=(0.9, 0.05, 0.05))
    cold = set(split.test.item_idx.tolist()) | set(split.valid.item_idx.tolist())
    assert not cold & set(split.train.item_idx.tolist())
    assert sum(split.info["cold_items"].values()) == pytest.approx(0.1 * 1682, abs=2)


def test_cold_user_split_users_are_not_in_train_and_targets_are_latest(ml100k):
    split = make_split(ml100k, "cold-user", seed=0, ratios=(0.9, 0.05, 0.05))
    train_users = set(split.train.user_idx.tolist())
    assert not set(split.test.user_idx.tolist()) & train_users
    assert set(split.test.user_idx.tolist()) == set(split.test_history.user_idx.tolist())
    hist_last = pd.Series(split.test_history.time).groupby(split.test_history.user_idx).max()
    target_first = pd.Series(split.test.time).groupby(split.test.user_idx).min()
    assert (hist_last <= target_first.loc[hist_last.index]).all()


def test_time_splits_need_time_and_ratios_are_checked():
    inter = Interactions.from_frame(pd.DataFrame({"user_id": ["a", "a", "a"], "item_id": ["x", "y", "z"]}))
    with pytest.raises(TowerrecError, match="timestamp or position"):
        make_split(inter, "loo")
    with pytest.raises(TowerrecError, match="sum"):
        make_split(inter, "random", ratios=(0.5, 0.1, 0.1))
    with pytest.raises(TowerrecError, match="unknown split"):
        make_split(inter, "nope")
