"""Full-ranking evaluation at scale: 100K users x 1M items (64-dim embeddings), exact, at bounded memory.

Every item is scored for every test user, the user's train items masked, top-K with seeded ties,
all metrics, coverage and popularity (`towerrec.evaluation.evaluate_scores`). Scores are computed
in user blocks of `ranking.block_rows` rows (256 MB of float32 scores: 64 users at 1M items), so
peak memory is the embeddings, the logs and one block, never users x items.

    python benchmarks/eval_scale.py [--users 100000] [--items 1000000] [--threads 2]
    torchrun --nproc_per_node 2 benchmarks/eval_scale.py --threads 1     # contiguous user slices per rank

Under torchrun every rank ranks a contiguous run of whole blocks and the top-K lists are gathered
in rank order, so the metrics equal one process's exactly (the JSON holds them for the check).
Writes results/eval_scale[-<world>proc].json (or --name) with seconds, peak RSS of every rank and the
load average before and after.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, write_json  # noqa: E402

from towerrec.data.idmap import IdMap  # noqa: E402
from towerrec.data.interactions import Interactions  # noqa: E402
from towerrec.distributed import active, all_gather_rows, distributed_context, is_main  # noqa: E402
from towerrec.evaluation import evaluate_scores  # noqa: E402
from towerrec.models.base import FitOptions  # noqa: E402
from towerrec.ranking import TieOrder, block_rows  # noqa: E402


def log(n_users: int, n_items: int, per_user: int, seed: int) -> Interactions:
    """`per_user` distinct Zipf-popular items per user (a vectorised draw; duplicates redrawn away)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.9
    cdf = np.cumsum(weights / weights.sum())
    users = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
    items = np.searchsorted(cdf, rng.random(len(users)))
    key = np.unique(users * n_items + np.minimum(items, n_items - 1))
    ids = lambda n, p: IdMap(np.char.add(p, np.arange(n).astype(str)).astype(object), name=p)   # noqa: E731
    return Interactions(user_idx=key // n_items, item_idx=key % n_items, weight=np.ones(len(key), np.float32),
                        user_map=ids(n_users, "u"), item_map=ids(n_items, "i"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--train-per-user", type=int, default=20)
    parser.add_argument("--test-per-user", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ctx = distributed_context(FitOptions(device="cpu", dist_timeout=3600.0))
    t0 = time.perf_counter()
    train = log(args.users, args.items, args.train_per_user, seed=1)
    test = log(args.users, args.items, args.test_per_user, seed=2)
    gen = torch.Generator().manual_seed(0)
    users = torch.randn(args.users, args.dim, generator=gen)
    items = torch.randn(args.items, args.dim, generator=gen)
    ties, exclude = TieOrder.seeded(args.items, 0), train.to_csr()
    setup = time.perf_counter() - t0
    rss_setup = peak_rss_mb()

    def score(u: np.ndarray) -> torch.Tensor:
        return users[torch.from_numpy(u)] @ items.T

    load = os.getloadavg()
    start = time.perf_counter()
    result = evaluate_scores(score, test, ties=ties, exclude=exclude, k=(10, 20), batch_size=1024, show=False)
    seconds = time.perf_counter() - start
    rss = all_gather_rows(torch.tensor([[peak_rss_mb()]], dtype=torch.float64)).flatten().tolist()
    n_eval = int(result.info["users_evaluated"])
    out = {"users": args.users, "items": args.items, "dim": args.dim, "processes": ctx.world,
           "threads_per_process": args.threads, "users_evaluated": n_eval, "block_rows": block_rows(1024, args.items),
           "train_rows": len(train), "test_rows": len(test), "setup_seconds": round(setup, 2),
           "evaluate_seconds": round(seconds, 2), "users_per_second": round(n_eval / seconds, 1),
           "peak_rss_mb_after_setup": round(rss_setup, 1), "peak_rss_mb_per_rank": [round(r, 1) for r in rss],
           "loadavg_before": load, "loadavg_after": os.getloadavg(), "distributed": active(),
           "summary": result.summary}
    if is_main():
        print({k: v for k, v in out.items() if k != "summary"}, flush=True)
        print({k: round(v, 6) for k, v in result.summary.items() if k.endswith("@10")}, flush=True)
        write_json(args.name or ("eval_scale" + (f"-{ctx.world}proc" if ctx.world > 1 else "")), out)


if __name__ == "__main__":
    main()
