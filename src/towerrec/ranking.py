"""The one ranking path: scores in, exclusions applied, ties broken by a seeded order, top-k out.

Every list towerrec produces goes through `rank` (or `rank_row`, its one-query numpy twin used by
serving): `Recommender.recommend`, `similar_items`, evaluation, the exact and FAISS indexes.

**Ties** are broken by a fixed random order of the catalogue drawn from a seed (`TieOrder`),
never by item index. Item index follows first appearance in the file, which correlates with
popularity (Spearman 0.80 on ml-100k), so "lower index first" would hand a model that scores
everything alike a popularity ranking for free. Rows whose k-th and (k+1)-th scores are equal are
reported (`TopK.tied`): a list cut inside a tie was decided by the tie rule, not by the model.

**Scores must be finite.** NaN or +inf from a model is an error (`NonFiniteScores`) naming the
model and how many, never silently turned into padding; -inf means "excluded" and is what the
masks write. Excluded items never fill a list: rows with fewer than k candidates are padded with
item -1 and score NaN.

`torch.topk` does not order ties, so `rank` asks it for k + 1 items: when the (k+1)-th score is
strictly below the k-th the top-k set is exact and only its order needs fixing (k elements).
Rows tied at the boundary, common for popularity-like scores and rare for learned ones, are
completed in tie order in O(n_items).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from towerrec.errors import TowerrecError

#: mixed into the tie seed so the tie order is independent of other draws from the same seed
_TIE_SALT = 0x71E5
#: the most float32 scores one ranking block may hold (`block_rows`): 256 MB
SCORE_BLOCK_BYTES = 256 << 20


class NonFiniteScores(TowerrecError, ValueError):
    """A model produced NaN or infinite scores."""


class TieOrder:
    """A seeded random order of the catalogue: among equal scores the item with the lower key wins.

    Keys are a prefix-stable stream (`keys(n)[:m] == keys(m)`), so items appended to a growing
    catalogue get new keys without moving the old ones.

    >>> ties = TieOrder.seeded(5, seed=0)
    >>> sorted(ties.permutation.tolist())
    [0, 1, 2, 3, 4]
    """

    def __init__(self, keys: np.ndarray, seed: int | None = None) -> None:
        self.keys = np.asarray(keys, dtype=np.float64)
        self.seed = seed
        self.permutation = np.argsort(self.keys, kind="stable")     # items in tie order
        self._keys_t = torch.from_numpy(self.keys)
        self._perm_t = torch.from_numpy(self.permutation)

    @classmethod
    def seeded(cls, n_items: int, seed: int = 0) -> "TieOrder":
        return cls(np.random.default_rng([int(seed), _TIE_SALT]).random(int(n_items)), seed)

    def __len__(self) -> int:
        return len(self.keys)

    def extended(self, n_items: int) -> "TieOrder":
        """The same order over a catalogue grown to `n_items` (seeded orders only)."""
        if n_items == len(self):
            return self
        if self.seed is None:
            raise ValueError("only a seeded tie order can be extended")
        return TieOrder.seeded(n_items, self.seed)

    def __repr__(self) -> str:
        return f"TieOrder({len(self):,} items, seed {self.seed})"


@dataclass(frozen=True)
class TopK:
    """Ranked lists: `item_idx` [n, k] (-1 pads rows with fewer than k candidates), `scores` [n, k]
    (NaN on padding), `tied` [n] (the k-th and (k+1)-th scores were equal: the cut fell inside a tie)."""

    item_idx: np.ndarray
    scores: np.ndarray
    tied: np.ndarray


# ---- checks and masks ---------------------------------------------------------------------------
def check_finite(scores: torch.Tensor, who: str = "the model") -> None:
    """Raise `NonFiniteScores` if any score is NaN or infinite (before any mask is applied).

    A NaN or infinity makes the sum non-finite, so one reduction clears the common case without
    `isfinite`'s temporaries (1.7x the block in float and bool masks: 450 MB at 335 x 200K); only
    a non-finite sum (or one that overflowed) pays for the exact count."""
    if bool(torch.isfinite(scores.sum())):
        return
    bad = ~torch.isfinite(scores)
    if bool(bad.any()):
        n_bad, n_nan = int(bad.sum()), int(torch.isnan(scores).sum())
        raise NonFiniteScores(f"{who} produced {n_bad:,} non-finite score(s) ({n_nan:,} NaN, {n_bad - n_nan:,} "
                              f"infinite) in {bad.any(dim=-1).sum().item():,} of {scores.shape[0]:,} rows; "
                              "a ranking cannot be built from them (check the model's inputs and training)")


def mask_rows(scores: torch.Tensor, exclude: sp.csr_matrix | None, rows: np.ndarray) -> torch.Tensor:
    """Set scores[b, j] = -inf where exclude[rows[b], j] is stored. In place; returns `scores`."""
    if exclude is None:
        return scores
    rows = np.asarray(rows, dtype=np.int64)
    contiguous = len(rows) > 0 and rows[-1] - rows[0] == len(rows) - 1 and bool(np.all(np.diff(rows) == 1))
    sub = exclude[int(rows[0]):int(rows[-1]) + 1] if contiguous else exclude[rows]   # a slice is cheap
    if sub.nnz:
        r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
        scores[torch.from_numpy(r), torch.from_numpy(sub.indices.astype(np.int64))] = -torch.inf
    return scores


# ---- top-k --------------------------------------------------------------------------------------
def _order(idx: torch.Tensor, values: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by value (descending), equal values by tie key (ascending)."""
    order = torch.argsort(keys[idx], dim=1)
    idx, values = torch.gather(idx, 1, order), torch.gather(values, 1, order)
    order = torch.argsort(-values, dim=1, stable=True)
    return torch.gather(idx, 1, order), torch.gather(values, 1, order)


