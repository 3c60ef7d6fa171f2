"""The compute floor of a cf two-tower training step: the same step shape in bare torch, no optimiser.

What it runs per step (what `TwoTowerModule.compute_loss` does for the cf preset, nothing else):
user and item id lookups on tables of the model's size with sparse gradients, one linear layer per
tower, cosine scores / temperature against the batch's distinct items with the logQ and count
bias added inside the matmul, the row's own copy correction, cross-entropy, backward. The ids come
from real rows of the training log (so the number of distinct items per batch is the model's),
drawn before the timing starts. Not in it: building batches from the log, the optimiser step,
the loop's bookkeeping: what towerrec adds on top is `rate / floor`.

    from train_floor import floor_rate
    floor_rate(user_idx, item_idx, n_users, n_items, threads=1)   # -> {"interactions_per_second", ...}

`benchmarks/two_tower.py --parts throughput` measures it in the same process right after each cf
run (same threads, same machine state) and reports the ratio.
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class FloorStep:
    """The bare cf step on tables of the model's size: `step(u, i)` runs one (ids 1-based, 0 padding)."""

    def __init__(self, item_idx: np.ndarray, n_users: int, n_items: int, *, batch_size: int = 1024, dim: int = 64,
                 temperature: float = 0.1, seed: int = 0, dense: bool = False) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.users = nn.Embedding(n_users + 1, dim, padding_idx=0, sparse=not dense)
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0, sparse=not dense)
        for table in (self.users, self.items):
            nn.init.normal_(table.weight, std=0.05, generator=gen)
        self.user_mlp, self.item_mlp = nn.Linear(dim, dim), nn.Linear(dim, dim)
        counts = np.bincount(item_idx, minlength=n_items).astype(np.float64)
        self.log_q = torch.from_numpy(np.log(batch_size * np.concatenate([[0.0], counts / counts.sum()]) + 1e-12)
                                      .astype(np.float32))
        self.temperature = temperature
        self.params = [p for m in (self.users, self.items, self.user_mlp, self.item_mlp) for p in m.parameters()]

    def step(self, u: torch.Tensor, i: torch.Tensor) -> None:
        distinct, column = torch.unique(i, return_inverse=True)
        log_count = torch.bincount(column, minlength=len(distinct)).to(torch.float32).log()
        y = F.normalize(self.user_mlp(self.users(u)), dim=-1) / self.temperature
        z = F.normalize(self.item_mlp(self.items(distinct)), dim=-1)
        logits = torch.addmm((log_count - self.log_q[distinct])[None, :], y, z.T)
        b = torch.arange(len(u))
        logits[b, column] -= log_count[column]
        F.cross_entropy(logits, column).backward()
        for p in self.params:
            p.grad = None


def floor_rate(user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int, *, batch_size: int = 1024,
               dim: int = 64, temperature: float = 0.1, steps: int = 200, warmup: int = 10, seed: int = 0,
               threads: int | None = None, dense: bool = False) -> dict:
    """Interactions per second of the bare cf step (see the module docstring) on batches of
    `batch_size` random rows of the log (user_idx, item_idx) [n]. `dense`: dense table gradients."""
    if threads:
        torch.set_num_threads(threads)
    floor = FloorStep(item_idx, n_users, n_items, batch_size=batch_size, dim=dim, temperature=temperature, seed=seed,
                      dense=dense)
    rng = np.random.default_rng(seed)
    rows = [rng.integers(0, len(user_idx), batch_size) for _ in range(warmup + steps)]
    batches = [(torch.from_numpy(user_idx[r] + 1), torch.from_numpy(item_idx[r] + 1)) for r in rows]
    for u, i in batches[:warmup]:
        floor.step(u, i)
    load = os.getloadavg()
    start, cpu = time.perf_counter(), time.process_time()
    for u, i in batches[warmup:]:
        floor.step(u, i)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"interactions_per_second": steps * batch_size / seconds, "steps": steps, "seconds": seconds,
            "interactions_per_cpu_second": steps * batch_size / cpu, "cpu_seconds": cpu,
            "threads": torch.get_num_threads(), "sparse_gradients": not dense, "loadavg_before": load,
            "loadavg_after": os.getloadavg()}
