"""Seeded, deterministic splits into train / valid / test that share one id mapping.

Policy for short histories (EVALUATION.md): a user with fewer interactions than the split needs
(fewer than 3 for the per-user splits) stays whole in train and is not evaluated; `Split.info`
counts them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from towerrec.data.dataset import Dataset
from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError

SPLITS = ("random", "user-temporal", "temporal", "loo", "cold-item", "cold-user")


@dataclass(frozen=True, eq=False)
class Split:
    """Three disjoint parts of one log. For `cold-user`, `valid_history`/`test_history` hold the
    input histories of held-out users (they are not in train). A split made from a `Dataset`
    carries its feature tables, so `model.fit(split)` finds them."""

    train: Interactions
    valid: Interactions
    test: Interactions
    method: str
    seed: int
    info: dict = field(default_factory=dict)
    valid_history: Interactions | None = None
    test_history: Interactions | None = None
    item_features: FeatureTable | None = None
    user_features: FeatureTable | None = None

    def __repr__(self) -> str:
        sizes = ", ".join(f"{part} {len(getattr(self, part)):,}" for part in ("train", "valid", "test"))
        return f"Split({self.method!r}, seed {self.seed}: {sizes} rows)"


def _rank_within_user(user_idx: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by `order` (grouped by user): each row's 0-based rank and its user's count."""
    users = user_idx[order]
    counts = np.bincount(user_idx)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank_sorted = np.arange(len(order)) - starts[users]
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = rank_sorted
    return rank, counts[user_idx]


