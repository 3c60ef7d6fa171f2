"""Sequence batching: order by time (ties by row), left padding with token = item + 1, and
training windows that cover every (user, position >= 1) target exactly once."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from towerrec.data.interactions import Interactions
from towerrec.data.sequences import PAD, Sequences


def _inter(rows: list[tuple[str, str, int]]) -> Interactions:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Interactions.from_frame(frame, time_col="timestamp")


def test_from_interactions_orders_by_time_then_row_and_shifts_items():
    # rows deliberately out of time order; u1 has a tie at t=5 (row order decides: b before c)
    inter = _inter([("u1", "a", 9), ("u1", "b", 5), ("u2", "a", 1), ("u1", "c", 5)])
    seqs = Sequences.from_interactions(inter)
    items = {name: int(i) + 1 for i, name in enumerate(inter.item_map.ids)}
    u1, u2 = inter.user_map.index(["u1", "u2"])
    got = seqs.tokens[seqs.indptr[u1]:seqs.indptr[u1 + 1]].tolist()
    assert got == [items["b"], items["c"], items["a"]]
    assert seqs.tokens[seqs.indptr[u2]:seqs.indptr[u2 + 1]].tolist() == [items["a"]]
    assert seqs.times[seqs.indptr[u1]:seqs.indptr[u1 + 1]].tolist() == [5.0, 5.0, 9.0]
    assert PAD == 0 and seqs.tokens.min() >= 1


def test_padded_keeps_newest_items_on_the_right():
    seqs = Sequences.from_lists([[3, 1, 4, 1, 5], [9], []])
    out = seqs.padded(np.array([0, 1, 2]), max_len=3)
    assert out.tolist() == [[5, 2, 6], [0, 0, 10], [0, 0, 0]]
    assert seqs.padded(np.array([0]), max_len=7).tolist() == [[0, 0, 4, 2, 5, 2, 6]]


@pytest.mark.parametrize("max_len,stride", [(4, 4), (4, 2), (4, 1), (3, None), (10, 3)])
def test_windows_train_every_target_once_with_the_right_context(max_len, stride):
    rng = np.random.default_rng(0)
    lists = [rng.integers(0, 20, size=n).tolist() for n in (0, 1, 2, 5, 9, 13)]
    windows = Sequences.from_lists(lists).windows(max_len, stride)
    s = max_len if stride is None else stride
    trained = []
    for w in range(len(windows)):
        u = int(windows.user_idx[w])
        rank = int(np.flatnonzero(np.flatnonzero(windows.user_idx == u) == w)[0])   # 0 = newest window
        for j in np.flatnonzero(windows.targets[w]):
            t = len(lists[u]) - 1 - (max_len - 1 - j) - rank * s                     # index in the user
            ctx = [int(x) - 1 for x in windows.inputs[w, : j + 1] if x]
            assert windows.targets[w, j] - 1 == lists[u][t]
            assert ctx == lists[u][t - len(ctx):t]               # the items right before t, oldest first
            assert len(ctx) >= min(t, max_len - s + 1)           # all history, or enough of it
            trained.append((u, t))
    expected = [(u, t) for u, items in enumerate(lists) for t in range(1, len(items))]
    assert sorted(trained) == expected                           # every target exactly once
    assert windows.n_targets == len(expected)


def test_stride_one_is_every_prefix():
    seqs = Sequences.from_lists([list(range(8))])
    windows = seqs.windows(3, 1)
    ctx = sorted(len([x for x in windows.inputs[w, : j + 1] if x])
                 for w in range(len(windows)) for j in np.flatnonzero(windows.targets[w]))
    assert ctx == [1, 2, 3, 3, 3, 3, 3]        # RecBole's prefixes capped at max_len


def test_windows_are_vectorised_on_a_large_log():
    rng = np.random.default_rng(1)
    n_users = 20_000
    lengths = rng.integers(0, 120, n_users)
    seqs = Sequences(rng.integers(1, 5000, lengths.sum()), np.concatenate([[0], np.cumsum(lengths)]))
    windows = seqs.windows(50, 25)
    assert windows.n_targets == int(np.maximum(lengths - 1, 0).sum())


def test_bad_stride_is_an_error():
    with pytest.raises(ValueError, match="stride"):
        Sequences.from_lists([[1, 2]]).windows(4, 5)
