"""Loading, id-mapping and splitting a large synthetic log: wall time and peak RSS.

Writes the synthetic log to Parquet first (not timed), then, in a fresh process, times
`load_interactions` (read + validate + map ids + duplicate policy) and `random_split`.

    python benchmarks/load_split.py [--rows 20000000] [--users 500000] [--items 100000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, write_json  # noqa: E402


def generate(folder: Path, rows: int, users: int, items: int) -> Path:
    from towerrec.data.synthetic import write_synthetic

    write_synthetic(folder, n_users=users, n_items=items, n_interactions=rows, seed=0, parquet=True)
    return folder / "interactions.parquet"


def measure(path: Path, split: str) -> dict:
    from towerrec.data.load import load_interactions
    from towerrec.splits import make_split

    t0 = time.perf_counter()
    inter, report = load_interactions(path)
    t1 = time.perf_counter()
    parts = make_split(inter, split, seed=0)
    t2 = time.perf_counter()
    return {"rows": len(inter), "users": inter.n_users, "items": inter.n_items,
            "load_and_map_s": round(t1 - t0, 2), "split_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
            "split_rows": parts.info["rows"], "report": report.lines(), "peak_rss_mb": round(peak_rss_mb(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--users", type=int, default=500_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--split", default="random")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # child process: only the timed part, so peak RSS is the loader's own
        print(json.dumps(measure(Path(args.measure), args.split)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = generate(Path(tmp) / "synthetic", args.rows, args.users, args.items)
        gen_s = time.perf_counter() - t0
        out = subprocess.run([sys.executable, __file__, "--measure", str(path), "--split", args.split],
                             check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["file_mb"] = round(path.stat().st_size / 2**20, 1)
    result["generate_s_untimed"] = round(gen_s, 1)
    print(json.dumps(result, indent=2))
    write_json("load_split", result)


if __name__ == "__main__":
    main()
