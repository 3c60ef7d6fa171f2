"""implicit's ALS on a Parquet log: the tool a user would pick instead of towerrec at this scale.

Run with an interpreter that has `implicit` (a throwaway venv, never a towerrec dependency):

    /work/venv-implicit/bin/python benchmarks/implicit_als.py /work/bigdata/synthetic-20m --threads 2

Reads the two id columns with pyarrow, builds the user x item CSR (binary), fits
`implicit.cpu.als.AlternatingLeastSquares(factors=64, iterations=15, regularization=0.01)` and
prints one JSON line: read / build / fit seconds, interactions x iterations per second, peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", help="a dataset folder with interactions.parquet, or the file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # implicit's own advice: its threads, not BLAS's
    import implicit
    from implicit.cpu.als import AlternatingLeastSquares

    path = Path(args.log)
    path = path / "interactions.parquet" if path.is_dir() else path
    start = time.perf_counter()
    table = pq.read_table(path, columns=["user_id", "item_id"])
    user = pc.dictionary_encode(table.column("user_id")).combine_chunks()
    item = pc.dictionary_encode(table.column("item_id")).combine_chunks()
    u = user.indices.to_numpy().astype(np.int32)
    i = item.indices.to_numpy().astype(np.int32)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    matrix = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=(len(user.dictionary), len(item.dictionary)))
    matrix.sum_duplicates()
    del u, i, table
    build_s = time.perf_counter() - start
    model = AlternatingLeastSquares(factors=args.factors, iterations=args.iterations, regularization=0.01,
                                    num_threads=args.threads, random_state=0, calculate_training_loss=False)
    start = time.perf_counter()
    model.fit(matrix, show_progress=False)
    fit_s = time.perf_counter() - start
    print(json.dumps({
        "tool": f"implicit {implicit.__version__} AlternatingLeastSquares (CPU)", "factors": args.factors,
        "iterations": args.iterations, "threads": args.threads, "rows": int(matrix.nnz),
        "users": matrix.shape[0], "items": matrix.shape[1], "read_seconds": read_s, "csr_seconds": build_s,
        "fit_seconds": fit_s, "seconds_per_iteration": fit_s / args.iterations,
        "interactions_per_s": matrix.nnz * args.iterations / fit_s,
        "interactions_per_s_note": "rows x iterations / fit seconds: each ALS iteration reads every interaction "
                                   "twice (user and item half-steps)",
        "peak_rss_gb_in_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "load_avg_at_end": list(os.getloadavg())}))


if __name__ == "__main__":
    main()
