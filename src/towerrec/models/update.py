"""What the torch models' `update` shares: the fine-tune settings and the replay sample of the old log.

A two-tower or sequence model keeps up with new rows by a warm start: the fitted weights (the id
tables grown for new ids) are trained for a few `passes` over the new rows mixed with a *replay*
sample of the rows it was fitted on, so that it learns the new data without forgetting the old
(experience replay; cf. Rolnick et al., "Experience Replay for Continual Learning", NeurIPS 2019).
`replay` is the share of the fine-tune sample drawn from the old log: 0.5 means as many old rows
as new ones. The defaults were chosen on validation windows (see `benchmarks/README.md`,
"Continual learning").
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from towerrec.errors import TowerrecError
from towerrec.models.train import TrainConfig


@dataclass(frozen=True)
class UpdateConfig:
    """The warm-start fine-tune of `update` (torch models). Names differ from the `train` config's
    on purpose: `passes = 2` never collides with the glossary's `epochs`."""

    passes: int = 2            # passes over (new rows + replay); each costs ~ (new rows / (1 - replay)) / batch steps
    replay: float = 0.5        # share of the fine-tune sample drawn from the old log (0: new rows only)
    lr_scale: float = 1.0      # learning rate = train.learning_rate * lr_scale
    min_steps: int = 10        # a pass has at least this many batches: a small update is filled up with replay

    def validate(self) -> None:
        if self.passes < 0:
            raise TowerrecError(f"update.passes must be >= 0, got {self.passes}")
        if not 0.0 <= self.replay < 1.0:
            raise TowerrecError(f"update.replay must be in [0, 1), got {self.replay}")
        if self.lr_scale <= 0:
            raise TowerrecError(f"update.lr_scale must be positive, got {self.lr_scale}")
        if self.min_steps < 0:
            raise TowerrecError(f"update.min_steps must be >= 0, got {self.min_steps}")

    def n_replay(self, n_new: int, n_old: int, batch_size: int = 1) -> int:
        """Old rows (or targets) to replay beside `n_new` new ones: the `replay` share, or more when
        that leaves a pass under `min_steps` batches of `batch_size` (a handful of new rows then
        trains among old ones instead of being repeated until it is memorised); at most `n_old`."""
        share = int(round(n_new * self.replay / (1.0 - self.replay)))
        return min(n_old, max(share, self.min_steps * batch_size - n_new))

    def train_config(self, train: TrainConfig, n_batches: int) -> TrainConfig:
        """The shared loop's settings for a fine-tune of `n_batches` batches a pass: `passes` epochs
        (more when that is under `min_steps` steps), scaled learning rate, no early stopping (an
        update has no validation part)."""
        epochs = max(self.passes, -(-self.min_steps // max(n_batches, 1))) if self.passes > 0 else 0
        return dataclasses.replace(train, epochs=epochs, learning_rate=train.learning_rate * self.lr_scale,
                                   steps_per_epoch=0)


def replay_pairs(seen: sp.csr_matrix, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` (user, item) pairs drawn uniformly without replacement from the stored entries of `seen`."""
    n = min(int(n), int(seen.nnz))
    if n <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pos = np.sort(rng.choice(seen.nnz, n, replace=False))
    users = np.searchsorted(seen.indptr, pos, side="right") - 1
    return users.astype(np.int64), seen.indices[pos].astype(np.int64)
