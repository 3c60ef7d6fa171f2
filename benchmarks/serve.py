"""Serving latency and throughput: the retrieval index in-process, then the REST API end to end over loopback.

Part 1 (in-process): random-normal 64-d item embeddings (100K and 1M by default), one query at a
time, k=10: exact top-k vs FAISS (fast-scan PQ + exact re-rank), build time, ANN recall@10 vs
exact, p50/p95/p99, and the cost of over-fetching under exclusions and a filter.
Part 2 (HTTP): `towerrec serve` in a subprocess on 127.0.0.1, driven by a bounded keep-alive load
generator (asyncio, raw HTTP/1.1, stops after --duration seconds): ml-100k models (EASE, ALS;
`--models ease,als,hybrid`: any `towerrec train --model` name, or `--artifact PATH`) and the synthetic catalogues
(served as an ALS artifact with random factors), each exact and FAISS. Latency at concurrency 1,
then throughput at --concurrency. Every non-2xx is counted; a 5xx fails the targets.

    python benchmarks/serve.py                      # everything (~10 min on 2 cores)
    python benchmarks/serve.py --quick              # 20K items, short runs (~2 min): a smoke test
    python benchmarks/serve.py --sizes 100000 --skip-http --name serve-100k
    python benchmarks/serve.py --sizes "" --skip-index --models hybrid --name serve-two-tower

Writes benchmarks/results/serve.json with the targets and whether each was met, and the load
average before and after: on a shared machine the tails (p99) are what suffers first.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, write_json  # noqa: E402

from towerrec.index import ExactIndex, FaissConfig, FaissIndex, recall_at_k  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIM, K = 64, 10
TWO_TOWER_NAMES = ("two-tower", "cf", "content", "hybrid")
TARGETS = {
    "exact_100k_p99_ms": 10.0,       # top-10 over 100K items, exact, one request
    "faiss_1m_p99_ms": 5.0,          # 1M items, FAISS, one request ...
    "faiss_1m_recall_at_10": 0.95,   # ... at this recall
    "ml100k_req_per_s": 500.0,       # ml-100k model, sustained
    "ml100k_p99_ms": 20.0,
    "http_5xx": 0,
}


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    if not len(ms):
        return {"n": 0}
    return {"n": int(len(ms)), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p95_ms": round(float(np.percentile(ms, 95)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def one_at_a_time(search, queries: np.ndarray, **kw) -> dict:
    exclude = kw.get("exclude")
    rows = [{**kw, "exclude": exclude[i:i + 1]} if exclude is not None else kw for i in range(len(queries))]
    for i in range(min(20, len(queries))):   # warm-up: caches, lazy allocations
        search(queries[i:i + 1], K, **rows[i])
    times = []
    for i in range(len(queries)):
        start = time.perf_counter()
        search(queries[i:i + 1], K, **rows[i])
        times.append(time.perf_counter() - start)
    return percentiles(times)


# ---- part 1: the index in-process --------------------------------------------------------------
def bench_index(n_items: int, n_queries: int, faiss_config: FaissConfig, cache: Path) -> dict:
    rng = np.random.default_rng(0)
    items = rng.standard_normal((n_items, DIM), dtype=np.float32)
    queries = rng.standard_normal((n_queries, DIM), dtype=np.float32)
    exact = ExactIndex(items)
    row: dict = {"items": n_items, "dim": DIM, "k": K, "queries": n_queries, "exact": one_at_a_time(exact.search, queries)}
    # a built index is cached (with its build time beside it): HNSW on 1M items takes many minutes
    path = cache / f"faiss-{faiss_config.structure}-{n_items}.index"
    meta = path.with_suffix(".json")
    start = time.perf_counter()
    if path.exists() and meta.exists() and json.loads(meta.read_text())["config"] == faiss_config.__dict__:
        ann = FaissIndex.load(str(path), items, "ip", faiss_config)
        built = json.loads(meta.read_text())["build_seconds"]
    else:
        ann = FaissIndex(items, "ip", faiss_config)
        built = ann.build_seconds
        ann.save(str(path))
        meta.write_text(json.dumps({"config": faiss_config.__dict__, "build_seconds": built}))
    row["faiss"] = {**ann.describe(), "build_seconds": round(built, 2),
                    "build_or_load_s": round(time.perf_counter() - start, 2)}
    row["faiss"]["recall_at_10"] = round(recall_at_k(ann, exact, queries[:200], k=K), 4)
    row["faiss"]["latency"] = one_at_a_time(ann.search, queries)
    # a user's 100 seen items excluded, and a filter keeping half the catalogue: over-fetch and refill
    seen = sp.csr_matrix((np.ones(100 * n_queries, np.float32), rng.integers(0, n_items, 100 * n_queries),
                          np.arange(n_queries + 1) * 100), shape=(n_queries, n_items))
    allowed = rng.random(n_items) < 0.5
    row["faiss"]["latency_exclude100_filter50"] = one_at_a_time(ann.search, queries, exclude=seen, allowed=allowed)
    row["exact_exclude100_filter50"] = one_at_a_time(exact.search, queries[:100], exclude=seen[:100], allowed=allowed)
    print(f"index {n_items:>9,} items: exact p99 {row['exact']['p99_ms']:.2f} ms | faiss {faiss_config.structure} "
          f"p99 {row['faiss']['latency']['p99_ms']:.2f} ms, recall@10 {row['faiss']['recall_at_10']:.3f}, "
          f"build {row['faiss']['build_seconds']:.1f} s", flush=True)
    return row


# ---- part 2: HTTP ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`towerrec serve` on a free loopback port; always stopped by `close`."""

    def __init__(self, artifact: Path, index: str, workers: int, extra: list[str]) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "towerrec.cli", "serve", str(artifact), "--port", str(self.port),
               "--index", index, "--workers", str(workers), *extra]
        self.log = open(artifact.parent / f"serve-{artifact.name}-{index}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float) -> "Server":
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError(f"server not ready after {timeout} s; see {self.log.name}")

    def info(self) -> dict:
        import httpx

        return httpx.get(f"http://127.0.0.1:{self.port}/info", timeout=30).json()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response with a Content-Length (keep-alive connections)."""
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return status, await reader.readexactly(length)


async def post_recommend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> int:
    """One `POST /recommend` on a keep-alive connection; its status once the whole answer is read."""
    head = (f"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    writer.write(head + body)
    await writer.drain()
    status, _ = await read_response(reader)
    return status


async def _client(port: int, bodies: list[bytes], start_at: int, stride: int, deadline: float,
                  max_requests: int, out: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start_at
    try:
        while time.perf_counter() < deadline and out["sent"] < max_requests:
            body = bodies[i % len(bodies)]
            i += stride
            out["sent"] += 1
            t0 = time.perf_counter()
            status = await post_recommend(reader, writer, body)
            out["latency"].append(time.perf_counter() - t0)
            out["status"][status] = out["status"].get(status, 0) + 1
    finally:
        writer.close()


def load(port: int, bodies: list[bytes], concurrency: int, seconds: float, max_requests: int) -> dict:
    """Closed loop: `concurrency` keep-alive connections, each sending the next request when answered."""
    out: dict = {"sent": 0, "latency": [], "status": {}}

    async def run() -> float:
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(_client(port, bodies, c, concurrency, deadline, max_requests, out)
                               for c in range(concurrency)))
        return time.perf_counter() - start

    warm: dict = {"sent": 0, "latency": [], "status": {}}
    asyncio.run(_warm(port, bodies, warm))
    elapsed = asyncio.run(run())
    n = len(out["latency"])
    return {"concurrency": concurrency, "seconds": round(elapsed, 2), "requests": n,
            "req_per_s": round(n / elapsed, 1), **percentiles(out["latency"]),
            "status": {str(k): v for k, v in sorted(out["status"].items())},
            "http_5xx": sum(v for k, v in out["status"].items() if k >= 500)}


async def _warm(port: int, bodies: list[bytes], out: dict) -> None:
    await _client(port, bodies, 0, 1, time.perf_counter() + 2.0, 50, out)


def bench_http(name: str, artifact: Path, index: str, bodies: list[bytes], args: argparse.Namespace,
               extra: list[str] | None = None, startup_timeout: float = 900) -> dict:
    start = time.perf_counter()
    server = Server(artifact, index, args.workers, extra or [])
    try:
        server.wait(startup_timeout)
        started = time.perf_counter() - start
        info = server.info()
        single = load(server.port, bodies, 1, args.duration / 2, args.max_requests)
        loaded = load(server.port, bodies, args.concurrency, args.duration, args.max_requests)
    finally:
        server.close()
    row = {"name": name, "index": info["index"], "items": info["data"]["items"], "workers": args.workers,
           "startup_s": round(started, 1), "single": single, "load": loaded}
    print(f"http {name:<28} {index:<6} 1 conn: p50 {single['p50_ms']:.2f} p99 {single['p99_ms']:.2f} ms | "
          f"{args.concurrency} conns: {loaded['req_per_s']:.0f} req/s, p99 {loaded['p99_ms']:.2f} ms | "
          f"non-2xx {sum(v for k, v in loaded['status'].items() if not k.startswith('2'))}", flush=True)
    return row


def ml100k_artifact(model: str, cache: Path) -> Path:
    path = cache / f"ml100k-{model}"
    if not (path / "model.json").exists():
        data = os.environ.get("TOWERREC_SHARED_DATA", str(ROOT.parent / "shared" / "data")) + "/ml-100k"
        subprocess.run([sys.executable, "-m", "towerrec.cli", "train", "--data", data, "--model", model,
                        "--split", "none", "--out", str(path)], check=True)
    return path


def synthetic_artifact(n_items: int, cache: Path, n_users: int = 2000) -> Path:
    """An ALS artifact with random-normal factors: the catalogue size is all that matters here."""
    from towerrec.data.idmap import IdMap
    from towerrec.models.als import ALS

    path = cache / f"synthetic-{n_items}"
    if (path / "model.json").exists():
        return path
    rng = np.random.default_rng(0)
    model = ALS(factors=DIM)
    model.user_map_ = IdMap([f"u{i}" for i in range(n_users)], name="user")
    model.item_map_ = IdMap([f"i{i}" for i in range(n_items)], name="item")
    cols = rng.integers(0, n_items, 20 * n_users)
    model.seen_ = sp.csr_matrix((np.ones(len(cols), np.float32), cols, np.arange(n_users + 1) * 20),
                                shape=(n_users, n_items))
    model.seen_.sum_duplicates()
    counts = np.bincount(cols, minlength=n_items).astype(np.float32)
    model.item_popularity_ = counts / counts.sum()
    model.user_factors_ = torch.from_numpy(rng.standard_normal((n_users, DIM), dtype=np.float32))
    model.item_factors_ = torch.from_numpy(rng.standard_normal((n_items, DIM), dtype=np.float32))
    model.mean_conf_ = 1.0
    model.save(path)
    return path


def user_bodies(users: list[str], k: int = K, n: int = 2000, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [json.dumps({"user_id": users[i], "k": k}).encode() for i in rng.integers(0, len(users), n)]


def check_targets(index_rows: list[dict], http_rows: list[dict]) -> dict:
    got: dict = {}
    for row in index_rows:
        if row["items"] == 100_000:
            got["exact_100k_p99_ms"] = row["exact"]["p99_ms"]
        if row["items"] == 1_000_000:
            got["faiss_1m_p99_ms"] = row["faiss"]["latency"]["p99_ms"]
            got["faiss_1m_recall_at_10"] = row["faiss"]["recall_at_10"]
    for row in http_rows:
        # the target is for the ml-100k two-tower model; other ml-100k models are reported beside it
        if row["name"].split()[-1] in TWO_TOWER_NAMES:
            got[f"{row['name']} req_per_s"] = row["load"]["req_per_s"]
            got[f"{row['name']} p99_ms (under load)"] = row["load"]["p99_ms"]
    got["http_5xx"] = sum(r["load"]["http_5xx"] + r["single"]["http_5xx"] for r in http_rows)
    met = {}
    for key, value in got.items():
        target_key = ("ml100k_req_per_s" if key.endswith("req_per_s") else
                      "ml100k_p99_ms" if key.endswith("(under load)") else key)
        target = TARGETS.get(target_key)
        if target is None:
            continue
        higher = target_key in ("ml100k_req_per_s", "faiss_1m_recall_at_10")
        met[key] = {"value": value, "target": target, "met": bool(value >= target if higher else value <= target)}
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="synthetic catalogue sizes")
    parser.add_argument("--queries", type=int, default=1000, help="single queries timed per index")
    parser.add_argument("--models", default="ease,als,hybrid", help="ml-100k models to train and serve")
    parser.add_argument("--artifact", action="append", default=[], help="extra artifact folder(s) to serve")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per HTTP run")
    parser.add_argument("--max-requests", type=int, default=20_000, help="cap per HTTP run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--faiss", default="pq", choices=("pq", "hnsw", "ivf"))
    parser.add_argument("--cache", default="/tmp/towerrec-bench-serve", help="artifacts and FAISS indexes")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-index", action="store_true")
    parser.add_argument("--quick", action="store_true", help="20K items, short runs")
    parser.add_argument("--name", default=None,
                        help="results file benchmarks/results/NAME.json (default serve, serve-quick with --quick)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.queries, args.duration = "20000", 200, 3.0
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)                  # as a serving worker runs (see towerrec serve --threads)
    import faiss

    faiss.omp_set_num_threads(1)
    load_before = os.getloadavg()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    faiss_config = FaissConfig(structure=args.faiss)
    index_rows = [] if args.skip_index else [bench_index(n, args.queries, faiss_config, cache) for n in sizes]
    http_rows = []
    if not args.skip_http:
        for model in [m for m in args.models.split(",") if m]:
            path = ml100k_artifact(model, cache)
            users = json.loads((path / "user_ids.json").read_text())
            http_rows.append(bench_http(f"ml-100k {model}", path, "auto", user_bodies(users), args))
        for extra in args.artifact:
            path = Path(extra)
            users = json.loads((path / "user_ids.json").read_text())
            http_rows.append(bench_http(f"{path.name}", path, "auto", user_bodies(users), args))
        for n in sizes:
            path = synthetic_artifact(n, cache)
            users = json.loads((path / "user_ids.json").read_text())
            for index in ("exact", "faiss"):
                http_rows.append(bench_http(f"synthetic {n:,}", path, index, user_bodies(users), args,
                                            extra=["--faiss", args.faiss]))
    load_after = os.getloadavg()
    payload = {
        "note": ("one request at a time unless 'load'; torch/faiss 1 thread per worker; the load generator "
                 "shares the same cores as the server. Load average (1, 5, 15 min) before and after is recorded: "
                 "other jobs on a shared machine inflate the tails first."),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "faiss": faiss_config.__dict__, "index": index_rows, "http": http_rows,
        "targets": check_targets(index_rows, http_rows), "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    write_json(args.name or ("serve-quick" if args.quick else "serve"), payload)
    for key, row in payload["targets"].items():
        print(f"  {'met ' if row['met'] else 'MISS'} {key}: {row['value']} (target {row['target']})")


if __name__ == "__main__":
    main()
