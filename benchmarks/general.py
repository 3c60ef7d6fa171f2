"""General-protocol benchmark: towerrec's classical and tower models on seven datasets, each tuned
on VALID with the same Optuna budget, tested on three seeds, beside RecBole 1.2.1 peers.

Protocol: random 8:1:1 split per user (`towerrec.splits.random_split`, duplicates: first row kept),
full ranking over the catalogue, seen items masked (train for valid, train + valid for test),
seeds 0, 1, 2 (each seed its own split and its own model seed). Tuning: `--trials` Optuna TPE
trials per (dataset, model) on the seed-0 split's VALID NDCG@10 (trial 0 is the model's defaults, then `NESTS`;
the test split is never scored while tuning); the best configuration is then fitted and tested on
each seed. Models without hyperparameters (pop) get no trials.

    PYTHONPATH=src python benchmarks/general.py                     # every cell not yet done
    PYTHONPATH=src python benchmarks/general.py --datasets ml-100k --models cf,hybrid --trials 12
    PYTHONPATH=src python benchmarks/general.py --table              # only rebuild general.json + table
    PYTHONPATH=src python benchmarks/general.py --by-activity        # best tower vs classical by user activity
    PYTHONPATH=src python benchmarks/general.py --cold               # cold-item / cold-user cells (seed 0)

A cell = one (dataset, model): its tuning and its three seeds, run in a fresh subprocess so that
its wall time and peak RSS are its own; it is written to `results/general/<dataset>/<model>.json`
(+ per-user test NDCG@10 in `<model>.npz`) when complete, so a rerun skips it (resumable; a
cell that died leaves nothing and runs again). `--overwrite` redoes the selected cells. Peer
cells come from `results/general_peers.jsonl` (`benchmarks/recbole_split.py all`, RecBole's
defaults on the seed-0 split files). Significance: per (seed, user) test NDCG@10 of each model
against the best classical model of the row (pop, itemknn, ease, als; by mean test NDCG@10), paired
t-test and Wilcoxon, Holm over the row's other models; marked only when both agree (`towerrec.
experiments.stats.compare_with_reference`).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
OUT = HERE / "results" / "general"
PEERS_FILE = HERE / "results" / "general_peers.jsonl"

DATASETS = ("ml-100k", "ml-latest-small", "lastfm-hetrec2011", "ciao", "amazon-beauty", "amazon-sports",
            "amazon-magazine-subscriptions")
CLASSICAL = ("pop", "itemknn", "ease", "als")
TOWERS = ("cf", "fism", "lightgcn", "multvae", "content", "hybrid")
MODELS = CLASSICAL + TOWERS
PEERS = ("BPR", "LightGCN", "MultiVAE", "NeuMF")
SEEDS = (0, 1, 2)
METRIC = "NDCG@10"

# Fixed settings of every run of a model (not tuned): the training budget of the towers.
FIXED: dict[str, dict] = {m: {"epochs": 30, "patience": 3} for m in TOWERS}   # the presets' own budget
FIXED["multvae"] = {"epochs": 300, "patience": 30}   # the preset's own: one full-batch step an epoch on small logs

# Search spaces (Optuna): {name: (low, high, "log"|"lin"|"int"|"logint") or [choices]}. AdamW's weight
# decay is decoupled (each step shrinks every weight by lr x wd), so it only regularises from ~1e-2 up.
_TOWER_COMMON = {"learning_rate": (1e-3, 1e-2, "log"), "weight_decay": (1e-6, 0.3, "log"),
                 "temperature": (0.03, 0.3, "log")}
SPACES: dict[str, dict] = {
    "pop": {},
    "itemknn": {"neighbours": (10, 400, "logint"), "shrink": (0.0, 100.0, "lin")},
    "ease": {"l2": (10.0, 5000.0, "log")},
    "als": {"factors": [32, 64, 128], "regularization": (0.01, 100.0, "log"), "alpha": (0.1, 20.0, "log"),
            "iterations": (5, 25, "int")},
    # cf (re-tuned in the session of 2026-11-30, late): temperatures under 0.1 were never clearly best on
    # any of six datasets' first cells, 1,024 extra uniform negatives never among the best trials, and
    # 256 dimensions at tau 0.2 beat 128 at tau 0.27 on ml-100k's valid for all three model seeds
    # free id rows (id_projection False) beat one linear layer over them at 256 dims and tau 0.2 on
    # ml-100k (3 model seeds), ml-latest-small (2) and lastfm (1), valid probes of 2026-12-01
    "cf": {**_TOWER_COMMON, "temperature": (0.1, 0.3, "log"), "embedding_dim": [64, 128, 256],
           "id_projection": [True, False]},
    # fism (2026-12-01, late): its own preset as trial 0; temperatures from 0.05 (magazine valid, seed-0 split:
    # tau 0.07 0.2111, 0.1 0.2206, 0.12 0.2203, 0.24 0.2167), "mean" or "norm" pooling, history dropout
    "fism": {"learning_rate": (3e-4, 1e-2, "log"), "weight_decay": (1e-6, 0.3, "log"),
             "temperature": (0.05, 0.3, "log"), "embedding_dim": [64, 128, 256], "history": ["norm", "mean"],
             "history_dropout": (0.0, 0.5, "lin")},
    # lightgcn (2026-12-01): free rows and width as for cf; ml-100k valid probes at the old cell's best
    # trial: projected 64 dims 0.2456, free rows 64 / 128 / 256 dims 0.2480 / 0.2490 / 0.2509
    "lightgcn": {**_TOWER_COMMON, "graph_layers": [1, 2, 3], "negatives": [0, 1024], "embedding_dim": [64, 128, 256],
                 "id_projection": [True, False]},
    # multvae (2026-12-01): RecBole's shape is the preset now (free rows, 64-dim z, item offsets, full
    # batches); the space keeps the optimisation and regularisation knobs
    "multvae": {"learning_rate": (3e-4, 3e-3, "log"), "kl_weight": (0.01, 0.5, "log"), "holdout": (0.2, 0.7, "lin"),
                "weight_decay": (1e-6, 0.3, "log"), "users_per_batch": [256, 2048]},
    "content": {**_TOWER_COMMON, "dropout": (0.0, 0.5, "lin")},
    # hybrid (2026-12-01, evening): cf's free id rows plus one linear layer of the features, text and
    # history added to them (id_residual), so the space nests cf's. Valid probes at cf's best trial on
    # each dataset (seed-0 split, model seed 0): amazon-beauty 0.0627 against cf's 0.0608 and EASE's
    # 0.0617; ml-100k 0.2498 without text (0.2362 with it, 0.2553 without the genres: cf 0.2556),
    # where the previous space's best (its trial 0, the preset: one MLP (256) over the concatenated
    # ids and features) had 0.2470. A linear head and no MLP dropout, as the earlier probes found
    # (one linear layer 0.2484 against the MLP's 0.2379); "users" sampling was never near the best.
    # Since 2026-12-01 (late) that layer starts at zero (`residual_zero_init`, the config's default):
    # at the best trials of the cells before it, valid ml-latest-small 0.1955 -> 0.2085, ciao 0.0293
    # -> 0.0296, ml-100k (cf's best trial, no text) 0.2498 -> 0.2510, with text 0.2362 -> 0.2526;
    # amazon-beauty 0.0610 -> 0.0593 (worse: stopped at epoch 10 instead of 28).
    # Since 2026-12-02 the feature sides are choices too, and trials 1-3 start from cf's best trial on the
    # dataset with each side's features added (`nested_start`): ml-100k valid at cf's best trial, seed-0
    # split, model seeds 0 / 1 / 2: user features only 0.2576 / 0.2563 / 0.2549 against cf's 0.2556 /
    # 0.2530 / 0.2510; both sides 0.2510 (seed 0), item features only 0.2441 (seed 0).
    "hybrid": {**_TOWER_COMMON, "temperature": (0.1, 0.3, "log"), "embedding_dim": [64, 128, 256],
               "id_residual": [True], "hidden": ["linear"], "dropout": [0.0], "id_dropout": (0.0, 0.5, "lin"),
               "history": ["mean", "none"], "text": ["pretrained", "none"], "user_features": [True, False],
               "item_features": [True, False]},
}
# A model whose space nests another's starts its search from that model's best trial on the dataset
# (when its cell exists), once per setting of `sides` that the data can tell apart, the rest of
# `fixed` added: hybrid's question is which side information adds to cf's best free rows.
NESTS = {"hybrid": {"model": "cf", "fixed": {"id_residual": True, "hidden": "linear", "dropout": 0.0,
                                              "id_dropout": 0.0, "history": "none", "text": "none"}}}
TIED = {"embedding_dim": "id_dim"}   # a tuned embedding_dim sets id_dim too (one MF width)
# categorical choices that name a value Optuna cannot store (it keeps str / int / float / bool / None)
CHOICE_VALUES = {"hidden": {"mlp256": [256], "linear": []}}


def load_split(name: str, seed: int, data_dir: str | None = None):
    """The dataset (duplicates: first row kept) and its random 8:1:1 per-user split with `seed`."""
    from towerrec.data.load import LoadOptions
    from towerrec.data.registry import load_dataset
    from towerrec.splits import split

    data = load_dataset(name, LoadOptions(duplicates="first"), data_dir=data_dir or str(DATA))
    return split(data, "random", seed=seed)


def applicable(model: str, split) -> str | None:
    """Why `model` cannot run on this data (None: it can)."""
    if model == "content" and split.item_features is None:
        return "no item features or text: the content tower has no input"
    return None


def suggest(trial, space: dict) -> dict:
    out = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            out[name] = trial.suggest_categorical(name, spec)
            if name in CHOICE_VALUES:
                out[name] = CHOICE_VALUES[name][out[name]]
        else:
            lo, hi, kind = spec
            if kind in ("int", "logint"):
                out[name] = trial.suggest_int(name, int(lo), int(hi), log=kind == "logint")
            else:
                out[name] = trial.suggest_float(name, lo, hi, log=kind == "log")
        if name in TIED:
            out[TIED[name]] = out[name]
    if (out.get("user_features") is False and out.get("item_features") is False and out.get("history") == "none"
            and out.get("text") == "none"):
        out["item_features"] = True   # a hybrid with no side input at all would be cf under another name
    if out.get("history") == "none" and out.get("sampling") == "users":
        out["sampling"] = "pairs"   # users sampling draws targets from a history: without one, pairs
    return out


def fit_eval(model_name: str, params: dict, split, seed: int, parts: tuple[str, ...]):
    from towerrec.evaluation import evaluate_split
    from towerrec.models import build_model
    from towerrec.models.base import FitOptions

    model = build_model(model_name, {**FIXED.get(model_name, {}), **params})
    t0 = time.perf_counter()
    model.fit(split, options=FitOptions(seed=seed, progress=False))
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    # no beyond-accuracy figures: the table reads NDCG@10, and list similarity over item features
    # is the slow part of an evaluation on the amazon catalogues
    res = evaluate_split(model, split, k=(10, 20), metrics=("NDCG", "Recall", "HitRate"), parts=parts, beyond=None)
    return model, res, fit_s, time.perf_counter() - t1


def nested_start(dataset: str, model: str, split) -> list[dict]:
    """The first trials of `model` after its defaults (`NESTS`): the nested model's best params on
    `dataset`, within `model`'s space, with each feature side on that the data has ([] without
    the nested cell or any side features)."""
    nest = NESTS.get(model)
    path = OUT / dataset / f"{nest['model']}.json" if nest else None
    if path is None or not path.exists():
        return []
    space = SPACES[model]
    base = {k: v for k, v in json.loads(path.read_text())["best_params"].items() if k in space}
    sides = [(u, i) for u in ([True, False] if split.user_features is not None else [False])
             for i in ([True, False] if split.item_features is not None else [False]) if u or i]
    return [{**base, **nest["fixed"], "user_features": u, "item_features": i} for u, i in sides]


def run_cell(dataset: str, model: str, trials: int, seeds: tuple[int, ...]) -> dict:
    """Tune on seed 0's VALID, then fit + test each seed. Returns the cell record (+ per-user arrays)."""
    import optuna

    start, load0 = time.perf_counter(), os.getloadavg()
    split0 = load_split(dataset, 0)
    why = applicable(model, split0)
    cell: dict = {"dataset": dataset, "model": model, "trials_budget": trials, "seeds": list(seeds),
                  "fixed": FIXED.get(model, {}), "space": {k: list(v) if isinstance(v, (list, tuple)) else v
                                                           for k, v in SPACES[model].items()}}
    if why:
        return {**cell, "skipped": why}
    space = SPACES[model]
    trial_log = []
    best_params: dict = {}
    tune_s = 0.0
    if space and trials > 0:
        t0 = time.perf_counter()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
            seed=0, n_startup_trials=min(4, trials)))
        study.enqueue_trial({}, skip_if_exists=True)   # trial 0: the model's own defaults
        starts = nested_start(dataset, model, split0)
        for params in starts:                          # then the nested model's best, each side added
            study.enqueue_trial(params, skip_if_exists=True)
        cell["nested_start"] = starts

        def objective(trial) -> float:
            params = suggest(trial, space) if trial.number > 0 else {}
            _, res, fit_s, _ = fit_eval(model, params, split0, 0, ("valid",))
            value = float(res["valid"].summary[METRIC])
            trial_log.append({"number": trial.number, "params": params, "valid": value, "fit_s": round(fit_s, 2)})
            print(f"  [{dataset} {model}] trial {trial.number}: valid {value:.4f} ({fit_s:.0f} s) {params}",
                  flush=True)
            return value

        study.optimize(objective, n_trials=trials)
        best = max(trial_log, key=lambda t: t["valid"])
        best_params = best["params"]
        tune_s = time.perf_counter() - t0
    runs, per_user = [], {}
    for seed in seeds:
        split = split0 if seed == 0 else load_split(dataset, seed)
        fitted, res, fit_s, eval_s = fit_eval(model, best_params, split, seed, ("valid", "test"))
        test = res["test"]
        runs.append({"seed": seed, "valid": res["valid"].summary, "test": test.summary, "fit_s": round(fit_s, 2),
                     "eval_s": round(eval_s, 2), "best_epoch": getattr(fitted, "best_epoch_", None),
                     "seconds_to_best": getattr(fitted, "seconds_to_best_", None),
                     "users_evaluated": int(len(test.user_idx))})
        per_user[f"seed{seed}_user"] = test.user_idx
        per_user[f"seed{seed}_ndcg"] = test.per_user[METRIC].to_numpy(dtype=np.float32)
        print(f"  [{dataset} {model}] seed {seed}: test {test.summary[METRIC]:.4f} valid "
              f"{res['valid'].summary[METRIC]:.4f} fit {fit_s:.0f} s", flush=True)
    tests = np.array([r["test"][METRIC] for r in runs])
    cell.update({
        "best_params": best_params, "trials": trial_log, "runs": runs,
        "test_mean": float(tests.mean()), "test_std": float(tests.std(ddof=1)) if len(tests) > 1 else 0.0,
        "valid_mean": float(np.mean([r["valid"][METRIC] for r in runs])),
        "tune_seconds": round(tune_s, 1), "fit_seconds_mean": round(float(np.mean([r["fit_s"] for r in runs])), 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg_start": load0, "loadavg_end": os.getloadavg(), "torch_threads": _threads(),
    })
    return {**cell, "_per_user": per_user}


def probe(dataset: str, model: str, params: dict, seed: int = 0) -> dict:
    """One valid-only fit on the seed-0 split with model seed `seed` (`--probe`); test is not scored."""
    load0 = os.getloadavg()
    fitted, res, fit_s, _ = fit_eval(model, params, load_split(dataset, 0), seed, ("valid",))
    row = {"dataset": dataset, "model": model, "params": params, "seed": seed, "fixed": FIXED.get(model, {}),
           "valid": float(res["valid"].summary[METRIC]), "fit_s": round(fit_s, 1),
           "best_epoch": getattr(fitted, "best_epoch_", None), "loadavg_start": load0, "loadavg_end": os.getloadavg()}
    with open(HERE / "results" / "general_probes.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{dataset} {model} {params}: valid {METRIC} {row['valid']:.4f}, fit {fit_s:.0f} s, "
          f"best epoch {row['best_epoch']}", flush=True)
    return row


# ---- cold start: where content matters ------------------------------------------------------------
COLD_DATASETS = ("ml-100k", "ml-latest-small", "lastfm-hetrec2011", "ciao", "amazon-beauty", "amazon-sports")
COLD_MODELS = ("pop", "itemknn", "ease", "als", "cf", "fism", "multvae", "content", "hybrid")
COLD_KINDS = ("cold-item", "cold-user")


def cold_split(name: str, kind: str, seed: int = 0):
    """EVALUATION.md's cold splits: 10% of items (cold-item) or of users (cold-user) held out."""
    import dataclasses

    from towerrec.data.load import LoadOptions
    from towerrec.data.registry import load_dataset
    from towerrec.splits import cold_item_split, cold_user_split

    data = load_dataset(name, LoadOptions(duplicates="first"), data_dir=str(DATA))
    cut = cold_item_split if kind == "cold-item" else cold_user_split
    return dataclasses.replace(cut(data.interactions, 0.1, seed), item_features=data.item_features,
                               user_features=data.user_features)


def run_cold_cell(dataset: str, kind: str, model: str) -> dict:
    """One model on one cold split (seed 0), with the configuration tuned on the random split's
    VALID (`results/general/<dataset>/<model>.json`; the defaults when that cell is missing)."""
    start = time.perf_counter()
    split = cold_split(dataset, kind)
    tuned = cell_path(dataset, model)
    params = json.loads(tuned.read_text()).get("best_params", {}) if tuned.exists() else {}
    cell = {"dataset": dataset, "split": kind, "model": model, "params": params, "tuned": tuned.exists()}
    why = applicable(model, split)
    if kind == "cold-user" and not why:
        from towerrec.models import build_model

        if not build_model(model, {**FIXED.get(model, {}), **params}).capabilities.histories:
            why = "scores the user ids it was trained on only: an unseen user has no vector"
    if why:
        return {**cell, "skipped": why}
    fitted, res, fit_s, eval_s = fit_eval(model, params, split, 0, ("test",))
    test = res["test"]
    return {**cell, "test": test.summary, "users_evaluated": int(len(test.user_idx)),
            "fallback": test.info.get("fallback"), "fit_s": round(fit_s, 1), "eval_s": round(eval_s, 1),
            "cold_items": bool(fitted.capabilities.cold_items), "histories": bool(fitted.capabilities.histories),
            "wall_seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def cold_path(dataset: str, kind: str, model: str) -> Path:
    return OUT / "cold" / dataset / f"{kind}-{model}.json"


def cold_table() -> str:
    cells = {}
    for path in sorted((OUT / "cold").glob("*/*.json")):
        c = json.loads(path.read_text())
        cells[c["dataset"], c["split"], c["model"]] = c
    lines = ["| dataset | split | " + " | ".join(COLD_MODELS) + " |", "|" + "---|" * (len(COLD_MODELS) + 2)]
    for d in COLD_DATASETS:
        for kind in COLD_KINDS:
            row = [d, kind]
            vals = {m: cells[d, kind, m]["test"]["NDCG@10"] for m in COLD_MODELS
                    if (d, kind, m) in cells and "test" in cells[d, kind, m]}
            if not vals:
                continue
            best = max(vals.values())
            for m in COLD_MODELS:
                c = cells.get((d, kind, m))
                if c is None or "test" not in c:
                    row.append("n/a" if c is not None else "…")
                    continue
                txt = f"{c['test']['NDCG@10']:.4f} / {c['test']['Recall@20']:.4f}"
                row.append(f"**{txt}**" if c["test"]["NDCG@10"] == best > 0 else txt)   # no bold when all score 0
            lines.append("| " + " | ".join(row) + " |")
    return "test NDCG@10 / Recall@20, seed 0:\n\n" + "\n".join(lines)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def cell_path(dataset: str, model: str) -> Path:
    return OUT / dataset / f"{model}.json"


def write_cell(cell: dict) -> None:
    path = cell_path(cell["dataset"], cell["model"])
    path.parent.mkdir(parents=True, exist_ok=True)
    per_user = cell.pop("_per_user", None)
    if per_user:
        np.savez_compressed(path.with_suffix(".tmp.npz"), **per_user)
        os.replace(path.with_suffix(".tmp.npz"), path.with_suffix(".npz"))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cell, indent=1, default=float))
    os.replace(tmp, path)        # the .json last: its presence means the cell is complete


