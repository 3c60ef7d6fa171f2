"""Sequential models side by side with RecBole 1.2.1 on the same data and protocol.

Protocol (RecBole's sequential quick-start, ../shared/peers/SUMMARY.md): leave-one-out by time
(`position` for the Amazon/Last.fm files; ties by original row), full ranking over all items,
Hit@10, NDCG@10, MRR@10, early stopping on valid NDCG@10, best checkpoint tested. The test input is
the user's train + valid sequence (newest `max_len` items). Every test figure is reported twice:
`exclude_seen: false` (nothing masked: RecBole's sequential protocol) and `exclude_seen: true`
(train + valid items masked: towerrec's default). Early stopping always uses the unmasked valid
NDCG@10, like RecBole.

Each (dataset, model) runs in its own process, so `wall_s` (process start to exit: imports, load,
split, fit, valid passes, both test passes) and `peak_rss_mb` are per run, as RecBole's were
measured with /usr/bin/time. RecBole rows are NOT rerun here: they are the peers' figures
(../shared/peers/results/*.jsonl, same machine type: 2 vCPU, torch 2.13 CPU).

Duplicates: loaded with policy `keep` (a repeated item is part of a sequence). None of the five
files has a repeated (user, item) pair, so `keep` and the default `first` give the same log.

    python benchmarks/sequential.py                      # ml-100k + amazon-beauty, main configs
    python benchmarks/sequential.py --datasets ml-100k --runs sasrec,gru4rec --threads 2
    python benchmarks/sequential.py --datasets ml-100k --scaling   # SASRec: embedding size x blocks
    python benchmarks/sequential.py --datasets amazon-beauty --scaling --grid d128-b2,d32-b1   # some cells
Writes benchmarks/results/sequential.json, merged with the runs already there (key: dataset/run),
so several invocations may run side by side.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, peak_rss_mb, write_json  # noqa: E402

SHARED = Path(os.environ.get("TOWERREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PEERS = SHARED.parent / "peers" / "results"

# Run name -> (model, config overrides, seed). "recbole-arch" keeps RecBole's SASRec exactly
# (architecture, dropout 0.5, CE, max length 50) and non-overlapping windows: the per-epoch cost
# comparison. The other runs use towerrec's defaults (windows of 50 with stride 25) plus the listed
# overrides. patience 5 everywhere (RecBole's stopping_step is 10): valid NDCG@10 on 943 users is
# noisy (+-0.005), and waiting 10 epochs for it only costs wall time.
# Every run starts from these pins: the settings its figures were measured with, written out so
# that they do not move when the library's defaults do (SASRec's are RecBole 1.2.1's: 64/2 blocks,
# dropout 0.5, full softmax, 1,024 targets per step, lr 1e-3, up to 200 epochs).
LOOP = {"epochs": 200, "batch_size": 1024, "learning_rate": 1e-3, "weight_decay": 0.0, "grad_clip": 0.0,
        "steps_per_epoch": 0, "loss": "ce", "negatives": 256, "negative_sampler": "uniform", "gbce_t": 0.75,
        "window_stride": None, "patience": 10}
PINNED = {
    "sasrec": {**LOOP, "embedding_dim": 64, "max_len": 50, "blocks": 2, "heads": 2, "inner_dim": 256, "dropout": 0.5,
               "attn_dropout": 0.5, "norm_first": False, "activation": "gelu"},
    "gru4rec": {**LOOP, "embedding_dim": 64, "hidden_dim": 128, "layers": 1, "dropout": 0.3, "max_len": 50},
    "nextitnet": {**LOOP, "embedding_dim": 64, "kernel": 3, "dilations": (1, 4), "blocks": 5, "dropout": 0.0,
                  "max_len": 50},
    "hstu": {**LOOP, "embedding_dim": 64, "max_len": 50, "blocks": 2, "heads": 2, "dropout": 0.2, "time_buckets": 32,
             "temperature": 0.05},
    "bert4rec": {**LOOP, "embedding_dim": 64, "max_len": 50, "blocks": 2, "heads": 2, "inner_dim": 256, "dropout": 0.2,
                 "attn_dropout": 0.2, "mask_ratio": 0.2, "last_mask_prob": 0.1},
}
P = {"patience": 5}
SAMPLED = {"loss": "sampled_softmax", "negatives": 1024, **P}   # large catalogues: 12k-24k items
TUNED = {"embedding_dim": 32, "blocks": 1, "dropout": 0.2, "attn_dropout": 0.2, "learning_rate": 3e-3,
         "batch_size": 256, **P}
DENSE = {
    "sasrec-recbole-arch": ("sasrec", {"window_stride": 50, **P}, 0),
    "sasrec": ("sasrec", P, 0),
    "sasrec-seed1": ("sasrec", P, 1),
    "sasrec-seed2": ("sasrec", P, 2),
    "sasrec-dropout0.2": ("sasrec", {"dropout": 0.2, "attn_dropout": 0.2, **P}, 0),
    "gru4rec": ("gru4rec", P, 0),
    "nextitnet": ("nextitnet", P, 0),
    "hstu": ("hstu", P, 0),
    "bert4rec": ("bert4rec", {"patience": 10}, 0),
    "sasrec-maxlen200": ("sasrec", {"max_len": 200, **P}, 0),
    # + a learned offset for items already in the window (not vanilla SASRec; see models/sequential.py)
    "sasrec-seenbias": ("sasrec", {"seen_bias": True, **P}, 0),
    "sasrec-seenbias-seed1": ("sasrec", {"seen_bias": True, **P}, 1),
    "sasrec-seenbias-seed2": ("sasrec", {"seen_bias": True, **P}, 2),
    "gru4rec-seenbias": ("gru4rec", {"seen_bias": True, **P}, 0),
    # capped at 12 epochs: the wall-time budget (1/4 of RecBole GRU4Rec's 1,663 s) on a loaded box
    "sasrec-seenbias-12ep": ("sasrec", {"seen_bias": True, "epochs": 12, **P}, 0),
    # the valid-best cell of the ml-100k scaling grid (valid NDCG@10 0.0685), over three seeds
    "sasrec-d32-b1": ("sasrec", {"embedding_dim": 32, "blocks": 1, **P}, 0),
    "sasrec-d32-b1-seed1": ("sasrec", {"embedding_dim": 32, "blocks": 1, **P}, 1),
    "sasrec-d32-b1-seed2": ("sasrec", {"embedding_dim": 32, "blocks": 1, **P}, 2),
    # longer histories (the SASRec paper reads 200 items on MovieLens-1M; RecBole reads 50)
    "sasrec-d32-b1-maxlen200": ("sasrec", {"embedding_dim": 32, "blocks": 1, "max_len": 200, **P}, 0),
    "sasrec-d32-b1-maxlen200-seed1": ("sasrec", {"embedding_dim": 32, "blocks": 1, "max_len": 200, **P}, 1),
    "sasrec-d32-b1-maxlen200-seed2": ("sasrec", {"embedding_dim": 32, "blocks": 1, "max_len": 200, **P}, 2),
    "sasrec-maxlen200-seed1": ("sasrec", {"max_len": 200, **P}, 1),
    "sasrec-maxlen200-seed2": ("sasrec", {"max_len": 200, **P}, 2),
    # picked on valid by benchmarks/sequential_sweep.py (24 configs x 3 seeds, on a GPU): best mean valid
    "sasrec-tuned": ("sasrec", TUNED, 0),
    "sasrec-tuned-seed1": ("sasrec", TUNED, 1),
    "sasrec-tuned-seed2": ("sasrec", TUNED, 2),
    # item content: genres (items.csv) and the title through MiniLM, added to the id embeddings
    "sasrec-d32-b1-content": ("sasrec", {"embedding_dim": 32, "blocks": 1, "item_features": True,
                                         "text": "pretrained", **P}, 0),
    "sasrec-d32-b1-content-seed1": ("sasrec", {"embedding_dim": 32, "blocks": 1, "item_features": True,
                                               "text": "pretrained", **P}, 1),
    "sasrec-d32-b1-content-seed2": ("sasrec", {"embedding_dim": 32, "blocks": 1, "item_features": True,
                                               "text": "pretrained", **P}, 2),
    "sasrec-content": ("sasrec", {"item_features": True, "text": "pretrained", **P}, 0),
}
SPARSE = {
    "sasrec-sampled": ("sasrec", SAMPLED, 0),
    "sasrec-sampled-popularity": ("sasrec", {**SAMPLED, "negative_sampler": "popularity"}, 0),
    "sasrec-ce": ("sasrec", P, 0),                 # full softmax: ~6x the sampled cost per epoch here
    "gru4rec-sampled": ("gru4rec", SAMPLED, 0),
    "hstu-sampled": ("hstu", SAMPLED, 0),
    "sasrec-sampled-seenbias": ("sasrec", {**SAMPLED, "seen_bias": True}, 0),
}
CONFIGS = {"ml-100k": DENSE, "lastfm-s3rec": DENSE, "amazon-beauty": SPARSE, "amazon-sports": SPARSE,
           "amazon-videogames-sasrec": SPARSE}
MAIN_RUNS = {"ml-100k": ["sasrec-recbole-arch", "sasrec", "sasrec-seed1", "sasrec-seed2", "sasrec-dropout0.2",
                         "gru4rec", "nextitnet", "hstu", "bert4rec"],
             "amazon-beauty": ["sasrec-sampled", "gru4rec-sampled"],
             "lastfm-s3rec": ["sasrec", "gru4rec"],
             "amazon-sports": ["sasrec-sampled"],
             "amazon-videogames-sasrec": ["sasrec-sampled"]}
SCALING = [{"embedding_dim": d, "blocks": b} for d in (32, 64, 128) for b in (1, 2)]


def one_run(dataset: str, run: str, overrides: dict, threads: int, seed: int | None = None,
            device: str = "auto") -> dict:
    """Fit and evaluate in this process; returns the record for sequential.json.

    `seed` replaces the run's own seed (benchmarks/sequential_sweep.py); `device` is FitOptions'."""
    start = time.perf_counter()
    import numpy as np
    import torch

    from towerrec.data.registry import load_dataset
    from towerrec.data.load import LoadOptions
    from towerrec.evaluation import evaluate_split
    from towerrec.models import MODELS
    from towerrec.models.base import FitOptions
    from towerrec.splits import leave_one_out

    torch.set_num_threads(threads)
    model_name, config, run_seed = CONFIGS[dataset][run]
    seed = run_seed if seed is None else seed
    config = {**PINNED[model_name], **config, **overrides}
    ds = load_dataset(SHARED / dataset, LoadOptions(duplicates="keep"))
    split = leave_one_out(ds.interactions)
    model = MODELS[model_name](**config)
    t_fit = time.perf_counter()
    setup_s = t_fit - start
    model.fit(split.train, valid=split.valid, item_features=ds.item_features,   # used by content runs only
              options=FitOptions(seed=seed, progress=False, threads=threads, device=device,
                                 exclude_seen=False))   # early stopping on RecBole's protocol: nothing masked
    fit_s = time.perf_counter() - t_fit
    test = {}
    t_eval = time.perf_counter()
    for exclude_seen in (False, True):   # test histories: train + valid (RecBole's protocol)
        res = evaluate_split(model, split, k=(10,), metrics=("HitRate", "NDCG", "MRR"), exclude_seen=exclude_seen,
                             parts=("test",))["test"]
        test[f"exclude_seen={str(exclude_seen).lower()}"] = {k: round(v, 4) for k, v in res.summary.items()
                                                            if k in ("HitRate@10", "NDCG@10", "MRR@10")}
    eval_s = time.perf_counter() - t_eval
    epochs = model.history_
    n_params = sum(p.numel() for p in model.module_.parameters())
    return {
        "dataset": dataset, "run": run, "model": model_name, "seed": seed, "config": dataclasses.asdict(model.config),
        "test": test, "valid_metric": "NDCG@10 (exclude_seen=false)",
        "best_valid_NDCG@10": round(max(e.get("valid_NDCG@10", 0.0) for e in epochs), 4),
        "best_epoch": model.best_epoch_, "epochs_run": len(epochs),
        "train_s_per_epoch": round(float(np.mean([e["seconds"] for e in epochs])), 2),
        "valid_eval_s_per_epoch": round(float(np.mean([e.get("eval_seconds", 0.0) for e in epochs])), 3),
        "fit_s": round(fit_s, 1), "test_eval_s": round(eval_s, 2), "setup_s_in_process": round(setup_s, 2),
        # per epoch: train seconds, valid-pass seconds, valid NDCG@10 (benchmarks/sequential_curve.py)
        "history": [{"epoch": i, "seconds": round(e["seconds"], 3),
                     "eval_seconds": round(e.get("eval_seconds", 0.0), 3),
                     "elapsed_in_fit": round(e["elapsed"], 3),
                     "valid_NDCG@10": round(e["valid_NDCG@10"], 5) if "valid_NDCG@10" in e else None}
                    for i, e in enumerate(epochs, 1)],
        "wall_s_in_process": round(time.perf_counter() - start, 1), "device": str(next(model.module_.parameters()).device),
        "n_params": int(n_params), "n_users_evaluated": int(len(split.test.active_users())),
        "split_rows": split.info["rows"], "torch_threads": threads,
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2), "peak_rss_mb_in_process": round(peak_rss_mb(), 1),
    }


def spawn(dataset: str, run: str, overrides: dict, threads: int) -> dict:
    """`one_run` in a fresh process under /usr/bin/time (wall and peak RSS of the whole process)."""
    cmd = [sys.executable, __file__, "--one", dataset, run, "--overrides", json.dumps(overrides),
           "--threads", str(threads)]
    timer = ["/usr/bin/time", "-f", "TIME %e %M"] if Path("/usr/bin/time").exists() else []
    start = time.perf_counter()
    proc = subprocess.run(timer + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"dataset": dataset, "run": run, "error": proc.stderr[-2000:]}
    record = json.loads(lines[-1])
    record["wall_s"] = round(wall, 1)
    for line in proc.stderr.splitlines():
        if line.startswith("TIME "):
            _, wall_s, rss_kb = line.split()
            record["wall_s"], record["peak_rss_mb"] = float(wall_s), round(int(rss_kb) / 1024, 1)
    return record


def recbole_rows() -> list[dict]:
    """The peers' RecBole 1.2.1 sequential runs on ml-100k (not rerun here)."""
    rows = []
    for name in ("recbole_ml100k.jsonl", "recbole_ml100k_long.jsonl"):
        path = PEERS / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r.get("protocol") != "sequential":
                continue
            rows.append({
                "dataset": "ml-100k", "run": f"recbole-{r['model'].lower()}" + ("-converged" if "long" in name else ""),
                "source": f"../shared/peers/results/{name} (RecBole 1.2.1, run by peers, same machine type)",
                "test": {"exclude_seen=false": {"HitRate@10": r["test"]["hit@10"], "NDCG@10": r["test"]["ndcg@10"],
                                                "MRR@10": r["test"]["mrr@10"]}},
                "best_valid_NDCG@10": r.get("best_valid_score"), "best_epoch": r.get("best_epoch"),
                "epochs_run": r.get("epochs_run"), "train_s_per_epoch": r.get("train_seconds_per_epoch"),
                "wall_s": r.get("wall_seconds"), "peak_rss_mb": r.get("peak_rss_mb"), "n_params": r.get("n_params"),
                "stopped_by_time_budget": r.get("stopped_by_time_budget"), "torch_threads": r.get("torch_threads"),
                "converged": "long" in name or not r.get("stopped_by_time_budget"),
            })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="ml-100k,amazon-beauty")
    parser.add_argument("--runs", default=None, help="comma-separated run names (default: the main runs)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per run (1 on a shared box: threads oversubscribe badly)")
    parser.add_argument("--scaling", action="store_true", help="SASRec: embedding size x blocks grid")
    parser.add_argument("--grid", default=None,
                        help="with --scaling: only these cells, e.g. d128-b2,d32-b1 (default: all six)")
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "RUN"), help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], args.one[1], json.loads(args.overrides), args.threads)))
        return
    for dataset in args.datasets.split(","):
        if args.scaling:
            base = "sasrec" if dataset in ("ml-100k", "lastfm-s3rec") else "sasrec-sampled"
            cells = [(f"d{c['embedding_dim']}-b{c['blocks']}", c) for c in SCALING]
            if args.grid:
                wanted = args.grid.split(",")
                unknown = set(wanted) - {name for name, _ in cells}
                if unknown:
                    parser.error(f"unknown --grid cells {sorted(unknown)}; choose from {[n for n, _ in cells]}")
                cells = sorted((c for c in cells if c[0] in wanted), key=lambda c: wanted.index(c[0]))
            todo = [(f"{base}-scaling-{name}", c) for name, c in cells]
        else:
            names = args.runs.split(",") if args.runs else MAIN_RUNS[dataset]
            todo = [(n, {}) for n in names]
        for run, overrides in todo:
            record = spawn(dataset, run.split("-scaling")[0], overrides, args.threads)
            record["run"] = run if args.threads == 1 else f"{run}@{args.threads}threads"
            record["rerun"] = (f"python benchmarks/sequential.py --datasets {dataset} --threads {args.threads} "
                               + (f"--scaling --grid {run.split('-scaling-')[1]}" if args.scaling else f"--runs {run}"))
            save(record)
            test = record.get("test", {})
            print(f"{dataset:<14} {run:<28} " + "  ".join(
                f"{key}: NDCG@10 {v['NDCG@10']:.4f} HR@10 {v['HitRate@10']:.4f}" for key, v in test.items())
                + f"  wall {record.get('wall_s', float('nan'))} s"
                + (f"  ERROR {record['error'][-300:]}" if "error" in record else ""), flush=True)


def save(record: dict) -> None:
    """Merge one run into sequential.json (re-read first: other invocations may have written)."""
    path = RESULTS / "sequential.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    runs = {f"{r['dataset']}/{r['run']}": r for r in old.get("runs", [])}
    runs[f"{record['dataset']}/{record['run']}"] = record
    write_json("sequential", {"protocol": __doc__.split("\n\n")[1], "machine_note": _note(),
                              "runs": sorted(runs.values(), key=lambda r: (r["dataset"], r["run"])),
                              "recbole": recbole_rows()})


def _note() -> str:
    return ("Timings on a shared 2-vCPU box while other jobs ran (see load_avg_1min_at_end per run); "
            "RecBole figures were measured on a quiet box of the same type with 2 torch threads. "
            f"This run: {machine()['cpus']} CPUs.")


if __name__ == "__main__":
    main()
