"""Beyond accuracy and cost of the general example's seven models (examples/ml100k-general.toml).

    python benchmarks/beyond_cost_general.py [--run DIR]

Without `--run`, runs `towerrec run examples/ml100k-general.toml` (3 seeds, 7 models; as
`benchmarks/experiment_run.py`, in a subprocess, timed); with `--run DIR`, reads a finished run's
folder instead. Writes benchmarks/results/beyond_cost_general.json: per model, the test means over
seeds of NDCG@10 and every beyond-accuracy figure at K = 10, the NDCG@10 gaps between user groups,
the cost (parameters, artifact MB, peak fit MB, fit s, p50/p99 ms of one recommend call, with the
load average when each was measured), what measuring the cost took, each model's evaluation
seconds, the accuracy-cost frontier models, and the run's wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FIGURES = ("NDCG@10", "ILD@10", "EmbILD@10", "Novelty@10", "Serendipity@10", "ARP@10", "LongTail@10",
           "Miscalibration@10", "Coverage@10", "Gini@10", "NDCG@10 gap (gender)", "NDCG@10 gap (age)")
COSTS = ("params", "size_mb", "peak_mb", "fit_s", "p50_ms", "p99_ms")


def summarise(run: Path, wall: float | None) -> dict:
    from towerrec.experiments.plots import pareto_front

    board = pd.read_csv(run / "leaderboard.csv").set_index("model")
    results = json.loads((run / "results.json").read_text())
    models = {}
    for label, row in board.iterrows():
        seeds = results["models"][label]["per_seed"].values()
        models[label] = {**{f: (None if pd.isna(row.get(f)) else float(row[f])) for f in (*FIGURES, *COSTS)},
                         "cost_measuring_seconds": [s["cost"]["seconds"] for s in seeds],
                         "eval_seconds": [s["eval_seconds"] for s in seeds],
                         "load_average_at_latency": [s["cost"]["load_average"] for s in seeds]}
    frontier = {}
    for cost in ("fit_s", "p99_ms", "params", "size_mb"):
        frame = board[[cost, "NDCG@10"]].dropna()
        frame = frame[frame[cost] > 0]
        front = pareto_front(frame[cost].to_numpy(float), frame["NDCG@10"].to_numpy(float))
        frontier[cost] = [str(frame.index[i]) for i in front]
    total_cost = float(np.sum([sum(m["cost_measuring_seconds"]) for m in models.values()]))
    return {"run_seconds": results["seconds"], "wall_seconds": wall, "command": results.get("command"),
            "models": models, "frontier_by_cost": frontier, "cost_measuring_seconds_total": round(total_cost, 2),
            "eval_seconds_total": round(float(np.sum([sum(m["eval_seconds"]) for m in models.values()])), 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="a finished `towerrec run` folder of the general example")
    args = p.parse_args()
    load_before = os.getloadavg()
    wall = None
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else Path(tmp) / "results"
        if not args.run:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "towerrec.cli", "run", str(ROOT / "examples" / "ml100k-general.toml"),
                            "--out", str(run), "--data-dir", str(DATA)], check=True)
            wall = round(time.perf_counter() - start, 1)
        summary = summarise(run, wall)
    write_json("beyond_cost_general", {"load_average_now": load_before, "run_folder": args.run, **summary})


if __name__ == "__main__":
    main()
