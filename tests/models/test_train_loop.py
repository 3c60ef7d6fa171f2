"""The shared training loop's own options (the models' tests cover what it learns)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from towerrec.models.base import FitOptions
from towerrec.models.train import TrainConfig, train


class _Line(nn.Module):
    """y = w x fitted to y = 3 x: a loss that can only fall if batches reach the optimiser."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def compute_loss(self, batch: torch.Tensor) -> torch.Tensor:
        return ((self.w * batch - 3 * batch) ** 2).mean()


def _run(steps_per_epoch: int) -> tuple[int, list[dict], float]:
    calls = []

    def make_batch(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        calls.append(len(idx))
        return torch.from_numpy(idx.astype(np.float32) / 100)

    module = _Line()
    result = train(module, n_samples=1000, make_batch=make_batch,
                   config=TrainConfig(epochs=3, batch_size=100, learning_rate=0.1, steps_per_epoch=steps_per_epoch),
                   options=FitOptions(seed=0, progress=False))
    return len(calls), result.history, float(module.w.detach())


def test_steps_per_epoch_caps_the_batches_of_each_epoch():
    full_calls, full_history, _ = _run(0)
    capped_calls, capped_history, w = _run(2)
    assert full_calls == 3 * 10 and capped_calls == 3 * 2
    assert len(full_history) == len(capped_history) == 3
    assert 0.0 < w < 3.0   # it trained, and less far than 30 steps would have taken it