def _cut_counts(n: np.ndarray, ratios: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Valid and test sizes per user (RecBole's rule: floor, but at least 1 each when n >= 3)."""
    n_valid = np.floor(n * ratios[1]).astype(np.int64)
    n_test = np.floor(n * ratios[2]).astype(np.int64)
    if ratios[1] > 0:
        n_valid = np.maximum(n_valid, 1)
    if ratios[2] > 0:
        n_test = np.maximum(n_test, 1)
    short = n < 3
    n_valid[short] = 0
    n_test[short] = 0
    return n_valid, n_test


def _per_user_cut(inter: Interactions, order: np.ndarray, ratios: tuple[float, float, float],
                  method: str, seed: int) -> Split:
    rank, n = _rank_within_user(inter.user_idx, order)
    n_valid, n_test = _cut_counts(n, ratios)
    part = np.zeros(len(inter), dtype=np.int8)
    part[rank >= n - n_test - n_valid] = 1
    part[rank >= n - n_test] = 2
    counts = inter.user_counts()
    return _make(inter, part, method, seed, {"users_kept_in_train_only": int(((counts > 0) & (counts < 3)).sum())})


def _make(inter: Interactions, part: np.ndarray, method: str, seed: int, info: dict) -> Split:
    split = Split(inter.subset(part == 0), inter.subset(part == 1), inter.subset(part == 2), method, seed, info)
    info.update({
        "rows": {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)},
        "users_evaluated": {"valid": int(len(split.valid.active_users())),
                            "test": int(len(split.test.active_users()))},
    })
    return split


def _check_ratios(ratios: tuple[float, ...]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise TowerrecError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    return tuple(float(r) for r in ratios)  # type: ignore[return-value]


def random_split(inter: Interactions, ratios: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Per user: shuffle with the seed, then cut train/valid/test by `ratios` (RecBole's RS + RO)."""
    ratios = _check_ratios(ratios)
    # one int64 sort key: user in the high bits, a seeded random draw in the low 32 bits
    noise = np.random.default_rng(seed).integers(0, 2**32, len(inter), dtype=np.uint64).view(np.int64)
    order = np.argsort((inter.user_idx << 32) | noise)
    return _per_user_cut(inter, order, ratios, "random", seed)


def _require_time(inter: Interactions, method: str) -> None:
    if inter.time is None:
        raise TowerrecError(f"the {method!r} split needs a timestamp or position column, and this data has none")


def user_temporal_split(inter: Interactions, ratios: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Per user: sort by time (ties by original row), cut by `ratios`, latest to test."""
    _require_time(inter, "user-temporal")
    return _per_user_cut(inter, inter.order(), _check_ratios(ratios), "user-temporal", seed)


def leave_one_out(inter: Interactions, seed: int = 0) -> Split:
    """Per user: last interaction to test, second-to-last to valid, the rest to train."""
    _require_time(inter, "loo")
    order = inter.order()
    rank, n = _rank_within_user(inter.user_idx, order)
    part = np.zeros(len(inter), dtype=np.int8)
    long_enough = n >= 3
    part[long_enough & (rank == n - 2)] = 1
    part[long_enough & (rank == n - 1)] = 2
    counts = inter.user_counts()
    return _make(inter, part, "loo", seed, {"users_kept_in_train_only": int(((counts > 0) & (counts < 3)).sum())})


def temporal_split(inter: Interactions, ratios: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Global cut: the earliest 80% of rows to train, next 10% valid, last 10% test (by time, then row)."""
    _require_time(inter, "temporal")
    if inter.time_kind == "position":
        raise TowerrecError("a global temporal cut needs timestamps; 'position' only orders each user's rows")
    ratios = _check_ratios(ratios)
    order = np.lexsort([inter.row, inter.time])
    cut1 = int(round(len(inter) * ratios[0]))
    cut2 = int(round(len(inter) * (ratios[0] + ratios[1])))
    part = np.zeros(len(inter), dtype=np.int8)
    part[order[cut1:cut2]] = 1
    part[order[cut2:]] = 2
    train_users = np.bincount(inter.user_idx[part == 0], minlength=inter.n_users) > 0
    train_items = np.bincount(inter.item_idx[part == 0], minlength=inter.n_items) > 0
    info = {
        "test_users_unseen_in_train": int(len(np.setdiff1d(inter.user_idx[part == 2], np.flatnonzero(train_users)))),
        "test_items_unseen_in_train": int(len(np.setdiff1d(inter.item_idx[part == 2], np.flatnonzero(train_items)))),
    }
    return _make(inter, part, "temporal", seed, info)


def cold_item_split(inter: Interactions, fraction: float = 0.1, seed: int = 0) -> Split:
    """Hold out `fraction` of the items with interactions entirely; their rows go half to valid,
    half to test (by held-out item). Only content-aware item towers can score them."""
    rng = np.random.default_rng(seed)
    items = np.flatnonzero(inter.item_counts())
    held = rng.permutation(items)[: max(2, int(round(len(items) * fraction)))]
    valid_items, test_items = held[: len(held) // 2], held[len(held) // 2:]
    part = np.zeros(len(inter), dtype=np.int8)
    part[np.isin(inter.item_idx, valid_items)] = 1
    part[np.isin(inter.item_idx, test_items)] = 2
    return _make(inter, part, "cold-item", seed, {"cold_items": {"valid": len(valid_items), "test": len(test_items)}})


def cold_user_split(inter: Interactions, fraction: float = 0.1, seed: int = 0) -> Split:
    """Hold out `fraction` of users (half for valid, half for test). For each, the earliest 80% of
    their rows are an input history and the latest 20% the targets ("strong generalisation")."""
    rng = np.random.default_rng(seed)
    counts = inter.user_counts()
    users = np.flatnonzero(counts >= 2)
    held = rng.permutation(users)[: max(2, int(round(len(users) * fraction)))]
    valid_users, test_users = held[: len(held) // 2], held[len(held) // 2:]
    if inter.time is None:
        key = np.random.default_rng(seed + 1).random(len(inter))
        order = np.lexsort([key, inter.user_idx])
    else:
        order = inter.order()
    rank, n = _rank_within_user(inter.user_idx, order)
    target = rank >= n - np.maximum(1, np.floor(n * 0.2)).astype(np.int64)
    in_valid = np.isin(inter.user_idx, valid_users)
    in_test = np.isin(inter.user_idx, test_users)
    part = np.zeros(len(inter), dtype=np.int8)
    part[in_valid] = 3
    part[in_valid & target] = 1
    part[in_test] = 4
    part[in_test & target] = 2
    split = _make(inter, np.where(part >= 3, 5, part), "cold-user", seed,
                  {"cold_users": {"valid": len(valid_users), "test": len(test_users)}})
    return Split(split.train, split.valid, split.test, split.method, seed, split.info,
                 valid_history=inter.subset(part == 3), test_history=inter.subset(part == 4))


def split(data: Dataset | Interactions, method: str = "random", *, seed: int = 0,
          ratios: tuple[float, ...] = (0.8, 0.1, 0.1), windows: int = 5, start: float = 0.5) -> Split:
    """Split a dataset (or a log) by `method` (one of `SPLITS`); a Dataset's feature tables ride along.

    `method="rolling"` gives a `towerrec.rolling_windows.RollingSplit` instead: `windows` time windows from
    the time quantile `start` on, for `towerrec.rolling.run_rolling` (refit against update).

    >>> split = tr.split(tr.load_dataset("ml-100k"), "random", seed=0)     # doctest: +SKIP
    """
    if method == "rolling":
        from towerrec.rolling_windows import rolling_split

        return rolling_split(data, windows=windows, start=start, seed=seed)   # type: ignore[return-value]
    if isinstance(data, Dataset):
        out = make_split(data.interactions, method, seed=seed, ratios=ratios)
        return dataclasses.replace(out, item_features=data.item_features, user_features=data.user_features)
    if not isinstance(data, Interactions):
        raise TowerrecError(f"split needs a Dataset or Interactions, got {type(data).__name__}")
    return make_split(data, method, seed=seed, ratios=ratios)


def make_split(inter: Interactions, method: str = "random", *, seed: int = 0,
               ratios: tuple[float, ...] = (0.8, 0.1, 0.1)) -> Split:
    """Dispatch by name (the CLI's `--split`)."""
    if method == "random":
        return random_split(inter, ratios, seed)
    if method == "user-temporal":
        return user_temporal_split(inter, ratios, seed)
    if method == "temporal":
        return temporal_split(inter, ratios, seed)
    if method == "loo":
        return leave_one_out(inter, seed)
    if method == "cold-item":
        return cold_item_split(inter, 1 - ratios[0], seed)
    if method == "cold-user":
        return cold_user_split(inter, 1 - ratios[0], seed)
    if method == "rolling":
        raise TowerrecError("'rolling' is not a train/valid/test split: use towerrec.rolling.rolling_split "
                            "(tr.split(data, 'rolling')) and run_rolling, or `towerrec evaluate --split rolling`")
    raise TowerrecError(f"unknown split {method!r}; choose one of {', '.join(SPLITS)}")