def top_k(scores: torch.Tensor, k: int, ties: TieOrder) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k per row of [batch, n_items] scores with ties broken by `ties`.

    Returns (idx [batch, k'], values [batch, k'], tied [batch]) with k' = min(k, n_items);
    `tied` marks finite scores equal at ranks k and k + 1. -inf entries sort last and are left
    for the caller to pad.
    """
    n_items = scores.shape[1]
    if len(ties) != n_items:
        raise ValueError(f"tie order covers {len(ties)} items, scores have {n_items}")
    k = min(int(k), n_items)
    device = scores.device
    keys, perm = ties._keys_t.to(device), ties._perm_t.to(device)
    if k == n_items:                                         # a full sort: tie order, then stable by score
        values, order = torch.sort(scores[:, perm], dim=1, descending=True, stable=True)
        return perm[order], values, torch.zeros(len(scores), dtype=torch.bool, device=device)
    values, idx = torch.topk(scores, k + 1, dim=1, sorted=True)
    tied = (values[:, k] == values[:, k - 1]) & torch.isfinite(values[:, k - 1])
    boundary = (values[:, k] == values[:, k - 1]).nonzero().flatten()
    idx, values = _order(idx[:, :k], values[:, :k], keys)
    if boundary.numel():
        sub = scores[boundary]
        kth = values[boundary, k - 1:k]
        above = sub > kth
        need = k - above.sum(dim=1, keepdim=True)
        equal = (sub == kth)[:, perm]                           # in tie order
        take = torch.zeros_like(above)
        take[:, perm] = equal & (torch.cumsum(equal, dim=1) <= need)
        cols = (above | take).nonzero()[:, 1].view(len(boundary), k)   # exactly k per row
        idx[boundary], values[boundary] = _order(cols, torch.gather(sub, 1, cols), keys)
    return idx, values, tied


def rank(scores: torch.Tensor, k: int, ties: TieOrder, *, exclude: sp.csr_matrix | None = None,
         exclude_rows: np.ndarray | None = None, allowed: np.ndarray | torch.Tensor | None = None,
         who: str | None = "the model") -> TopK:
    """Scores [batch, n_items] -> `TopK`: checked finite (unless `who` is None: the caller
    already holds masked scores), `allowed` [n_items] bool and rows `exclude_rows` of the CSR
    `exclude` set to -inf, top-k with seeded ties, excluded items turned into padding.
    `scores` is modified in place; pass a copy if you need it afterwards."""
    if who is not None:
        check_finite(scores, who)
    if allowed is not None:
        blocked = ~torch.as_tensor(allowed, dtype=torch.bool, device=scores.device)
        scores.masked_fill_(blocked, -torch.inf)                       # broadcast over rows
    if exclude is not None:
        mask_rows(scores, exclude, np.arange(len(scores)) if exclude_rows is None else exclude_rows)
    idx, values, tied = top_k(scores, k, ties)
    idx_np, values_np = idx.cpu().numpy(), values.float().cpu().numpy()
    keep = np.isfinite(values_np)
    return TopK(np.where(keep, idx_np, -1).astype(np.int64), np.where(keep, values_np, np.nan).astype(np.float32),
                tied.cpu().numpy())


def block_rows(batch_size: int, n_items: int) -> int:
    """Rows per scoring block: `batch_size`, fewer when batch_size x n_items float32 scores would
    pass `SCORE_BLOCK_BYTES` (1M items: 64 rows, 256 MB), so memory stays bounded on any catalogue."""
    return max(1, min(int(batch_size), SCORE_BLOCK_BYTES // (4 * max(n_items, 1))))


def rank_batches(score_fn: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray, k: int, ties: TieOrder, *,
                 exclude: Sequence[sp.csr_matrix] = (), allowed: np.ndarray | None = None, batch_size: int = 1024,
                 who: str = "the model", desc: str = "rank", show: bool | None = None,
                 distributed: bool = False) -> TopK:
    """`rank` over many rows in blocks, memory bounded by `block_rows(batch_size, n_items)` x n_items
    scores.

    `score_fn(pos)` returns the scores [len(pos), n_items] of positions `pos` (a slice of
    `range(len(rows))`); row `rows[p]` of every `exclude` matrix is masked for position p (rows
    < 0 or past a matrix's end mask nothing there).

    `distributed` (under torchrun; a collective: every rank must call it with the same rows):
    each rank ranks a contiguous run of whole blocks, the same blocks one process would score,
    and the lists are gathered in rank order, so every rank returns exactly one process's result.
    """
    from towerrec.distributed import active, all_gather_rows, block_slice
    from towerrec.progress import progress

    rows = np.asarray(rows, dtype=np.int64)
    n, width = len(rows), min(int(k), len(ties))
    out = TopK(np.full((n, width), -1, dtype=np.int64), np.full((n, width), np.nan, dtype=np.float32),
               np.zeros(n, dtype=bool))
    starts = range(0, n, block_rows(batch_size, len(ties)))
    split = distributed and active()
    if split:   # contiguous blocks: no user twice, none padded in
        mine = block_slice(len(starts))
        starts = starts[mine.start:mine.stop]
    for start in progress(starts, desc=desc, total=len(starts), show=show):
        pos = np.arange(start, min(start + batch_size, n))
        scores = score_fn(pos).float()
        scores = scores.cpu() if scores.device.type != "cpu" else scores
        check_finite(scores, who)
        r = rows[pos]
        for matrix in exclude:
            inside = (r >= 0) & (r < matrix.shape[0])
            if inside.all():
                mask_rows(scores, matrix, r)
            elif inside.any():
                at = torch.from_numpy(np.flatnonzero(inside))
                scores[at] = mask_rows(scores[at], matrix, r[inside])
        top = rank(scores, width, ties, allowed=allowed, who=None)
        out.item_idx[pos], out.scores[pos], out.tied[pos] = top.item_idx, top.scores, top.tied
        del scores   # before the next block is scored: one block alive at a time
    if split:
        lo = starts.start if len(starts) else 0
        hi = min(starts[-1] + starts.step, n) if len(starts) else 0
        out = TopK(all_gather_rows(out.item_idx[lo:hi]).numpy(), all_gather_rows(out.scores[lo:hi]).numpy(),
                   all_gather_rows(out.tied[lo:hi]).numpy())
    return out


def rank_row(scores: np.ndarray, k: int, ties: TieOrder) -> tuple[np.ndarray, np.ndarray, bool]:
    """`rank`'s top-k for one row of already-masked scores [n_items] in numpy: the serving path,
    where one request's handful of torch calls would cost more than the product itself.
    Same order and ties as `top_k`; returns (idx [k'], values [k'], tied)."""
    n = scores.shape[0]
    k = min(int(k), n)
    keys = ties.keys
    if k == n:
        idx = np.lexsort((keys, -scores))
        return idx, scores[idx], False
    cand = np.argpartition(-scores, k)[:k + 1]               # the k+1 largest, unordered
    cand = cand[np.lexsort((keys[cand], -scores[cand]))]     # by score desc, then tie key
    kth = scores[cand[k - 1]]
    tied = bool(scores[cand[k]] == kth)
    if tied:                                                 # a tie at the boundary: lowest keys win
        above = np.flatnonzero(scores > kth)
        equal = np.flatnonzero(scores == kth)
        equal = equal[np.argsort(keys[equal], kind="stable")][:k - len(above)]
        cand = np.concatenate([above, equal])
        cand = cand[np.lexsort((keys[cand], -scores[cand]))]
    idx = cand[:k]
    return idx, scores[idx], tied and bool(np.isfinite(kth))


def pad(top: TopK, k: int) -> TopK:
    """Widen `top` to k columns with -1 / NaN (a catalogue smaller than k)."""
    extra = k - top.item_idx.shape[1]
    if extra <= 0:
        return top
    return TopK(np.pad(top.item_idx, ((0, 0), (0, extra)), constant_values=-1),
                np.pad(top.scores, ((0, 0), (0, extra)), constant_values=np.nan), top.tied)
