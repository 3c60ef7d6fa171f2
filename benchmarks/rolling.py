"""Rolling evaluation benchmark: incremental `update` against a full refit, window after window.

    python benchmarks/rolling.py --datasets ml-100k,ml-latest-small,ciao,amazon-magazine-subscriptions \
        --models als,hybrid --windows 5 --threads 1 --name rolling
    python benchmarks/rolling.py --sweep --datasets ml-100k --name rolling-sweep-ml100k   # defaults on VALID

Protocol: `towerrec.rolling` (time-quantile windows over the second half of the log; the update
track learns each slice just before it is tested, the refit track refits on the same rows). Writes
results/<name>.json (every row: model, window, track, NDCG@10, Recall@20, seconds, counts, load
average) and results/<name>_<dataset>.png (metric and seconds per window, cold-item share).

`--sweep` chooses the update defaults (passes, replay, lr_scale) and the refit epochs on
*validation* windows only: the log before the test period (its first half) is itself cut into 3
rolling windows (from its middle), so no test window is looked at. Every configuration updates a
copy of the same initial fit, so they differ only in the update.

Timings: one torch thread per process; `os.getloadavg()` is recorded with every row. The machine
is shared, so seconds are noisy; update/refit ratios come from the same process and similar load.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, peak_rss_mb, write_json  # noqa: E402

from towerrec.data.registry import load_dataset  # noqa: E402
from towerrec.models import build_model  # noqa: E402
from towerrec.models.base import FitOptions  # noqa: E402
from towerrec.rolling import (  # noqa: E402
    RollingSplit,
    fit_initial,
    refit_track,
    rolling_split,
    run_rolling,
    update_track,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_sets(values: list[str]) -> dict[str, dict]:
    """`--set hybrid.epochs=10` -> {"hybrid": {"epochs": 10}} (values read as JSON when they parse)."""
    out: dict[str, dict] = {}
    for item in values:
        key, _, raw = item.partition("=")
        model, _, field = key.partition(".")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(model, {})[field] = tuple(value) if isinstance(value, list) else value
    return out


def factory(name: str, overrides: dict):
    return lambda: build_model(name, overrides)


def valid_split(split: RollingSplit, windows: int = 3) -> RollingSplit:
    """Rolling windows inside the part of the log before the test windows (validation only)."""
    early = split.log.subset(split.slice_of < 0)
    inner = rolling_split(early, windows=windows, start=0.5, seed=split.seed)
    # the inner split indexes the early rows; features and raw tables ride along
    return dataclasses.replace(inner, item_features=split.item_features, user_features=split.user_features,
                               items=split.items, users=split.users)


def summarise(rows: list[dict]) -> list[dict]:
    frame = pd.DataFrame(rows)
    out = []
    for (dataset, model), part in frame.groupby(["dataset", "model"], sort=False):
        refit, update = part[part.track == "refit"], part[part.track == "update"]
        new_item = [r["new_item"] for _, r in update.iterrows() if r["new_item"]["pairs"]]
        new_item_refit = [r["new_item"] for _, r in refit.iterrows() if r["new_item"]["pairs"]]
        out.append({
            "dataset": dataset, "model": model, "windows": int(update.window.nunique()),
            "refit NDCG@10": refit["NDCG@10"].mean(), "update NDCG@10": update["NDCG@10"].mean(),
            "NDCG@10 ratio": update["NDCG@10"].mean() / refit["NDCG@10"].mean(),
            "refit Recall@20": refit["Recall@20"].mean(), "update Recall@20": update["Recall@20"].mean(),
            "refit s": refit["seconds"].mean(), "update s": update["seconds"].mean(),
            "seconds ratio": update["seconds"].mean() / refit["seconds"].mean(),
            "cold item share": update["cold_item_rows"].sum() / update["rows"].sum(),
            "new-item median rank (update)": float(np.median([r["median_rank"] for r in new_item])) if new_item else None,
            "new-item median rank (refit)": float(np.median([r["median_rank"] for r in new_item_refit]))
            if new_item_refit else None,
            "new-item hit@20 (update)": float(np.mean([r["hit@20"] for r in new_item])) if new_item else None,
            "new-item hit@20 (refit)": float(np.mean([r["hit@20"] for r in new_item_refit])) if new_item_refit else None,
            "load (mean)": part["load"].mean(),
        })
    return out


def plot(rows: list[dict], info: dict, dataset: str, path: Path) -> None:
    """NDCG@10 and Recall@20 per window (refit solid, update dashed), seconds (log), cold-item share."""
    from matplotlib.figure import Figure

    frame = pd.DataFrame(rows)
    frame = frame[frame.dataset == dataset]
    fig = Figure(figsize=(15, 3.6), layout="constrained")
    axes = fig.subplots(1, 4)
    colors = dict(zip(frame.model.unique(), ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]))
    for ax, metric in zip(axes[:3], ("NDCG@10", "Recall@20", "seconds")):
        for (model, track), part in frame.groupby(["model", "track"], sort=False):
            part = part.sort_values("window")
            ax.plot(part.window, part[metric], "-o" if track == "refit" else "--s", color=colors[model],
                    label=f"{model} {track}", markersize=4)
        ax.set_title(metric + (" (fit or update)" if metric == "seconds" else ""))
        ax.set_xlabel("window")
        ax.grid(True, alpha=0.3)
        if metric == "seconds":
            ax.set_yscale("log")
    windows = info["windows"]
    axes[3].bar([w["window"] for w in windows], [w["cold_item_share"] for w in windows], color="#7f7f7f",
                label="cold-item rows")
    axes[3].plot([w["window"] for w in windows], [w["cold_user_share"] for w in windows], "k-o", markersize=4,
                 label="new-user rows")
    axes[3].set_title("share of the window's rows")
    axes[3].set_xlabel("window")
    axes[3].grid(True, alpha=0.3)
    axes[3].legend(fontsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{dataset}: refit (solid) vs update (dashed)")
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def run(args: argparse.Namespace) -> dict:
    options = FitOptions(seed=args.seed, progress=False, threads=args.threads)
    sets = parse_sets(args.set)
    rows, infos = [], {}
    for dataset in args.datasets.split(","):
        data = load_dataset(dataset, data_dir=args.data_dir)
        split = rolling_split(data, windows=args.windows, start=args.start, seed=args.seed)
        infos[dataset] = split.info
        print(f"{dataset}: {split}", flush=True)
        models = [(m, factory(m, sets.get(m, {}))) for m in args.models.split(",")]

        def show(row: dict, dataset: str = dataset) -> None:
            row["dataset"] = dataset
            print(f"  {dataset} {row['model']} window {row['window']} {row['track']}: NDCG@10 {row['NDCG@10']:.4f} "
                  f"Recall@20 {row['Recall@20']:.4f} {row['seconds']:.2f} s (load {row['load']:.1f}) "
                  f"new items {row['new_item']}", flush=True)

        result = run_rolling(split, models, options=options, on_row=show)
        rows += result.rows
        partial = {"rows": rows, "windows": infos, "summary": summarise(rows)}
        write_json(args.name, partial)                     # after each dataset: a killed run keeps what it did
    out = {"rows": rows, "windows": infos, "summary": summarise(rows), "peak_rss_mb": peak_rss_mb()}
    for dataset in infos:
        plot(rows, infos[dataset], dataset, RESULTS / f"{args.name}_{dataset}.png")
    return out


def sweep(args: argparse.Namespace) -> dict:
    """Update configurations (and refit epochs) on validation windows; see the module docstring."""
    options = FitOptions(seed=args.seed, progress=False, threads=args.threads)
    sets = parse_sets(args.set)
    model_name = args.models.split(",")[0]
    grid = [dict(passes=p, replay=r, lr_scale=lr) for p, r, lr in
            itertools.product(args.passes, args.replay, args.lr_scale)]
    rows, infos = [], {}
    for dataset in args.datasets.split(","):
        data = load_dataset(dataset, data_dir=args.data_dir)
        split = valid_split(rolling_split(data, windows=args.windows, start=args.start, seed=args.seed))
        infos[dataset] = split.info
        print(f"{dataset} (validation): {split}", flush=True)
        for epochs in args.epochs:
            base = {**sets.get(model_name, {}), "epochs": epochs}
            label = f"{model_name} epochs={epochs}"
            for row in ([] if args.no_refit else refit_track(split, label, factory(model_name, base), options=options)):
                rows.append({**row, "dataset": dataset, "epochs": epochs, "update": None})
                print(f"  {label} refit window {row['window']}: {row['NDCG@10']:.4f} {row['seconds']:.1f} s", flush=True)
            initial = fit_initial(split, factory(model_name, base), options)
            for cfg in grid:
                model = copy.deepcopy(initial)
                model.config = dataclasses.replace(model.config,
                                                   update=dataclasses.replace(model.config.update, **cfg))
                for row in update_track(split, label, model, options=options):
                    rows.append({**row, "dataset": dataset, "epochs": epochs, "update": cfg})
                    print(f"  {label} update {cfg} window {row['window']}: {row['NDCG@10']:.4f} "
                          f"{row['seconds']:.2f} s", flush=True)
            write_json(args.name, {"rows": rows, "windows": infos})
    frame = pd.DataFrame(rows)
    frame["config"] = frame["update"].map(lambda c: json.dumps(c, sort_keys=True) if c else "refit")
    table = (frame.groupby(["dataset", "epochs", "config"])[["NDCG@10", "Recall@20", "seconds"]].mean()
             .reset_index().to_dict(orient="records"))
    return {"rows": rows, "windows": infos, "table": table}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="ml-100k")
    p.add_argument("--models", default="als,hybrid")
    p.add_argument("--windows", type=int, default=5)
    p.add_argument("--start", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--set", action="append", default=[], help="MODEL.FIELD=VALUE, e.g. hybrid.epochs=10")
    p.add_argument("--name", default="rolling")
    p.add_argument("--sweep", action="store_true", help="choose update defaults on validation windows")
    p.add_argument("--epochs", type=lambda s: [int(x) for x in s.split(",")], default=[10])
    p.add_argument("--no-refit", action="store_true", help="--sweep: skip the refit track (already measured)")
    p.add_argument("--passes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    p.add_argument("--replay", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 0.5, 0.8])
    p.add_argument("--lr-scale", type=lambda s: [float(x) for x in s.split(",")], default=[1.0, 0.3])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start, load = time.time(), os.getloadavg()
    out = sweep(args) if args.sweep else run(args)
    out.update({"seconds": time.time() - start, "load_at_start": load, "load_at_end": os.getloadavg()})
    write_json(args.name, out)
    for row in out.get("summary", []) or out.get("table", []):
        print(row)


if __name__ == "__main__":
    main()
