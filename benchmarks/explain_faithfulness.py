"""Faithfulness of explanations on ml-100k, by a deletion test, for every model.

    python benchmarks/explain_faithfulness.py [--models pop,ease,...] [--users 200] [--items 3]
        [--epochs 10] [--threads 1]

Protocol: random 8:1:1 split of ml-100k (seed 0), each model fitted on train (neural models with
`--epochs` epochs, early stopping on valid as usual: faithfulness is a property of how an explanation
reads the model's scoring, not of the model's accuracy). For `--users` users drawn with seed 0
(those with at least two distinct training items) and each of their top `--items` recommendations:

  drop(h) = score(user, item | full history) - score(user, item | history without h)

computed by the model itself (`Recommender.score_history_variants`: EASE/ItemKNN rescore the item
row, ALS folds the user in again, two-tower models re-pool the history keeping the user's id and
features, sequence models re-encode the sequence). A case is a success when removing the
top-explained history item (`because`, the largest contribution) lowers the score strictly more than
removing one random other history item; also measured for `nearest` (the history item nearest in
the model's item space). Sequence models read only their newest `max_len` items: their history is
cut to that window first, so the random item is one that could matter (the strict version; a random
item of the whole history would almost always be outside the window and change nothing).

Writes benchmarks/results/explain_faithfulness.json: per model the success rate of both
explanations, the share of ties, mean drops, the config and seconds, with the load average.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

from towerrec.data.registry import load_dataset  # noqa: E402
from towerrec.data.sequences import Sequences  # noqa: E402
from towerrec.explain import deletion_test  # noqa: E402
from towerrec.models import build_model  # noqa: E402
from towerrec.models.base import FitOptions  # noqa: E402
from towerrec.splits import random_split  # noqa: E402

MODELS = ("pop", "itemknn", "ease", "als", "cf", "content", "hybrid", "sasrec", "gru4rec", "nextitnet", "bert4rec",
          "hstu")
EPOCH_MODELS = {"cf", "content", "hybrid", "sasrec", "gru4rec", "nextitnet", "bert4rec", "hstu"}
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


def run_model(name: str, dataset, split, args) -> dict:
    overrides = {"epochs": args.epochs} if name in EPOCH_MODELS else {}
    model = build_model(name, overrides)
    start = time.perf_counter()
    model.fit(split.train, user_features=dataset.user_features, item_features=dataset.item_features,
              valid=split.valid, options=FitOptions(seed=0, progress=False, threads=args.threads))
    fit_s = time.perf_counter() - start
    counts = np.diff(model.seen_.indptr)
    rng = np.random.default_rng(0)
    users = rng.choice(np.flatnonzero(counts >= 2), args.users, replace=False)
    drops: dict[str, list] = {}
    start = time.perf_counter()
    window = getattr(model.config, "max_len", None) if model.capabilities.sequences else None
    for u in users:   # one deletion test per user: the benchmark's own loop, not a library hot path
        history = model.history_of(int(u))
        if window is not None and history.tokens.size > window:
            history = Sequences(history.tokens[-window:], np.array([0, window]),
                                None if history.times is None else history.times[-window:])
        if np.unique(history.tokens).size < 2:
            continue
        items = model.recommend([model.user_map_.ids[u]], k=args.items).item_idx[0]
        for key, value in deletion_test(model, int(u), history, items, rng).items():
            drops.setdefault(key, []).append(value)
    seconds = time.perf_counter() - start
    out = {"config": dataclasses.asdict(model.config), "fit_seconds": round(fit_s, 2),
           "test_seconds": round(seconds, 2), "method": model.explanation_method()}
    for kind in ("top", "nearest"):
        if kind not in drops:
            out[kind] = None
            continue
        top, rand = np.concatenate(drops[kind]), np.concatenate(drops[f"random_{kind}"])
        out[kind] = {"cases": int(len(top)), "rate": float(np.mean(top > rand)), "ties": float(np.mean(top == rand)),
                     "mean_drop_top": float(top.mean()), "mean_drop_random": float(rand.mean())}
    print(f"{name:10s} because {out['top']['rate'] if out['top'] else 'n/a':>8} nearest "
          f"{out['nearest']['rate'] if out['nearest'] else 'n/a'} ({out['test_seconds']} s, fit {fit_s:.1f} s, "
          f"load {os.getloadavg()[0]:.1f})", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--items", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    dataset = load_dataset(args.data)
    split = random_split(dataset.interactions, seed=0)
    results = {}
    for name in args.models.split(","):
        results[name] = run_model(name, dataset, split, args)
    write_json("explain_faithfulness", {"protocol": __doc__.split("\n\n")[2], "users": args.users,
                                        "items_per_user": args.items, "epochs": args.epochs,
                                        "load_average_before": load_before, "load_average_after": os.getloadavg(),
                                        "models": results},
               path=Path(args.out) if args.out else None)


if __name__ == "__main__":
    main()
