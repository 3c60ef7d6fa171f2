"""Choosing the sequence models' defaults: SASRec candidates through the CLI's own code path.

What a user gets from `towerrec evaluate --data <name> --split loo --models sasrec` is what this
measures: `load_dataset` with the CLI's default options, `make_split("loo", seed=0)`, and
`runner.run_model` with `exclude_seen=True` (train items masked, for early stopping too), k=(10, 20).
Each (dataset, candidate) runs in its own process under /usr/bin/time (wall from process start,
imports and loading included, and peak RSS).

Every candidate pins every training field it depends on, so its figures do not move when the
defaults change. Candidates are ranked on VALID NDCG@10 (masked) only; test is recorded, never
used to choose.

    python benchmarks/sequential_defaults.py --datasets ml-100k,lastfm-s3rec --candidates recbole-ce,tuned-ce
    python benchmarks/sequential_defaults.py --summarise

Appends one JSON line per run to results/sequential_defaults.jsonl and rewrites the summary
results/sequential_defaults.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, peak_rss_mb, write_json  # noqa: E402

SHARED = Path(os.environ.get("TOWERREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DATASETS = ("ml-100k", "lastfm-s3rec", "amazon-beauty", "amazon-sports")
JSONL = RESULTS / "sequential_defaults.jsonl"

# Architectures: RecBole's SASRec (the defaults before this sweep) and the config picked on ml-100k
# valid by sequential_sweep.py (32/1, dropout 0.2, lr 3e-3, 256 targets per step).
RECBOLE = {"embedding_dim": 64, "blocks": 2, "dropout": 0.5, "attn_dropout": 0.5, "learning_rate": 1e-3,
           "batch_size": 1024}
TUNED = {"embedding_dim": 32, "blocks": 1, "dropout": 0.2, "attn_dropout": 0.2, "learning_rate": 3e-3,
         "batch_size": 256}
MID = {"embedding_dim": 64, "blocks": 1, "dropout": 0.5, "attn_dropout": 0.5, "learning_rate": 3e-3,
       "batch_size": 256}
LOOP = {"epochs": 100, "patience": 3}
CE = {"loss": "ce"}


def sampled(n: int) -> dict:
    return {"loss": "sampled_softmax", "negatives": n, "negative_sampler": "uniform"}


CANDIDATES: dict[str, dict] = {
    "recbole-ce": {**RECBOLE, **CE, **LOOP},
    "recbole-s1024": {**RECBOLE, **sampled(1024), **LOOP},
    "tuned-ce": {**TUNED, **CE, **LOOP},
    "tuned-s1024": {**TUNED, **sampled(1024), **LOOP},
    "tuned-s4096": {**TUNED, **sampled(4096), **LOOP},
    "mid-ce": {**MID, **CE, **LOOP},
    "mid-s1024": {**MID, **sampled(1024), **LOOP},
    "tuned-d05-ce": {**TUNED, "dropout": 0.5, "attn_dropout": 0.5, **CE, **LOOP},
    "tuned-d05-s1024": {**TUNED, "dropout": 0.5, "attn_dropout": 0.5, **sampled(1024), **LOOP},
    "tuned-d01-s4096": {**TUNED, "dropout": 0.1, "attn_dropout": 0.1, **sampled(4096), **LOOP},
    "d64-s4096": {**TUNED, "embedding_dim": 64, **sampled(4096), **LOOP},
    "b2-s4096": {**TUNED, "blocks": 2, **sampled(4096), **LOOP},
    "recbole-s4096": {**RECBOLE, **sampled(4096), **LOOP},
    # the defaults before this sweep (RecBole 1.2.1's loop: 200 epochs, patience 10, full softmax) and
    # the candidate: the same architecture, a sampled softmax with 4,096 uniform negatives above 4,096
    # items (a full softmax up to there), at most 100 epochs with patience 3
    "defaults-old": {**RECBOLE, **CE, "epochs": 200, "patience": 10},
    "defaults-new": {**RECBOLE, "loss": "auto", "sampled_above": 4096, "negatives": 4096,
                     "negative_sampler": "uniform", **LOOP},
    # patience 3 stopped ml-100k at epoch 11 (valid 0.1125 against 0.1260 at patience 10): keep 10
    "defaults-p10": {**RECBOLE, "loss": "auto", "sampled_above": 4096, "negatives": 4096,
                     "negative_sampler": "uniform", "epochs": 100, "patience": 10},
    "recbole-lr3-s4096": {**RECBOLE, "learning_rate": 3e-3, **sampled(4096), **LOOP},
}


def one_run(dataset: str, candidate: str, threads: int) -> dict:
    """The CLI's evaluate path for one model, in this process."""
    start = time.perf_counter()
    import torch

    from towerrec.data.registry import load_dataset
    from towerrec.models import build_model
    from towerrec.models.base import FitOptions
    from towerrec.runner import run_model
    from towerrec.splits import make_split

    if threads:
        torch.set_num_threads(threads)
    overrides = CANDIDATES[candidate]
    model = build_model("sasrec", overrides)
    ds = load_dataset(str(SHARED / dataset))
    split = make_split(ds.interactions, "loo", seed=0)
    run = run_model("sasrec", model, split, user_features=ds.user_features, item_features=ds.item_features,
                    k=(10, 20), options=FitOptions(seed=0, progress=False), exclude_seen=True)
    history = run.training_history or []
    valid_key = "valid_NDCG@10"
    return {
        "dataset": dataset, "candidate": candidate, "overrides": overrides, "n_items": ds.interactions.n_items,
        "valid_NDCG@10": round(run.valid.summary["NDCG@10"], 4), "test_NDCG@10": round(run.test.summary["NDCG@10"], 4),
        "test_HitRate@10": round(run.test.summary["HitRate@10"], 4),
        "protocol": "loo seed 0, full ranking, train (+valid) items masked (the CLI default)",
        "best_epoch": model.best_epoch_, "epochs_run": len(history),
        "fit_s": round(run.fit_seconds, 1), "eval_s": round(run.eval_seconds, 1),
        "train_s_per_epoch": round(sum(h["seconds"] for h in history) / max(len(history), 1), 2),
        "history": [{"seconds": round(h["seconds"], 2), "eval_seconds": round(h.get("eval_seconds", 0.0), 2),
                     "elapsed": round(h["elapsed"], 1), "valid": round(h.get(valid_key, 0.0), 5)} for h in history],
        "torch_threads": torch.get_num_threads(), "wall_s_in_process": round(time.perf_counter() - start, 1),
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()], "peak_rss_mb_in_process": round(peak_rss_mb(), 1),
    }