# ---- the table -------------------------------------------------------------------------------------
def load_cells() -> dict[tuple[str, str], dict]:
    cells = {}
    for path in sorted(OUT.glob("*/*.json")):
        c = json.loads(path.read_text())
        cells[c["dataset"], c["model"]] = c
    return cells


def load_peers() -> dict[tuple[str, str], dict]:
    out = {}
    if PEERS_FILE.exists():
        for line in PEERS_FILE.read_text().splitlines():
            r = json.loads(line)
            if "error" in r:
                continue
            name = r["dataset"][3:].rsplit("-s", 1)[0] if r["dataset"].startswith("tr-") else r["dataset"]
            out[name, r["model"]] = r
    return out


def significance(dataset: str, cells: dict) -> tuple[str | None, dict[str, dict]]:
    """The row's best classical model and each other model's paired test against it (Holm)."""
    import pandas as pd

    from towerrec.experiments.stats import compare_with_reference

    done = {m: c for (d, m), c in cells.items() if d == dataset and "runs" in c}
    classical = [m for m in CLASSICAL if m in done]
    if not classical:
        return None, {}
    ref = max(classical, key=lambda m: done[m]["test_mean"])
    columns = {}
    for m in done:
        z = np.load(cell_path(dataset, m).with_suffix(".npz"))
        keys, values = [], []
        for seed in done[m]["seeds"]:
            users = z[f"seed{seed}_user"]
            keys += [f"{seed}:{u}" for u in users]
            values.append(z[f"seed{seed}_ndcg"])
        columns[m] = pd.Series(np.concatenate(values), index=keys)
    frame = pd.DataFrame(columns)
    tests = compare_with_reference(frame, ref)
    return ref, {r["model"]: r for r in tests.to_dict("records")}


