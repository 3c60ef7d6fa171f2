"""The four classical baselines (Pop, ItemKNN, EASE, ALS) on ml-100k with their default configs.

    python benchmarks/baselines_ml100k.py [--data ../shared/data/ml-100k] [--threads N] [--repeats 1]

Protocol (EVALUATION.md): random 8:1:1 per-user split, seed 0; full ranking over all items; train
items masked at valid, train + valid masked at test. Defaults were tuned on VALID only; test is
reported for them. Writes benchmarks/results/baselines_ml100k.json (per model: valid/test metrics
@10 and @20, fit and eval seconds, config) and prints a table.

Timings: `fit s` / `eval s` are wall clock, the best of `--repeats`; `fit cpu s` is this process's
CPU time for that fit. On a shared machine the wall figures swing with what else runs: a torch
op with 2 threads can wait for a core on every call, so compare `fit cpu s` or use `--threads 1`.
RecBole 1.2.1 (its own split of the same rows, /work/shared/peers/SUMMARY.md), test NDCG@10:
Pop 0.1005 (exact count: 0.1419), ItemKNN 0.2834, BPR 0.2931, EASE 0.3295.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, write_json  # noqa: E402

from towerrec.data.load import load_interactions  # noqa: E402
from towerrec.evaluation import evaluate  # noqa: E402
from towerrec.models import MODELS  # noqa: E402
from towerrec.models.base import FitOptions  # noqa: E402
from towerrec.splits import random_split  # noqa: E402

NAMES = ("pop", "itemknn", "ease", "als")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
RECBOLE_TEST_NDCG10 = {"pop": 0.1005, "itemknn": 0.2834, "ease": 0.3295, "bpr": 0.2931}


def run_one(name: str, split, repeats: int) -> dict:
    fits = []
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        model = MODELS[name]().fit(split.train, options=FitOptions(seed=0, device="cpu", progress=False))
        fits.append((time.perf_counter() - wall, time.process_time() - cpu))
    fit_s, fit_cpu_s = min(fits)
    start = time.perf_counter()
    valid = evaluate(model, split, part="valid", k=(10, 20))
    test = evaluate(model, split, k=(10, 20))
    eval_s = time.perf_counter() - start
    return {
        "config": dataclasses.asdict(model.config),
        "valid": valid.summary, "test": test.summary,
        "users_evaluated": {"valid": valid.info["users_evaluated"], "test": test.info["users_evaluated"]},
        "fit_seconds": round(fit_s, 3), "fit_cpu_seconds": round(fit_cpu_s, 3),
        "fit_seconds_all_repeats": [round(f[0], 3) for f in fits],
        "eval_seconds": round(eval_s, 3), "eval_seconds_valid": round(valid.seconds, 3),
        "eval_seconds_test": round(test.seconds, 3),
        "recbole_test_ndcg10": RECBOLE_TEST_NDCG10.get(name),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with interactions.csv")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=1, help="fit this many times, report the fastest")
    parser.add_argument("--models", default=",".join(NAMES))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_avg = os.getloadavg()
    start = time.perf_counter()
    inter, report = load_interactions(args.data / "interactions.csv")
    split = random_split(inter, seed=0)
    load_s = time.perf_counter() - start
    results = {name: run_one(name, split, args.repeats) for name in args.models.split(",")}

    print(f"ml-100k random 8:1:1 seed 0, full ranking; load+split {load_s:.2f} s; "
          f"torch threads {torch.get_num_threads()}; load average at start {load_avg[0]:.1f}")
    header = ("model", "valid NDCG@10", "test NDCG@10", "test Recall@10", "test NDCG@20", "test Recall@20",
              "RecBole test NDCG@10", "fit s", "fit cpu s", "eval s (valid+test)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, r in results.items():
        ref = r["recbole_test_ndcg10"]
        print(f"| {name} | {r['valid']['NDCG@10']:.4f} | {r['test']['NDCG@10']:.4f} | {r['test']['Recall@10']:.4f} "
              f"| {r['test']['NDCG@20']:.4f} | {r['test']['Recall@20']:.4f} | {ref if ref else '-'} "
              f"| {r['fit_seconds']:.2f} | {r['fit_cpu_seconds']:.2f} | {r['eval_seconds']:.2f} |")
    payload = {
        "dataset": str(args.data), "split": {"method": "random", "ratios": [0.8, 0.1, 0.1], "seed": 0, **split.info},
        "protocol": "full ranking; valid masks train, test masks train+valid",
        "load_report": report.lines(), "load_split_seconds": round(load_s, 3),
        "load_average_at_start": load_avg, "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": torch.get_num_threads(), "repeats": args.repeats, "models": results,
    }
    write_json("baselines_ml100k", payload)
    return payload


if __name__ == "__main__":
    main()