def spawn(dataset: str, candidate: str, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--one", dataset, candidate, "--threads", str(threads)]
    timer = ["/usr/bin/time", "-f", "TIME %e %M %U %S"] if Path("/usr/bin/time").exists() else []
    load_start = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    proc = subprocess.run(timer + cmd, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"dataset": dataset, "candidate": candidate, "error": proc.stderr[-2000:]}
    record = json.loads(lines[-1])
    record["wall_s"] = round(time.perf_counter() - start, 1)
    record["load_avg_at_start"] = load_start
    for line in proc.stderr.splitlines():
        if line.startswith("TIME "):
            _, wall_s, rss_kb, user_s, sys_s = line.split()
            record["wall_s"], record["peak_rss_mb"] = float(wall_s), round(int(rss_kb) / 1024, 1)
            # CPU seconds: on a shared box wall time mostly measures the other jobs
            record["cpu_s"] = round(float(user_s) + float(sys_s), 1)
    record["code"] = os.environ.get("TOWERREC_CODE", "working tree")   # the commit the sweep ran on
    record["command"] = f"python benchmarks/sequential_defaults.py --datasets {dataset} --candidates {candidate} " \
                        f"--threads {threads}"
    return record


def summarise(records: list[dict]) -> dict:
    """Per candidate and dataset: the latest run; candidates ordered by their mean valid rank."""
    latest: dict[tuple[str, str], dict] = {}
    for r in records:
        if "error" not in r:
            latest[(r["candidate"], r["dataset"])] = r
    table = {}
    for (cand, ds), r in sorted(latest.items()):
        table.setdefault(cand, {"overrides": r["overrides"], "datasets": {}})["datasets"][ds] = {
            k: r.get(k) for k in ("valid_NDCG@10", "test_NDCG@10", "test_HitRate@10", "best_epoch", "epochs_run",
                                  "fit_s", "eval_s", "wall_s", "train_s_per_epoch", "torch_threads",
                                  "load_avg_at_start", "peak_rss_mb")}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (0: torch's default)")
    parser.add_argument("--summarise", action="store_true", help="only rewrite the summary from the JSONL")
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "CANDIDATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], args.one[1], args.threads)))
        return
    if not args.summarise:
        unknown = set(args.candidates.split(",")) - set(CANDIDATES)
        if unknown:
            parser.error(f"unknown candidates {sorted(unknown)}; choose from {sorted(CANDIDATES)}")
        for dataset in args.datasets.split(","):
            for cand in args.candidates.split(","):
                record = spawn(dataset, cand, args.threads)
                JSONL.parent.mkdir(parents=True, exist_ok=True)
                with JSONL.open("a") as sink:
                    sink.write(json.dumps(record) + "\n")
                print(f"{dataset:<14} {cand:<18} " + (
                    f"valid {record['valid_NDCG@10']:.4f} test {record['test_NDCG@10']:.4f} "
                    f"epochs {record['epochs_run']} (best {record['best_epoch']}) wall {record['wall_s']} s"
                    if "error" not in record else f"ERROR {record['error'][-400:]}"), flush=True)
    records = [json.loads(line) for line in JSONL.read_text().splitlines()] if JSONL.exists() else []
    write_json("sequential_defaults", {
        "selection": "valid NDCG@10 (masked, the CLI default) only; test recorded, never used to choose",
        "candidates": CANDIDATES, "results": summarise(records)})


if __name__ == "__main__":
    main()
