"""CPU time a step of the row-wise table optimisers costs, at the 20M log's table shapes.

cf's step on the 20M synthetic log is ~50% of its bare-torch floor (benchmarks/README.md, "Scale");
the row-wise optimiser is one of the costs over the floor. This times, per step, the sparse
backward of two id tables (500K and 100K rows x 64, 1,024 random rows each, as a batch touches
them) alone, then with `SparseRowAdam` (the default) and with `RowWiseAdagrad` stepping after it.
CPU time (`time.process_time`), one thread: a loaded machine inflates it less than wall time.

    PYTHONPATH=src python benchmarks/row_optimizers.py [--steps 200]   # -> results/row_optimizers.json
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from _common import write_json
from towerrec.models.optim import RowWiseAdagrad, SparseRowAdam

SHAPES = ((500_001, 64), (100_001, 64))   # users and items of the 20M log, + the unknown row
BATCH = 1_024


def step_ms(optimizer: type[torch.optim.Optimizer] | None, steps: int, warmup: int = 50) -> float:
    """Mean CPU milliseconds of backward (+ the optimiser's step) over `steps` steps."""
    torch.manual_seed(0)
    tables = [nn.Embedding(n, d, sparse=True) for n, d in SHAPES]
    opt = optimizer([t.weight for t in tables], lr=1e-3, weight_decay=1e-4) if optimizer else None
    for i in range(warmup + steps):
        if i == warmup:
            start = time.process_time()
        rows = [torch.randint(1, n, (BATCH,)) for n, _ in SHAPES]
        for t in tables:
            t.weight.grad = None
        sum(t(r).sum() for t, r in zip(tables, rows)).backward()
        if opt is not None:
            opt.step()
    return (time.process_time() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    a = parser.parse_args()
    torch.set_num_threads(1)
    base = step_ms(None, a.steps)
    out = {"steps": a.steps, "batch_rows": BATCH, "tables": [list(s) for s in SHAPES], "threads": 1,
           "loadavg": os.getloadavg(), "backward_ms": base}
    for name, cls in (("sparse_adam", SparseRowAdam), ("rowwise_adagrad", RowWiseAdagrad)):
        total = step_ms(cls, a.steps)
        out[name] = {"step_ms": total, "optimizer_ms": total - base}
        print(f"{name}: {total - base:.2f} ms a step over the backward ({base:.2f} ms)", flush=True)
    write_json("row_optimizers", out)


if __name__ == "__main__":
    main()
