"""Two-tower benchmarks: the cf / content / hybrid presets on ml-100k (random 8:1:1 split, full
ranking, users.csv + items.csv as features), cold-item runs on ml-100k and ml-latest-small with and
without the text encoder, and training throughput on a large synthetic log.

    python benchmarks/two_tower.py [--parts ml100k,cold,throughput] [--threads 2] [--quick]
    torchrun --nproc_per_node 2 benchmarks/two_tower.py --parts throughput --threads 1 ...   # DDP, gloo

Writes benchmarks/results/two_tower.json (a run of some parts writes two_tower.<parts>.json;
`--merge` then combines the part files into two_tower.json, so parts can run in parallel). Defaults were tuned on VALID only; test is reported
for the configuration picked on valid. Timings depend on the machine and on what else runs on it.

Cold-item protocol (`cold_item_split(inter, 0.1, seed=0)`: 10% of items never seen in training,
their rows split by item between valid and test). Recall@20 on the test cold items, two ways:
- `full`: every catalogue item is a candidate (train and valid items of the user removed);
- `cold_candidates`: only the test cold items are candidates.
`random` is the exact expectation of a uniformly random ranking: mean over users of
min(k, C_u) / C_u with C_u the user's candidates (recall of k random picks).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_set, peak_rss_mb, write_json  # noqa: E402

from towerrec.data.features import FeatureTable  # noqa: E402
from towerrec.data.interactions import Interactions  # noqa: E402
from towerrec.data.load import load_interactions  # noqa: E402
from towerrec.distributed import is_main  # noqa: E402
from towerrec.evaluation import evaluate, evaluate_scores  # noqa: E402
from towerrec.ranking import TieOrder  # noqa: E402
from towerrec.models.base import FitOptions  # noqa: E402
from towerrec.models.two_tower import TwoTower, TwoTowerConfig  # noqa: E402
from towerrec.splits import cold_item_split, random_split  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PEERS = {"RecBole BPR": 0.2931, "RecBole EASE": 0.3295, "RecBole DSSM": 0.1097, "implicit ALS": 0.2069,
         "implicit ALS [valid-tuned]": 0.2518}  # test NDCG@10 on ml-100k, /work/shared/peers/SUMMARY.md


@dataclasses.dataclass
class Data:
    name: str
    inter: Interactions
    user_features: FeatureTable | None
    item_features: FeatureTable


def load(name: str) -> Data:
    folder = DATA / name
    items = pd.read_csv(folder / "items.csv", dtype={"item_id": str})
    inter, _ = load_interactions(folder / "interactions.csv", item_ids=items["item_id"].to_numpy())
    kinds = {"title": "text"}
    for col in ("imdb_id", "tmdb_id", "imdb_url", "release_date"):   # identifiers and a date string: no signal
        if col in items.columns:
            kinds[col] = "ignore"
    item_features = FeatureTable.from_frame(items, inter.item_map, id_col="item_id", kinds=kinds)
    user_features = None
    if (folder / "users.csv").exists():
        users = pd.read_csv(folder / "users.csv", dtype={"user_id": str})
        user_features = FeatureTable.from_frame(users, inter.user_map, id_col="user_id")
    return Data(name, inter, user_features, item_features)


def fit(data: Data, train: Interactions, valid: Interactions, config: TwoTowerConfig, threads: int) -> TwoTower:
    return TwoTower(config).fit(train, user_features=data.user_features, item_features=data.item_features,
                                valid=valid, options=FitOptions(seed=0, threads=threads, progress=False))


def summary(model: TwoTower, fit_seconds: float) -> dict:
    return {"best_epoch": model.best_epoch_, "epochs_run": len(model.history_),
            "seconds_to_best_epoch": model.seconds_to_best_, "fit_seconds": fit_seconds,
            "history": [{k: round(v, 5) if isinstance(v, float) else v for k, v in h.items()} for h in model.history_]}


def run_random(data: Data, threads: int, quick: bool, presets: tuple[str, ...] = ("cf", "content", "hybrid"),
               overrides: dict | None = None) -> dict:
    split = random_split(data.inter, seed=0)
    out = {"split": "random 8:1:1 seed 0", "peers_test_NDCG@10": PEERS, "models": {}}
    for preset in presets:
        config = TwoTowerConfig.for_preset(preset, **({"epochs": 3} if quick else {}), **(overrides or {}))
        start = time.perf_counter()
        model = fit(data, split.train, split.valid, config, threads)
        seconds = time.perf_counter() - start
        v = evaluate(model, split, part="valid").summary
        t = evaluate(model, split).summary
        out["models"][preset] = {
            "valid": {m: v[m] for m in ("NDCG@10", "Recall@20")}, "test": {m: t[m] for m in ("NDCG@10", "Recall@20")},
            "config": dataclasses.asdict(config), **summary(model, seconds)}
        print(f"{data.name} {preset}: valid NDCG@10 {v['NDCG@10']:.4f} R@20 {v['Recall@20']:.4f} | "
              f"test NDCG@10 {t['NDCG@10']:.4f} R@20 {t['Recall@20']:.4f} | best epoch {model.best_epoch_} "
              f"at {model.seconds_to_best_:.1f}s, fit {seconds:.1f}s", flush=True)
    return out


def random_recall(candidates: np.ndarray, users: np.ndarray, k: int) -> float:
    c = np.maximum(candidates[users], 1)
    return float(np.mean(np.minimum(k, c) / c))


def run_cold(data: Data, threads: int, quick: bool, epochs: int) -> dict:
    split = cold_item_split(data.inter, 0.1, seed=0)
    k = 20
    seen = (split.train.to_csr() + split.valid.to_csr()).tocsr()
    users = split.test.active_users()
    cold = np.flatnonzero(split.test.item_counts())
    n_full = data.inter.n_items - np.diff(seen.indptr)
    n_cold = len(cold) - np.asarray(seen[:, cold].sum(axis=1)).ravel()   # (0: cold items are unseen)
    out = {"split": "cold-item 10% seed 0", "cold_test_items": int(len(cold)), "users_evaluated": int(len(users)),
           "random": {"full": random_recall(n_full, users, k), "cold_candidates": random_recall(n_cold, users, k)},
           "models": {}}
    print(f"{data.name} cold-item: {len(cold)} test cold items, {len(users)} users; random Recall@{k}: "
          f"full {out['random']['full']:.4f}, cold candidates {out['random']['cold_candidates']:.4f}", flush=True)
    for preset in ("content", "hybrid"):
        for text in ("pretrained", "none"):
            config = TwoTowerConfig.for_preset(preset, text=text, epochs=3 if quick else epochs)
            start = time.perf_counter()
            model = fit(data, split.train, split.valid, config, threads)
            seconds = time.perf_counter() - start
            full = evaluate(model, split, k=(k,)).summary[f"Recall@{k}"]

            cold_mask = np.zeros(data.inter.n_items, dtype=bool)
            cold_mask[cold] = True
            only = evaluate_scores(model.score_users, split.test, ties=TieOrder.seeded(data.inter.n_items, split.seed),
                                   exclude=(split.train.to_csr() + split.valid.to_csr()).tocsr(), allowed=cold_mask,
                                   k=(k,)).summary[f"Recall@{k}"]
            name = f"{preset}{'' if text != 'none' else ' (no text)'}"
            out["models"][name] = {
                f"Recall@{k}": {"full": full, "cold_candidates": only},
                "x_random": {"full": full / out["random"]["full"], "cold_candidates": only / out["random"]["cold_candidates"]},
                **summary(model, seconds)}
            print(f"{data.name} cold-item {name}: Recall@{k} full {full:.4f} ({full / out['random']['full']:.1f}x random), "
                  f"cold candidates {only:.4f} ({only / out['random']['cold_candidates']:.1f}x random)", flush=True)
    return out


THROUGHPUT_SIZES = {"quick": dict(n_users=5_000, n_items=2_000, n_interactions=100_000),
                    "1m": dict(n_users=20_000, n_items=10_000, n_interactions=1_000_000),
                    "20m": dict(n_users=500_000, n_items=100_000, n_interactions=20_000_000)}


def run_throughput(threads: int, quick: bool, size_name: str = "1m", presets: tuple[str, ...] = ("cf", "hybrid"),
                   optimizers: tuple[str, ...] = ("sparse_adam",), floor: bool = True) -> dict:
    """interactions/s of one (capped) epoch per preset and id-table optimiser, the load average around
    each run, and for cf the compute floor (`train_floor.py`: the same step in bare torch, no
    optimiser) measured right after in the same process. Under torchrun every rank trains its
    share of each global batch; the rate counts global rows."""
    from train_floor import floor_rate

    from towerrec.data.synthetic import synthetic
    from towerrec.distributed import world_size

    size = THROUGHPUT_SIZES["quick" if quick else size_name]
    ds = synthetic(**size, seed=0)
    world = world_size()
    out = {"dataset": {"generator": "towerrec.data.synthetic", **size}, "processes": world,
           "threads_per_process": threads, "runs": {}}
    # 20M rows: time a fixed share of an epoch (2,000 batches = 2.05M rows), on the whole log in memory
    steps = 2_000 if size["n_interactions"] > 5_000_000 else 0
    for preset, extra in [(p, {"text": "none"} if p != "cf" else {}) for p in presets]:
        for kind in optimizers:
            config = TwoTowerConfig.for_preset(preset, epochs=1, steps_per_epoch=steps, embedding_optimizer=kind,
                                               **extra)
            load = os.getloadavg()
            start = time.perf_counter()
            model = TwoTower(config).fit(ds.interactions, user_features=ds.user_features,
                                         item_features=ds.item_features,
                                         options=FitOptions(seed=0, threads=threads, progress=False))
            seconds = time.perf_counter() - start
            epoch = model.history_[0]["seconds"]
            rows = min(len(ds.interactions), steps * config.train.batch_size) if steps else len(ds.interactions)
            cpu = model.history_[0]["cpu_seconds"]
            # per CPU-second of this process: what a step costs whatever else runs on the machine
            run = {"embedding_optimizer": kind, "interactions_per_second": rows / epoch, "rows_timed": rows,
                   "epoch_seconds": epoch, "interactions_per_cpu_second": rows / cpu, "epoch_cpu_seconds": cpu,
                   "fit_seconds": seconds, "peak_rss_mb_so_far": peak_rss_mb(),
                   "loadavg_before": load, "loadavg_after": os.getloadavg()}
            name = f"{preset}{' (no text)' if extra else ''}{'' if kind == 'sparse_adam' else f' [{kind}]'}"
            if floor and preset == "cf" and world == 1:
                inter = ds.interactions
                run["floor"] = floor_rate(inter.user_idx, inter.item_idx, inter.n_users, inter.n_items,
                                          batch_size=config.train.batch_size, threads=threads)
                run["share_of_floor"] = run["interactions_per_second"] / run["floor"]["interactions_per_second"]
                run["share_of_floor_cpu"] = run["interactions_per_cpu_second"] / run["floor"]["interactions_per_cpu_second"]
            out["runs"][name] = run
            if is_main():
                floor_note = (f", {run['share_of_floor']:.0%} of the floor ({run['share_of_floor_cpu']:.0%} in CPU time)"
                              if "share_of_floor" in run else "")
                print(f"throughput {name}: {rows / epoch:,.0f} interactions/s, {rows / cpu:,.0f} per CPU-second "
                      f"({epoch:.1f}s per epoch{floor_note}), "
                      f"peak RSS so far {peak_rss_mb():.0f} MB, load {load[0]:.1f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="ml100k,cold,throughput")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 epochs and a small synthetic log (smoke test)")
    parser.add_argument("--cold-epochs", type=int, default=10, help="epoch cap of the cold-item runs")
    parser.add_argument("--merge", action="store_true", help="combine two_tower.<part>.json files")
    parser.add_argument("--presets", default=None,
                        help="presets to run (ml100k part: cf,content,hybrid; throughput part: cf,hybrid)")
    parser.add_argument("--throughput-size", default="1m", choices=sorted(THROUGHPUT_SIZES),
                        help="synthetic log of the throughput part (20m: 500K users, 100K items)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="ml100k part: config override (Python literal), e.g. --set sampling='users'")
    parser.add_argument("--name", default=None, help="results file name (default from the parts)")
    parser.add_argument("--optimizers", default="sparse_adam",
                        help="throughput part: id-table optimisers to compare (sparse_adam,rowwise_adagrad,dense)")
    parser.add_argument("--no-floor", action="store_true", help="throughput part: skip the bare-torch floor")
    args = parser.parse_args()
    if args.merge:
        import json

        from _common import RESULTS

        merged: dict = {}
        for f in sorted(RESULTS.glob("two_tower.*.json")):
            merged.update({k: v for k, v in json.loads(f.read_text()).items() if k not in merged or k not in
                           ("command", "machine", "threads", "note", "seconds", "peak_rss_mb")})
        (RESULTS / "two_tower.json").write_text(json.dumps(merged, indent=2))
        print(f"wrote {RESULTS / 'two_tower.json'}")
        return
    parts = args.parts.split(",")
    result: dict = {"threads": args.threads, "note": "2 shared CPU cores: other jobs ran at the same time, "
                                                    "so every timing is noisy and pessimistic"}
    start = time.perf_counter()
    if "ml100k" in parts:
        try:
            overrides = parse_set(args.set)
        except ValueError as exc:
            parser.error(str(exc))
        result["ml-100k"] = run_random(load("ml-100k"), args.threads, args.quick,
                                       tuple((args.presets or "cf,content,hybrid").split(",")), overrides)
    if "cold" in parts:
        result["cold_item"] = {name: run_cold(load(name), args.threads, args.quick, args.cold_epochs)
                               for name in ("ml-100k", "ml-latest-small")}
    if "throughput" in parts:
        result["throughput"] = run_throughput(args.threads, args.quick, args.throughput_size,
                                              tuple((args.presets or "cf,hybrid").split(",")),
                                              tuple(args.optimizers.split(",")), floor=not args.no_floor)
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = peak_rss_mb()
    name = "two_tower" + ("_quick" if args.quick else "") + ("" if set(parts) >= {"ml100k", "cold", "throughput"}
                                                             else "." + "+".join(parts))
    if is_main():   # under torchrun: rank 0 writes
        write_json(args.name or name, result)


if __name__ == "__main__":
    main()
