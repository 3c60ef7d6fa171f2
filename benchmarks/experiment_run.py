"""Wall time of `towerrec run` on an experiment file (issue 6's target: the general ml-100k example,
every general model over 3 seeds, in under 5 minutes on 2 CPU cores).

    python benchmarks/experiment_run.py [--experiment examples/ml100k-general.toml] [--jobs N]

Runs the CLI as a subprocess, so interpreter start, imports, worker start-up and the report are
all inside the measured time, and writes benchmarks/results/experiment_run.json with the wall
time, each model's mean fit seconds and its test NDCG@10 (mean ± std over seeds). Timings depend
on what else runs on the machine: run it alone.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TARGET_SECONDS = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=str(ROOT / "examples" / "ml100k-general.toml"))
    parser.add_argument("--jobs", type=int, default=None, help="passed on; default: towerrec's own (one per core)")
    parser.add_argument("--name", default="experiment_run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results"
        command = [str(Path(sys.executable).parent / "towerrec"), "run", args.experiment, "--out", str(out),
                   "--data-dir", str(DATA), *(["--jobs", str(args.jobs)] if args.jobs else [])]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"towerrec run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        import pandas as pd

        board = pd.read_csv(out / "leaderboard.csv")
        manifest = json.loads((out / "manifest.json").read_text())
    rows = [{"model": r["model"], "NDCG@10": round(float(r["NDCG@10"]), 4), "NDCG@10_std": round(float(r["NDCG@10_std"]), 4),
             "fit_seconds_mean": round(float(r["fit_s"]), 1)} for _, r in board.iterrows()]
    for row in rows:
        print(f"{row['model']:>8}  NDCG@10 {row['NDCG@10']:.4f} ± {row['NDCG@10_std']:.4f}  fit {row['fit_seconds_mean']:.1f} s")
    print(f"{' '.join(command[1:3])}: {wall:.1f} s wall (target < {TARGET_SECONDS:.0f} s)")
    write_json(args.name, {"experiment": str(Path(args.experiment).relative_to(ROOT)) if Path(args.experiment).is_relative_to(ROOT)
                           else args.experiment, "jobs": args.jobs or "default", "seeds": manifest.get("seeds"),
                           "wall_seconds": round(wall, 1), "target_seconds": TARGET_SECONDS,
                           "target_met": wall < TARGET_SECONDS, "leaderboard": rows})


if __name__ == "__main__":
    main()
