"""How often a DDP rank dies of heap corruption with several sparse tables on gloo, on the default
process group against towerrec's single-threaded one (`towerrec.distributed.ddp_group`).

    python benchmarks/ddp_sparse_crash.py --launches 6 --procs 4 --steps 1500

Each launch is one `torchrun --nproc_per_node PROCS` of this file's worker: a module with two id
tables and three feature `EmbeddingBag`s (sparse gradients, as `hybrid`'s), a linear layer, an
in-batch softmax, SparseAdam (DDP's `find_unused_parameters` off unless --find-unused), PROCS
ranks of one thread each, STEPS steps of 256 rows. A launch fails when any rank exits non-zero;
the record says how many did, and what the failed ranks printed ("malloc(): unaligned tcache
chunk detected", "Segmentation fault", ...). Results go to results/ddp_sparse_crash.json (re-read
before writing, one record per group).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "ddp_sparse_crash.json"
CRASH = re.compile(r"malloc[_a-z]*\(\)[^\n]*|free\(\)[^\n]*|double free[^\n]*|corrupted[^\n]*|Segmentation fault")


def worker(group_kind: str, steps: int, find_unused: bool) -> None:
    import faulthandler

    import torch
    from torch import nn

    from towerrec.distributed import ddp_group, distributed_context
    from towerrec.models.base import FitOptions

    faulthandler.enable()          # a crashed rank prints its Python stack
    torch.set_num_threads(1)
    ctx = distributed_context(FitOptions(device="cpu", dist_timeout=120.0))
    torch.manual_seed(0)

    class Tables(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.users, self.items = nn.Embedding(5000, 32, sparse=True), nn.Embedding(3000, 32, sparse=True)
            self.small = nn.EmbeddingBag(3, 32, mode="sum", sparse=True)
            self.medium = nn.EmbeddingBag(20, 32, mode="mean", sparse=True)
            self.large = nn.EmbeddingBag(100, 32, mode="mean", sparse=True)
            self.head = nn.Linear(32, 32)

        def forward(self, users, items, small, medium, large, offsets):  # noqa: ANN001, ANN201
            u = self.users(users) + self.small(small, offsets) + self.medium(medium, offsets)
            return u @ self.head(self.items(items) + self.large(large, offsets)).T

    module = Tables()
    group = ddp_group() if group_kind == "towerrec" else None
    ddp = nn.parallel.DistributedDataParallel(module, process_group=group, find_unused_parameters=find_unused)
    optimizer = torch.optim.SparseAdam([p for name, p in module.named_parameters() if not name.startswith("head")])
    rng = torch.Generator().manual_seed(ctx.rank)
    rows = 256
    offsets = torch.arange(rows)
    for _ in range(steps):
        ids = [torch.randint(0, n, (rows,), generator=rng) for n in (5000, 3000, 3, 20, 100)]
        loss = nn.functional.cross_entropy(ddp(*ids, offsets), torch.arange(rows))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def launch(group_kind: str, procs: int, steps: int, find_unused: bool, log_dir: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent / "src")}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
           str(procs), "--log-dir", str(log_dir), "--redirects", "3", __file__, "--worker", group_kind,
           "--steps", str(steps)] + (["--find-unused"] if find_unused else [])
    shutil.rmtree(log_dir, ignore_errors=True)          # a launch's logs only
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    text = "".join(p.read_text(errors="replace") for p in sorted(log_dir.rglob("stderr.log")))
    return {"ok": proc.returncode == 0, "seconds": round(time.perf_counter() - t0, 1),
            "crash": sorted(set(CRASH.findall(text)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=6)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--find-unused", action="store_true", help="DDP's find_unused_parameters (towerrec's setting)")
    parser.add_argument("--groups", default="default,towerrec", help="comma-separated: default, towerrec")
    parser.add_argument("--worker", choices=["default", "towerrec"], help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default="/tmp/ddp_sparse_crash")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.find_unused)
        return
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    unused = " --find-unused" if args.find_unused else ""
    for kind in args.groups.split(","):
        load = os.getloadavg()
        runs = [launch(kind, args.procs, args.steps, args.find_unused,
                       Path(args.scratch) / f"{kind}-{int(args.find_unused)}-{k}") for k in range(args.launches)]
        failed = [r for r in runs if not r["ok"]]
        results[f"{kind}{'-find-unused' if args.find_unused else ''}"] = {
            "command": f"python benchmarks/ddp_sparse_crash.py --launches {args.launches} --procs {args.procs} "
                       f"--steps {args.steps} --groups {kind}{unused}",
            "launches": len(runs), "failed": len(failed), "procs": args.procs, "steps": args.steps,
            "find_unused_parameters": args.find_unused,
            "loadavg_start": load, "loadavg_end": os.getloadavg(), "runs": runs}
        print(f"{kind}: {len(failed)} of {len(runs)} launches failed", flush=True)
        OUT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
