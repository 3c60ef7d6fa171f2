"""Length-bucketed batches of next-item training windows, shared by fit and update."""
from __future__ import annotations

import numpy as np

from towerrec.data.sequences import Windows


class LengthBatches:
    """Batches of windows with similar lengths, each holding about `batch_size` targets.

    Sequences of sparse logs are short (Amazon Beauty: 13% of a 50-slot window is filled), so
    batching windows of similar length and dropping the padding columns they all share saves most
    of the encoder's work. Each epoch the windows are sorted by length with ties in a fresh random
    order and cut so that every batch holds about `batch_size` target positions: a step sees as
    many targets whatever the lengths, so no user is over-weighted, and one setting suits short
    and long sequences alike. The shared loop shuffles the order of the batches.

    The loop hands `make_batch` one generator per epoch; a new generator marks a new epoch, and
    the composition is drawn from (seed, epoch) so that every rank of a DDP run agrees.
    """

    def __init__(self, windows: Windows, batch_size: int, seed: int) -> None:
        self.length = (windows.inputs > 0).sum(axis=1)
        self.n_targets = (windows.targets > 0).sum(axis=1)
        total = int(self.n_targets.sum())
        self.budget = max(int(self.n_targets.max()), int(batch_size))
        self.n_batches = -(-total // self.budget)
        self.seed = seed
        self._epoch = -1
        self._rng: np.random.Generator | None = None

    def _compose(self) -> None:
        key = np.random.default_rng([self.seed, self._epoch, 7]).random(len(self.length))
        order = np.lexsort([key, self.length])
        ends = np.cumsum(self.n_targets[order])
        batch = (ends - 1) // self.budget                     # nondecreasing, no gaps (budget >= max)
        self._order = order
        self._starts = np.searchsorted(batch, np.arange(self.n_batches + 1))

    def windows_of(self, batch_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng is not self._rng:
            self._rng, self._epoch = rng, self._epoch + 1
            self._compose()
        return np.concatenate([self._order[self._starts[b]:self._starts[b + 1]] for b in np.atleast_1d(batch_idx)])
