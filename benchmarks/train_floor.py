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


def floor_rate(user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int, *, batch_size: int = 1024,
               dim: int = 64, temperature: float = 0.1, steps: int = 200, warmup: int = 10, seed: int = 0,
               threads: int | None = None, dense: bool = False) -> dict:
    """Interactions per second of the bare cf step (see the module docstring) on batches of
    `batch_size` random rows of the log (user_idx, item_idx) [n]. `dense`: dense table gradients."""
    if threads:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    users = nn.Embedding(n_users + 1, dim, padding_idx=0, sparse=not dense)
    items = nn.Embedding(n_items + 1, dim, padding_idx=0, sparse=not dense)
    for table in (users, items):
        nn.init.normal_(table.weight, std=0.05, generator=gen)
    user_mlp, item_mlp = nn.Linear(dim, dim), nn.Linear(dim, dim)
    counts = np.bincount(item_idx, minlength=n_items).astype(np.float64)
    log_q = torch.from_numpy(np.log(batch_size * np.concatenate([[0.0], counts / counts.sum()]) + 1e-12).astype(np.float32))
    rng = np.random.default_rng(seed)
    rows = [rng.integers(0, len(user_idx), batch_size) for _ in range(warmup + steps)]
    batches = [(torch.from_numpy(user_idx[r] + 1), torch.from_numpy(item_idx[r] + 1)) for r in rows]
    params = [p for m in (users, items, user_mlp, item_mlp) for p in m.parameters()]

    def step(u: torch.Tensor, i: torch.Tensor) -> None:
        distinct, column = torch.unique(i, return_inverse=True)
        log_count = torch.bincount(column, minlength=len(distinct)).to(torch.float32).log()
        y = F.normalize(user_mlp(users(u)), dim=-1) / temperature
        z = F.normalize(item_mlp(items(distinct)), dim=-1)
        logits = torch.addmm((log_count - log_q[distinct])[None, :], y, z.T)
        b = torch.arange(len(u))
        logits[b, column] -= log_count[column]
        F.cross_entropy(logits, column).backward()
        for p in params:
            p.grad = None

    for u, i in batches[:warmup]:
        step(u, i)
    load = os.getloadavg()
    start, cpu = time.perf_counter(), time.process_time()
    for u, i in batches[warmup:]:
        step(u, i)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"interactions_per_second": steps * batch_size / seconds, "steps": steps, "seconds": seconds,
            "interactions_per_cpu_second": steps * batch_size / cpu, "cpu_seconds": cpu,
            "threads": torch.get_num_threads(), "sparse_gradients": not dense, "loadavg_before": load,
            "loadavg_after": os.getloadavg()}
