"""Hyperparameter sweep for a sequence model, picked on validation only, several seeds per config.

Each (config, seed) is one `sequential.one_run` (same protocol and record as sequential.py) in a
pool of worker processes; on a GPU many small runs share the card. The summary ranks configs by
their mean valid NDCG@10 (unmasked, RecBole's protocol) over the seeds that finished: the test
columns are printed beside it but never used to choose. Confirm the chosen config with
sequential.py on the machine whose wall time you report.

    python benchmarks/sequential_sweep.py --dataset ml-100k --workers 2           # CPU, slow
    python benchmarks/sequential_sweep.py --dataset ml-100k --device cuda --workers 12 --budget-s 420
    python benchmarks/sequential_sweep.py --summarise results/sequential_sweep_ml-100k.jsonl

Writes one JSON line per finished run to results/sequential_sweep_<dataset>.jsonl (appended, so an
interrupted sweep keeps what it finished) and the summary beside it (.json).
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_json  # noqa: E402

# SASRec on ml-100k, full softmax. Ordered by prior belief (most promising first), so a sweep cut
# short by its budget has the configs that matter most, each with all its seeds.
SHAPES = [{"embedding_dim": 32, "blocks": 1}, {"embedding_dim": 64, "blocks": 2}, {"embedding_dim": 64, "blocks": 1}]
GRID = [{**shape, "dropout": dropout, "attn_dropout": dropout, "learning_rate": lr, "batch_size": batch,
         "patience": 5}
        for batch, dropout, lr, shape in itertools.product((1024, 256), (0.2, 0.5), (1e-3, 3e-3), SHAPES)]


def config_key(config: dict) -> str:
    return ",".join(f"{k}={config[k]}" for k in sorted(config))


def _run(dataset: str, model: str, config: dict, seed: int, device: str) -> dict:
    from sequential import one_run
    record = one_run(dataset, model, config, threads=1, seed=seed, device=device)
    record.pop("history", None)
    return {**record, "sweep_config": config, "config_key": config_key(config)}


def summarise(records: list[dict]) -> list[dict]:
    """Per config: mean and spread of valid and test NDCG@10 over its seeds, best valid first."""
    by_config: dict[str, list[dict]] = {}
    for r in records:
        if "error" not in r:
            by_config.setdefault(r["config_key"], []).append(r)
    rows = []
    for key, runs in by_config.items():
        valid = [r["best_valid_NDCG@10"] for r in runs]
        test = [r["test"]["exclude_seen=false"]["NDCG@10"] for r in runs]
        rows.append({"config": runs[0]["sweep_config"], "seeds": sorted(r["seed"] for r in runs),
                     "valid_NDCG@10_mean": round(float(np.mean(valid)), 4),
                     "valid_NDCG@10_min": round(float(np.min(valid)), 4),
                     "test_NDCG@10_mean": round(float(np.mean(test)), 4),
                     "test_NDCG@10_min": round(float(np.min(test)), 4),
                     "test_NDCG@10_masked_mean": round(float(np.mean(
                         [r["test"]["exclude_seen=true"]["NDCG@10"] for r in runs])), 4),
                     "epochs_mean": round(float(np.mean([r["epochs_run"] for r in runs])), 1),
                     "fit_s_mean": round(float(np.mean([r["fit_s"] for r in runs])), 1)})
    return sorted(rows, key=lambda row: (-len(row["seeds"]), -row["valid_NDCG@10_mean"]))


def print_summary(rows: list[dict]) -> None:
    print(f"{'seeds':<6} {'valid mean':>10} {'valid min':>9} {'test mean':>9} {'test min':>8} {'masked':>7} "
          f"{'epochs':>6}  config")
    for row in rows:
        short = {k: v for k, v in row["config"].items() if k not in ("attn_dropout", "patience")}
        print(f"{len(row['seeds']):<6} {row['valid_NDCG@10_mean']:>10.4f} {row['valid_NDCG@10_min']:>9.4f} "
              f"{row['test_NDCG@10_mean']:>9.4f} {row['test_NDCG@10_min']:>8.4f} "
              f"{row['test_NDCG@10_masked_mean']:>7.4f} {row['epochs_mean']:>6}  {short}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--model", default="sasrec",
                        help="a run of sequential.py whose config is the base (the grid sets SASRec fields)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--budget-s", type=float, default=0.0, help="submit no run after this many seconds (0: none)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N configs of the grid")
    parser.add_argument("--out", default=None, help="JSONL path (default results/sequential_sweep_<dataset>.jsonl)")
    parser.add_argument("--summarise", default=None, help="only print the summary of this JSONL")
    args = parser.parse_args()
    if args.summarise:
        print_summary(summarise([json.loads(line) for line in Path(args.summarise).read_text().splitlines()]))
        return
    from sequential import CONFIGS

    from towerrec.models import MODELS
    if args.model not in CONFIGS.get(args.dataset, {}):
        parser.error(f"no run {args.model!r} for dataset {args.dataset!r}; sequential.py has "
                     f"{sorted(CONFIGS.get(args.dataset, {}))}")
    fields = MODELS[CONFIGS[args.dataset][args.model][0]].Config.__dataclass_fields__
    unknown = sorted({key for config in GRID for key in config} - set(fields))
    if unknown:
        parser.error(f"the grid sets {unknown}, which {args.model!r}'s config does not have")
    out = Path(args.out) if args.out else RESULTS / f"sequential_sweep_{args.dataset}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    grid = GRID[: args.limit] if args.limit else GRID
    jobs = [(config, seed) for config in grid for seed in seeds]   # config-major: whole configs first
    start = time.perf_counter()
    records: list[dict] = []
    pending: dict = {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool, out.open("a") as sink:
        queue = list(jobs)
        while queue or pending:
            while queue and len(pending) < args.workers and (
                    not args.budget_s or time.perf_counter() - start < args.budget_s):
                config, seed = queue.pop(0)
                pending[pool.submit(_run, args.dataset, args.model, config, seed, args.device)] = (config, seed)
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                config, seed = pending.pop(future)
                try:
                    record = future.result()
                except Exception as exc:   # one failed run must not lose the others
                    record = {"sweep_config": config, "config_key": config_key(config), "seed": seed,
                              "error": repr(exc)[-2000:]}
                record["sweep_elapsed_s"] = round(time.perf_counter() - start, 1)
                records.append(record)
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                print(f"[{record['sweep_elapsed_s']:>6.0f}s] seed {seed} "
                      + (f"valid {record['best_valid_NDCG@10']:.4f} test "
                         f"{record['test']['exclude_seen=false']['NDCG@10']:.4f} fit {record['fit_s']} s"
                         if "error" not in record else f"ERROR {record['error'][-300:]}")
                      + f"  {config}", flush=True)
    rows = summarise(records)
    print_summary(rows)
    write_json(out.stem, {"dataset": args.dataset, "model": args.model, "device": args.device, "gpu": _gpu_name(),
                          "selection": "mean best valid NDCG@10 (unmasked) over seeds; test never used to choose",
                          "wall_s": round(time.perf_counter() - start, 1), "runs_finished": len(records),
                          "runs_planned": len(jobs), "configs": rows}, path=out.with_suffix(".json"))


def _gpu_name() -> str | None:
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


if __name__ == "__main__":
    main()
