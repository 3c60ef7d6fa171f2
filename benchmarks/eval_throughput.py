"""Full-ranking evaluation throughput: users x items x 64-dim embeddings, seen items masked, all metrics.

Compares towerrec's `evaluate_scores` (masking, seeded ties, 7 metrics, coverage,
popularity) with a bare batched matmul + torch.topk over the same embeddings.

    python benchmarks/eval_throughput.py [--users 10000] [--items 1000,10000,50000,100000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, write_json  # noqa: E402

from towerrec.data.idmap import IdMap  # noqa: E402
from towerrec.data.interactions import Interactions  # noqa: E402
from towerrec.evaluation import evaluate_scores  # noqa: E402
from towerrec.ranking import TieOrder  # noqa: E402


def make_log(n_users: int, n_items: int, per_user: int, rng: np.random.Generator) -> Interactions:
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.integers(0, n_items, size=len(users))
    frame = pd.DataFrame({"u": users, "i": items}).drop_duplicates()
    return Interactions(user_idx=frame.u.to_numpy(np.int64), item_idx=frame.i.to_numpy(np.int64),
                        weight=np.ones(len(frame), np.float32),
                        user_map=IdMap(np.arange(n_users).astype(str).astype(object), "user"),
                        item_map=IdMap(np.arange(n_items).astype(str).astype(object), "item"))


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", default="1000,10000,50000,100000")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n_items in [int(x) for x in args.items.split(",")]:
        log = make_log(args.users, n_items, 25, rng)
        order = rng.random(len(log))
        train, test = log.subset(order >= 0.2), log.subset(order < 0.2)
        gen = torch.Generator().manual_seed(0)
        users = torch.randn(args.users, args.dim, generator=gen)
        items = torch.randn(n_items, args.dim, generator=gen)

        ties, exclude = TieOrder.seeded(n_items, 0), train.to_csr()

        def score(u: np.ndarray) -> torch.Tensor:
            return users[torch.from_numpy(u)] @ items.T

        def bare() -> None:
            for s in range(0, args.users, args.batch_size):
                torch.topk(users[s:s + args.batch_size] @ items.T, args.k, dim=1)

        def full() -> None:
            evaluate_scores(score, test, ties=ties, exclude=exclude, k=(args.k,), batch_size=args.batch_size)

        t_bare, t_full = best_of(bare, args.repeat), best_of(full, args.repeat)
        row = {"users": args.users, "items": n_items, "dim": args.dim, "k": args.k,
               "test_users": int(len(test.active_users())), "train_rows": len(train),
               "bare_matmul_topk_s": round(t_bare, 3), "towerrec_evaluate_s": round(t_full, 3),
               "overhead_vs_bare": round(t_full / t_bare, 2),
               "users_per_s": round(len(test.active_users()) / t_full)}
        rows.append(row)
        print(row, flush=True)
    write_json("eval_throughput", {"rows": rows, "peak_rss_mb": round(peak_rss_mb(), 1),
                                   "note": "best of --repeat runs; 2-core machine shared with nothing else "
                                           "only if you made sure of it"})


if __name__ == "__main__":
    main()