def build_table(cells: dict, peers: dict) -> tuple[str, dict]:
    summary: dict = {}
    header = ["dataset", *MODELS, *(f"RecBole {p}" for p in PEERS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cost_lines = ["| dataset | " + " | ".join(MODELS) + " |", "|" + "---|" * (len(MODELS) + 1)]
    for d in DATASETS:
        ref, sig = significance(d, cells)
        vals = {m: cells[d, m]["test_mean"] for m in MODELS if (d, m) in cells and "runs" in cells[d, m]}
        vals.update({f"RecBole {p}": peers[d, p]["test"]["ndcg@10"] for p in PEERS if (d, p) in peers})
        best = max(vals.values()) if vals else None
        row, cost = [d], [d]
        for m in MODELS:
            c = cells.get((d, m))
            if c is None:
                row.append("…"), cost.append("…")
                continue
            if "skipped" in c:
                row.append("n/a"), cost.append("n/a")
                continue
            txt = f"{c['test_mean']:.4f} ± {c['test_std']:.4f}"
            if c["test_mean"] == best:
                txt = f"**{txt}**"
            if m == ref:
                txt += " (ref)"
            elif m in sig and sig[m]["significant"]:
                txt += " ▲" if sig[m]["diff"] > 0 else " ▼"
            row.append(txt)
            cost.append(f"{c['fit_seconds_mean']:.0f} s fit, {c['wall_seconds'] / 60:.0f} min cell, "
                        f"{c['peak_rss_mb'] / 1024:.1f} GB")
        for p in PEERS:
            r = peers.get((d, p))
            if r is None:
                row.append("…")
                continue
            txt = f"{r['test']['ndcg@10']:.4f}"
            txt = f"**{txt}**" if r["test"]["ndcg@10"] == best else txt
            row.append(txt + (" †" if r.get("stopped_by_time_budget") else ""))
        lines.append("| " + " | ".join(row) + " |")
        cost_lines.append("| " + " | ".join(cost) + " |")
        summary[d] = {"reference": ref, "significance": sig}
    peer_cost = ["| dataset | " + " | ".join(PEERS) + " |", "|" + "---|" * (len(PEERS) + 1)]
    for d in DATASETS:
        cost = [d]
        for p in PEERS:
            r = peers.get((d, p))
            cost.append("…" if r is None else f"{r['wall_seconds']:.0f} s, {r['peak_rss_mb'] / 1024:.1f} GB, "
                        f"{r['epochs_run']} ep{' (budget)' if r.get('stopped_by_time_budget') else ''}")
        peer_cost.append("| " + " | ".join(cost) + " |")
    text = "\n".join(lines) + "\n\n† stopped by its wall-clock fit budget before converging (see the cost table)." \
        "\n\n" + verdict(cells, peers, summary) + \
        "\n\nCost per cell (towerrec: mean fit of the 3 tested seeds; whole cell = tuning + " \
        "3 seeds; peak RSS of the cell's process):\n\n" + "\n".join(cost_lines) + \
        "\n\nRecBole cells (one seed; wall time and peak RSS of the process; epochs run):\n\n" + "\n".join(peer_cost)
    return text, summary


def verdict(cells: dict, peers: dict, summary: dict) -> str:
    """Per row: the best tower (by mean test NDCG@10) against the row's best classical model, and its
    seed-0 test figure against the RecBole peers run on that split. "level" = not significantly
    different (the table's test: paired t-test and Wilcoxon, Holm, both must reject). Also stored
    in `summary[dataset]["verdict"]`."""
    lines = ["| dataset | best tower | best classical (ref) | tower − ref, 95% CI | tower vs ref | best tower, seed 0 "
             "| best RecBole peer run (seed 0) |", "|---|---|---|---|---|---|---|"]
    counted = level_or_above = 0
    for d in DATASETS:
        done = {m: cells[d, m] for m in TOWERS if (d, m) in cells and "runs" in cells[d, m]}
        ref = summary.get(d, {}).get("reference")
        if not done or ref is None:
            continue
        tower = max(done, key=lambda m: done[m]["test_mean"])
        test = summary[d]["significance"][tower]
        status = ("above" if test["diff"] > 0 else "below") if test["significant"] else "level"
        counted += 1
        level_or_above += status != "below"
        seed0 = next((r["test"][METRIC] for r in done[tower]["runs"] if r["seed"] == 0), None)
        ran = {p: peers[d, p]["test"]["ndcg@10"] for p in PEERS if (d, p) in peers}
        if ran and seed0 is not None:
            top = max(ran, key=ran.get)
            peer = (f"{top} {ran[top]:.4f}: tower {'above' if seed0 > ran[top] else 'not above'} "
                    f"({len(ran)} of {len(PEERS)} peers run)")
        else:
            peer = "none run"
        summary[d]["verdict"] = {"tower": tower, "status": status, "diff": test["diff"], "ci": [test["ci_low"],
                                 test["ci_high"]], "tower_seed0": seed0, "peers_seed0": ran}
        seed0_txt = "–" if seed0 is None else f"{seed0:.4f}"
        lines.append(f"| {d} | {tower} {done[tower]['test_mean']:.4f} | {ref} {cells[d, ref]['test_mean']:.4f} | "
                     f"{test['diff']:+.4f} ({test['ci_low']:+.4f}, {test['ci_high']:+.4f}) | {status} | "
                     f"{seed0_txt} | {peer} |")
    return (f"The best tower of each row against its best classical model and the peers (level or above on "
            f"**{level_or_above} of {counted}** rows; level = the two tests above do not both reject; peers: "
            f"the tower's seed-0 test figure, the split they ran on):\n\n" + "\n".join(lines))


def write_results() -> str:
    sys.path.insert(0, str(HERE))
    from _common import write_json

    cells, peers = load_cells(), load_peers()
    text, summary = build_table(cells, peers)
    write_json("general", {"protocol": __doc__.split("\n\n")[1], "datasets": list(DATASETS), "models": list(MODELS),
                           "peers": list(PEERS), "seeds": list(SEEDS), "metric": METRIC,
                           "cells": {f"{d}/{m}": c for (d, m), c in cells.items()},
                           "peer_cells": {f"{d}/{p}": r for (d, p), r in peers.items()},
                           "significance": summary, "table_markdown": text})
    return text


def by_activity(datasets: list[str]) -> str:
    """Where the row's best tower wins or loses against its best classical model, by how many train
    items a test user has: users of the 3 seeds pooled, cut at the terciles of that count (equal
    edges merged). Written to results/general_by_activity.json; returns a markdown table."""
    sys.path.insert(0, str(HERE))
    from _common import write_json

    cells = load_cells()
    records, lines = {}, ["| dataset | tower vs classical | train items | users | tower | classical | difference |",
                          "|---|---|---|---|---|---|---|"]
    for d in datasets:
        done = {m: c for (ds, m), c in cells.items() if ds == d and "runs" in c}
        towers, classical = [m for m in TOWERS if m in done], [m for m in CLASSICAL if m in done]
        if not towers or not classical:
            continue
        tower = max(towers, key=lambda m: done[m]["test_mean"])
        ref = max(classical, key=lambda m: done[m]["test_mean"])
        zt, zc = (np.load(cell_path(d, m).with_suffix(".npz")) for m in (tower, ref))
        counts, gain_t, gain_c = [], [], []
        for seed in done[tower]["seeds"]:
            train_items = np.diff(load_split(d, seed).train.to_csr().indptr)
            users = zt[f"seed{seed}_user"]
            if not np.array_equal(users, zc[f"seed{seed}_user"]):
                raise SystemExit(f"{d}: {tower} and {ref} scored different users on seed {seed}")
            counts.append(train_items[users])
            gain_t.append(zt[f"seed{seed}_ndcg"])
            gain_c.append(zc[f"seed{seed}_ndcg"])
        n, t, c = (np.concatenate(x) for x in (counts, gain_t, gain_c))
        edges = np.unique(np.quantile(n, [0, 1 / 3, 2 / 3, 1]).round())
        bins = np.clip(np.searchsorted(edges, n, side="right") - 1, 0, max(len(edges) - 2, 0))
        records[d] = {"tower": tower, "classical": ref, "bins": []}
        for b in range(max(len(edges) - 1, 1)):
            m = bins == b
            if not m.any():
                continue
            lo, hi = int(n[m].min()), int(n[m].max())
            r = {"train_items": [lo, hi], "users": int(m.sum()), "tower": float(t[m].mean()),
                 "classical": float(c[m].mean())}
            records[d]["bins"].append(r)
            lines.append(f"| {d} | {tower} vs {ref} | {lo}–{hi} | {r['users']:,} | {r['tower']:.4f} | "
                         f"{r['classical']:.4f} | {r['tower'] - r['classical']:+.4f} |")
    text = "\n".join(lines)
    write_json("general_by_activity", {"what": by_activity.__doc__, "metric": METRIC, "datasets": records,
                                       "table_markdown": text})
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--trials", type=int, default=8, help="Optuna trials per (dataset, model); recorded per cell")
    p.add_argument("--threads", type=int, default=1, help="torch threads per cell process")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--table", action="store_true", help="only rebuild results/general.json and print the table")
    p.add_argument("--cold", action="store_true", help="the cold-item / cold-user cells (seed 0) instead")
    p.add_argument("--by-activity", action="store_true",
                   help="the best tower against the best classical model by user activity (results/general_by_activity.json)")
    p.add_argument("--probe", nargs=3, metavar=("DATASET", "MODEL", "JSON"),
                   help="one fit of MODEL with the JSON overrides on DATASET's seed-0 split, scored on VALID only; "
                        "appended to results/general_probes.jsonl (how a search space or preset is chosen)")
    p.add_argument("--probe-seed", type=int, default=0, help="the model seed of --probe (the split stays seed 0's)")
    p.add_argument("--cell", nargs=2, metavar=("DATASET", "MODEL"), help=argparse.SUPPRESS)
    p.add_argument("--cold-cell", nargs=3, metavar=("DATASET", "KIND", "MODEL"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.by_activity:
        print(by_activity(a.datasets.split(",")))
        return 0
    if a.cold_cell:
        import torch

        torch.set_num_threads(a.threads)
        cell = run_cold_cell(*a.cold_cell)
        path = cold_path(*a.cold_cell[:2], a.cold_cell[2])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text(json.dumps(cell, indent=1, default=float))
        os.replace(path.with_suffix(".tmp"), path)
        return 0
    if a.cold:
        datasets = [d for d in a.datasets.split(",") if d in COLD_DATASETS]
        models = [m for m in a.models.split(",") if m in COLD_MODELS]
        for d in datasets:
            for kind in COLD_KINDS:
                for m in models:
                    if cold_path(d, kind, m).exists() and not a.overwrite:
                        continue
                    print(f"cold cell {d} / {kind} / {m} (load {os.getloadavg()[0]:.1f})", flush=True)
                    subprocess.call([sys.executable, __file__, "--cold-cell", d, kind, m, "--threads", str(a.threads)],
                                    env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
        text = cold_table()
        (HERE / "results" / "general_cold.md").write_text(text + "\n")
        print(text)
        return 0
    if a.probe:
        import torch

        torch.set_num_threads(a.threads)
        probe(a.probe[0], a.probe[1], json.loads(a.probe[2]), a.probe_seed)
        return 0
    if a.cell:
        import torch

        torch.set_num_threads(a.threads)
        write_cell(run_cell(a.cell[0], a.cell[1], a.trials, SEEDS))
        return 0
    if not a.table:
        for d in a.datasets.split(","):
            for m in a.models.split(","):
                if m not in SPACES or d not in DATASETS:
                    print(f"error: unknown model {m!r} or dataset {d!r}", file=sys.stderr)
                    return 2
                if cell_path(d, m).exists() and not a.overwrite:
                    continue
                print(f"cell {d} / {m} (load {os.getloadavg()[0]:.1f})", flush=True)
                env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
                rc = subprocess.call([sys.executable, __file__, "--cell", d, m, "--trials", str(a.trials),
                                      "--threads", str(a.threads)], env=env)
                if rc != 0:
                    print(f"cell {d} / {m} failed (rc {rc}); it will run again next time", flush=True)
    print(write_results())
    return 0


if __name__ == "__main__":
    sys.exit(main())
