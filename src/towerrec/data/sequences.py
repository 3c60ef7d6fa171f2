"""Ordered item sequences per user, and the padded tensors sequence models train and score on.

Conventions shared by every sequence model (SASRec, GRU4Rec, NextItNet, ...):

- item index `i` is stored as token `i + 1`; token 0 is padding;
- a sequence is oldest first; padding goes on the left, so the newest item is always in the
  last column and "the user's state" is the last position of the encoder output;
- ordering comes from `Interactions.order()` (user, then time or `position`, ties by original row).

Training on "every prefix" (RecBole's data augmentation: one sample per (user, position) with the
previous <= L items as input) is replaced by one window of L consecutive items with a target at
every position, which a causal model computes in a single pass: the same targets, ~L times less work.
A user longer than L is cut into windows that end at the newest item and step back by `stride`;
overlapping targets are trained only once, in the window where they have the most context, so each
target is trained exactly once per epoch with at least `L - stride + 1` items of context (all of
them, up to L, when `stride == 1`, which is exactly RecBole's "every prefix").

`Sequences.chunks` cuts plain item windows for masked-item training (BERT4Rec), and
`periodic_interactions` makes a synthetic log whose next items are known (tests, examples).

Everything is vectorised with numpy index arithmetic: no Python loop per user or interaction.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from towerrec.data.interactions import Interactions

PAD = 0  # token of padding; item index i is token i + 1


@dataclass(frozen=True, eq=False)
class Sequences:
    """Every user's items in time order as one flat array plus CSR-style offsets.

    `tokens` [n] holds item index + 1, grouped by user (user u owns `tokens[indptr[u]:indptr[u+1]]`),
    oldest first. `times` [n] (float64) is aligned with `tokens` when the log has a time column.

    >>> seqs = Sequences.from_lists([[2, 0, 1], [1]])
    >>> seqs.padded(np.array([0, 1]), max_len=2).tolist()
    [[1, 2], [0, 2]]
    """

    tokens: np.ndarray
    indptr: np.ndarray
    times: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def lengths(self) -> np.ndarray:
        """Items per user, shape [n_users]."""
        return np.diff(self.indptr)

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_interactions(cls, inter: Interactions) -> "Sequences":
        """One sequence per user index of `inter.user_map` (empty for users without rows)."""
        order = inter.order()
        counts = np.bincount(inter.user_idx, minlength=inter.n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        times = None if inter.time is None else inter.time[order].astype(np.float64)
        return cls(inter.item_idx[order].astype(np.int64) + 1, indptr, times)

    @classmethod
    def from_lists(cls, histories: Sequence[Sequence[int] | np.ndarray]) -> "Sequences":
        """From ordered lists of item indices (oldest first), e.g. a served user's history."""
        arrays = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = np.concatenate(arrays) + 1 if arrays and indptr[-1] else np.zeros(0, dtype=np.int64)
        return cls(tokens, indptr)

    def take(self, user_idx: np.ndarray) -> "Sequences":
        """The sequences of `user_idx`, in that order (row b of the result is user user_idx[b])."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        starts, lengths = self.indptr[user_idx], self.lengths()[user_idx]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        pos = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return Sequences(self.tokens[pos], indptr, None if self.times is None else self.times[pos])

    def to_csr(self, n_items: int) -> sp.csr_matrix:
        """Users x items [n_users, n_items] with 1 where the user has the item (order dropped)."""
        m = sp.csr_matrix((np.ones(len(self.tokens), dtype=np.float32), self.tokens - 1, self.indptr),
                          shape=(self.n_users, n_items))
        m.sum_duplicates()
        m.data[:] = 1
        return m

    def item_lists(self) -> list[np.ndarray]:
        """Each user's item indices, oldest first (a Python list: for display and small batches)."""
        return np.split(self.tokens - 1, self.indptr[1:-1])

    # ---- tensors for scoring ---------------------------------------------------------------
    def padded(self, user_idx: np.ndarray, max_len: int) -> np.ndarray:
        """The newest `max_len` tokens of each user, left-padded with 0: [len(user_idx), max_len]."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        end = self.indptr[user_idx + 1]
        length = np.minimum(end - self.indptr[user_idx], max_len)
        # column j of a row holds the token at end - max_len + j when that is inside the user
        pos = end[:, None] - max_len + np.arange(max_len)[None, :]
        valid = np.arange(max_len)[None, :] >= (max_len - length)[:, None]
        out = np.where(valid, self.tokens[np.where(valid, pos, 0)] if len(self.tokens) else 0, PAD)
        return out.astype(np.int64)

    def padded_times(self, user_idx: np.ndarray, max_len: int) -> np.ndarray:
        """Times aligned with `padded` (0 where padded): [len(user_idx), max_len] float64."""
        if self.times is None:
            raise ValueError("these sequences have no time column")
        user_idx = np.asarray(user_idx, dtype=np.int64)
        end = self.indptr[user_idx + 1]
        length = np.minimum(end - self.indptr[user_idx], max_len)
        pos = end[:, None] - max_len + np.arange(max_len)[None, :]
        valid = np.arange(max_len)[None, :] >= (max_len - length)[:, None]
        return np.where(valid, self.times[np.where(valid, pos, 0)] if len(self.times) else 0.0, 0.0)

    # ---- training windows ------------------------------------------------------------------
    def windows(self, max_len: int, stride: int | None = None) -> "Windows":
        """Next-item training windows covering every (user, position >= 1) target exactly once.

        Window `w` of a user with n items ends at target index `e = n - 1 - w * stride` (0-based
        index into the user's items); its input is items `e - L .. e - 1`, its targets items
        `e - L + 1 .. e`. Targets already trained by a later window (with less context) are
        dropped there: window w keeps targets in (e - stride, e], the earliest window keeps all.
        """
        L = int(max_len)
        s = L if stride is None else int(stride)
        if not 1 <= s <= L:
            raise ValueError(f"stride must be in [1, max_len={L}], got {s}")
        n = self.lengths()
        n_targets = np.maximum(n - 1, 0)
        n_windows = np.where(n_targets > 0, 1 + np.maximum(0, -(-(n_targets - L) // s)), 0)
        user = np.repeat(np.arange(self.n_users), n_windows)
        first = np.concatenate([[0], np.cumsum(n_windows)[:-1]])
        w = np.arange(len(user)) - first[user]                      # 0 = newest window
        end = n[user] - 1 - w * s                                    # last target index, >= 1
        earliest = w == n_windows[user] - 1
        col = np.arange(L)[None, :]
        target_idx = end[:, None] - (L - 1) + col                     # [W, L] index into the user
        keep_from = np.where(earliest, 1, end - s + 1)               # first target trained
        has_target = target_idx >= keep_from[:, None]
        has_input = target_idx - 1 >= 0
        base = self.indptr[user][:, None]
        tokens = self.tokens if len(self.tokens) else np.zeros(1, dtype=np.int64)
        inputs = np.where(has_input, tokens[np.where(has_input, base + target_idx - 1, 0)], PAD)
        targets = np.where(has_target, tokens[np.where(has_target, base + target_idx, 0)], PAD)
        times = None
        if self.times is not None:
            t = self.times if len(self.times) else np.zeros(1)
            times = np.where(has_input, t[np.where(has_input, base + target_idx - 1, 0)], 0.0)
        return Windows(inputs.astype(np.int64), targets.astype(np.int64), user.astype(np.int64), times)

    def chunks(self, max_len: int, stride: int | None = None) -> "Windows":
        """Consecutive items of each user with >= 2 items, for masked-item training (BERT4Rec):
        chunk w holds items `e - L + 1 .. e` with `e = n - 1 - w * stride`, left-padded, until the
        first item is covered. `inputs` and `targets` are the same [W, L] array (the model masks)."""
        L = int(max_len)
        s = L if stride is None else int(stride)
        if not 1 <= s <= L:
            raise ValueError(f"stride must be in [1, max_len={L}], got {s}")
        n = self.lengths()
        n_chunks = np.where(n >= 2, 1 + np.maximum(0, -(-(n - L) // s)), 0)
        user = np.repeat(np.arange(self.n_users), n_chunks)
        first = np.concatenate([[0], np.cumsum(n_chunks)[:-1]])
        w = np.arange(len(user)) - first[user]
        idx = (n[user] - 1 - w * s)[:, None] - (L - 1) + np.arange(L)[None, :]
        tokens = self.tokens if len(self.tokens) else np.zeros(1, dtype=np.int64)
        out = np.where(idx >= 0, tokens[np.where(idx >= 0, self.indptr[user][:, None] + idx, 0)], PAD)
        out = out.astype(np.int64)
        return Windows(out, out, user.astype(np.int64), None)


@dataclass(frozen=True, eq=False)
class Windows:
    """Training windows: `inputs` and `targets` [W, L] tokens (0 = padding / no loss here);
    `user_idx` [W] the owner of each window; `times` [W, L] aligned with `inputs`, or None."""

    inputs: np.ndarray
    targets: np.ndarray
    user_idx: np.ndarray
    times: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n_targets(self) -> int:
        return int(np.count_nonzero(self.targets))


def periodic_interactions(n_users: int = 60, period: int = 12, length: tuple[int, int] = (6, 14),
                          seed: int = 0, backward_share: float = 0.0) -> Interactions:
    """A synthetic log where the next item is known: items form one cycle (in a seeded random
    order, so item index order is not cycle order) and each user walks it from a random start,
    forwards, or backwards for a `backward_share` of them (user ids "r..." instead of "u...").

    The right next item after any history is the neighbour of its last item in the walk's
    direction; with both directions, [a, b, c] and [c, b, a] are both real histories with other
    answers, which a model that ignores order cannot tell apart. Timestamps are the step numbers,
    with rows shuffled so that only the time column gives the order. For tests and examples.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    cycle = rng.permutation(period)
    lengths = rng.integers(length[0], length[1] + 1, n_users)
    user = np.repeat(np.arange(n_users), lengths)
    step = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    start = rng.integers(0, period, n_users)
    backward = rng.random(n_users) < backward_share
    item = cycle[(start[user] + np.where(backward[user], -step, step)) % period]
    shuffle = rng.permutation(len(user))
    names = np.where(backward, "r", "u").astype(object) + np.arange(n_users).astype(str).astype(object)
    frame = pd.DataFrame({"user_id": names[user[shuffle]],
                          "item_id": [f"i{i}" for i in item[shuffle]],
                          "timestamp": 1_000 + step[shuffle] * 60})
    return Interactions.from_frame(frame, time_col="timestamp")
