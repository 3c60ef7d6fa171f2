"""Accuracy against diversity, calibration and popularity bias for each re-ranker, on ml-100k and
ml-latest-small.

    python benchmarks/rerank_tradeoff.py [--datasets ml-100k,ml-latest-small] [--model ease]
        [--weights 0,0.1,0.25,0.4,0.5,0.6,0.75,0.9,1] [--candidates 100] [--threads 1]

Protocol: random 8:1:1 split (seed 0), the base model at its defaults fitted once on train; its top
`--candidates` test items per user (train + valid excluded, the split's tie order: evaluate_split's
protocol) are ranked once and re-ranked to K = 10 by each re-ranker at each weight
(`towerrec.rerank`; weight 0 is the model itself, which `Reranked` gives for any model). Every point
is a full evaluation of those lists (`towerrec.evaluation.evaluate` with a `BeyondContext`): NDCG@10
and the beyond-accuracy figures (ILD over genres, miscalibration, ARP, long-tail share, novelty,
coverage, Gini). Writes
benchmarks/results/rerank_tradeoff_<model>_<datasets>.json and .png (NDCG@10 against the goal of
each re-ranker, one panel per dataset and goal).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_json  # noqa: E402

from towerrec.beyond import BeyondContext, ItemSpace, ItemStats  # noqa: E402
from towerrec.data.registry import load_dataset  # noqa: E402
from towerrec.evaluation import evaluate  # noqa: E402
from towerrec.models import build_model  # noqa: E402
from towerrec.models.base import FitOptions  # noqa: E402
from towerrec.ranking import TieOrder  # noqa: E402
from towerrec.recommendations import Recommendations  # noqa: E402
from towerrec.rerank import METHODS, RerankConfig, Reranker  # noqa: E402
from towerrec.splits import random_split  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: the figure each re-ranker pursues (x axis of its curve)
GOAL = {"mmr": "ILD@10", "dpp": "ILD@10", "calibrated": "Miscalibration@10", "popularity": "ARP@10"}
SHOWN = ("NDCG@10", "Recall@10", "ILD@10", "EmbILD@10", "Miscalibration@10", "ARP@10", "LongTail@10",
         "Novelty@10", "Coverage@10", "Gini@10")


def curves(name: str, model_name: str, weights: list[float], candidates: int, threads: int) -> dict:
    dataset = load_dataset(str(DATA / name))
    split = random_split(dataset.interactions, seed=0)
    base = build_model(model_name)
    start = time.perf_counter()
    base.fit(split.train, item_features=dataset.item_features, valid=split.valid,
             options=FitOptions(seed=0, progress=False, threads=threads))
    fit_s = time.perf_counter() - start
    # the base model's candidates once (the protocol of evaluate_split: train + valid excluded, the
    # split's tie order), then every re-ranker at every weight on the same candidates
    known = (split.train.to_csr() + split.valid.to_csr()).tocsr()
    known.data[:] = 1.0
    ties = TieOrder.seeded(split.train.n_items, split.seed)
    users = split.test.active_users()
    start = time.perf_counter()
    cands = base.rank_users(users, candidates, exclude=known, ties=ties)
    rank_s = time.perf_counter() - start
    space = base.item_space()
    context = BeyondContext(ItemStats.from_train(split.train, dataset.item_features), history=known, exclude=known,
                            ties=ties, space=ItemSpace(space) if space is not None else None)
    categories = context.stats.categories
    counts = split.train.item_counts()
    out = {"fit_seconds": round(fit_s, 2), "candidate_seconds": round(rank_s, 2),
           "items": dataset.interactions.n_items, "users": int(len(users)), "methods": {}}
    for method in METHODS:
        points = []
        for w in weights:
            reranker = Reranker(RerankConfig(method, w, candidates), item_counts=counts, categories=categories,
                                model_space=context.space)
            start = time.perf_counter()
            idx, scores = reranker.rerank(cands.item_idx, cands.scores, 10, known[users])
            rerank_s = time.perf_counter() - start
            recs = Recommendations(cands.user_ids, idx, scores, cands.item_map, cands.fallback, users)
            result = evaluate(recs, split.test, k=10, beyond=context)
            points.append({"weight": w, "rerank_seconds": round(rerank_s, 3),
                           **{m: result.summary.get(m) for m in SHOWN}})
            print(f"{name} {model_name}+{method}@{w:g}: NDCG@10 {points[-1]['NDCG@10']:.4f} "
                  f"{GOAL[method]} {points[-1][GOAL[method]]:.4f} (re-rank {rerank_s:.2f} s for {len(users)} users, "
                  f"load {os.getloadavg()[0]:.1f})", flush=True)
        out["methods"][method] = points
    return out


def figure(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    datasets = list(results)
    goals = ["ILD@10", "Miscalibration@10", "ARP@10"]
    fig = Figure(figsize=(4.2 * len(goals), 3.6 * len(datasets)), layout="constrained")
    axes = fig.subplots(len(datasets), len(goals), squeeze=False)
    colors = {"mmr": "tab:blue", "dpp": "tab:orange", "calibrated": "tab:green", "popularity": "tab:red"}
    for r, name in enumerate(datasets):
        for c, goal in enumerate(goals):
            ax = axes[r][c]
            for method, points in results[name]["methods"].items():
                xs, ys = [p[goal] for p in points], [p["NDCG@10"] for p in points]
                ax.plot(xs, ys, marker="o", ms=3, color=colors[method], label=method)
                ax.annotate("0", (xs[0], ys[0]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel(goal + ("  (lower: better calibrated)" if goal.startswith("Mis") else
                                  "  (lower: less popular)" if goal.startswith("ARP") else "  (higher: more diverse)"))
            ax.set_ylabel("NDCG@10")
            ax.set_title(f"{name}: NDCG@10 vs {goal}")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="ml-100k,ml-latest-small")
    p.add_argument("--model", default="ease")
    p.add_argument("--weights", default="0,0.1,0.25,0.4,0.5,0.6,0.75,0.9,1")
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    weights = [float(w) for w in args.weights.split(",")]
    load_before = os.getloadavg()
    results = {name: curves(name, args.model, weights, args.candidates, args.threads)
               for name in args.datasets.split(",")}
    stem = f"rerank_tradeoff_{args.model}_" + "_".join(results)
    write_json(stem, {"model": args.model, "weights": weights, "candidates": args.candidates,
                      "load_average_before": load_before, "load_average_after": os.getloadavg(),
                      "datasets": results})
    figure(results, RESULTS / f"{stem}.png")


if __name__ == "__main__":
    main()
