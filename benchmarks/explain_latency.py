"""What an explanation adds to the latency of `/recommend`, for ml-100k models.

    python benchmarks/explain_latency.py [--models pop,itemknn,ease,als,hybrid,sasrec] [--requests 300]
        [--epochs 3] [--thread-per-request] [--http]

Each model is fitted on the whole of ml-100k (neural models for `--epochs` epochs: latency does not
depend on accuracy) and served in this process through the real app (`towerrec.serve.app.create_app`
with FastAPI's TestClient, one torch thread as `towerrec serve` runs it). The client is entered once
(`with TestClient(app)`), so every request runs on one event-loop thread, as under uvicorn: a bare
TestClient starts a new thread per request, and each new thread pays MKL's per-thread start-up on
its first matrix product (3-8 ms, measured), which is no cost of the server. For `--requests` known users
drawn with seed 0 (heavy users included, as they come), the same request is sent without and with
`"explain": true` (k = 10, alternating, after a warm-up), and so is a new-user request with a 5-item
history (the demo page's). Reported per model: p50 / p99 milliseconds of both, wall-clock and CPU time of
this process (the CPU figure is what a busy machine's scheduler does not inflate), and their
differences (the target: an explanation adds at most 5 ms to p99); and, without HTTP, the CPU time of
`service.explain` alone over `--service-requests` known users (steadier percentiles). Writes
benchmarks/results/explain_latency.json with the load average.

`--http` measures as a client sees it instead: the fitted model is saved and served by `towerrec
serve` (uvicorn, one worker, one torch thread, `--items` for titles) in its own process, and a raw
HTTP/1.1 client on one keep-alive loopback connection (`benchmarks/serve.py`'s) sends the same
alternating plain / `"explain": true` requests. In-process, the TestClient's own work on the
larger answer (~14 KB with explanations against ~2.6 KB) runs in the measured process and is
counted as the server's; here it is not. Writes benchmarks/results/explain_latency_http.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

from towerrec.data.registry import load_dataset  # noqa: E402
from towerrec.models import build_model  # noqa: E402
from towerrec.models.base import FitOptions  # noqa: E402
from towerrec.serve.catalogue import Catalogue  # noqa: E402
from towerrec.serve.service import RecommenderService  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
EPOCH_MODELS = {"cf", "content", "hybrid", "sasrec", "gru4rec", "nextitnet", "bert4rec", "hstu"}


def timed(client, body: dict) -> tuple[float, float]:
    """(wall ms, CPU ms of this process) of one request."""
    cpu, start = time.process_time(), time.perf_counter()
    response = client.post("/recommend", json=body)
    elapsed, used = (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000
    if response.status_code != 200:
        raise RuntimeError(response.text)
    return elapsed, used


def stats(times: list[tuple[float, float]]) -> dict:
    wall, cpu = np.array(times).T
    p50, p99 = np.percentile(wall, [50, 99])
    c50, c99 = np.percentile(cpu, [50, 99])
    return {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3), "mean_ms": round(float(wall.mean()), 3),
            "cpu_p50_ms": round(float(c50), 3), "cpu_p99_ms": round(float(c99), 3)}


def service_level(service, users: np.ndarray, n: int) -> dict:
    """What `explain` itself adds, without HTTP: CPU ms of `service.explain` after `service.recommend`,
    over `n` known users (more requests than through the app, so its p99 is steadier)."""
    from towerrec.serve.service import Query

    rng = np.random.default_rng(1)
    chosen = rng.choice(users, n)
    plain, explain = [], []
    for user in chosen:                      # one request at a time is what is being measured
        q = Query(user_id=str(user), history=None, k=10)
        start = time.process_time()
        recs = service.recommend(q)
        middle = time.process_time()
        service.explain(q, recs)
        plain.append((middle - start) * 1000)
        explain.append((time.process_time() - middle) * 1000)
    p = lambda v, q: round(float(np.percentile(v, q)), 3)   # noqa: E731
    return {"requests": n, "recommend_cpu_p50_ms": p(plain, 50), "recommend_cpu_p99_ms": p(plain, 99),
            "explain_cpu_p50_ms": p(explain, 50), "explain_cpu_p99_ms": p(explain, 99)}


def run(name: str, dataset, args) -> dict:
    from fastapi.testclient import TestClient

    from towerrec.serve.app import create_app

    model = build_model(name, {"epochs": args.epochs} if name in EPOCH_MODELS else {})
    model.fit(dataset.interactions, user_features=dataset.user_features, item_features=dataset.item_features,
              options=FitOptions(seed=0, progress=False, threads=1))
    inter = dataset.interactions
    if args.http:
        return measure_http(name, model, inter, args)
    catalogue = Catalogue(inter.item_map, model.item_popularity_, dataset.titles(range(inter.n_items)), dataset.items)
    client = TestClient(create_app(RecommenderService(model, catalogue)))
    if args.thread_per_request:          # the bare client: a new event-loop thread per request
        return measure(name, model, client, inter, args)
    with client:                         # one event-loop thread for all requests, as under uvicorn
        return measure(name, model, client, inter, args)


def measure(name: str, model, client, inter, args) -> dict:
    rng = np.random.default_rng(0)
    users = rng.choice(inter.user_map.ids, args.requests + 20)
    histories = [list(rng.choice(inter.item_map.ids, 5, replace=False)) for _ in range(args.requests + 20)]
    out: dict = {"history_lengths": {"median": float(np.median(np.diff(model.seen_.indptr))),
                                     "max": int(np.diff(model.seen_.indptr).max())}}
    alone = out["service, known user"] = service_level(client.app.state.service, users, args.service_requests)
    print(f"{name:9s} without HTTP, CPU ms: recommend p50 {alone['recommend_cpu_p50_ms']:.2f} / p99 "
          f"{alone['recommend_cpu_p99_ms']:.2f}; explain p50 {alone['explain_cpu_p50_ms']:.2f} / p99 "
          f"{alone['explain_cpu_p99_ms']:.2f}", flush=True)
    for kind, bodies in (("known user", [{"user_id": str(u), "k": 10} for u in users]),
                         ("new user, 5-item history", [{"history": [str(i) for i in h], "k": 10} for h in histories])):
        plain, explained = [], []
        for n, body in enumerate(bodies):    # one request at a time is what is being measured
            a = timed(client, body)
            b = timed(client, {**body, "explain": True})
            if n >= 20:                      # warm-up
                plain.append(a)
                explained.append(b)
        row = {"plain": stats(plain), "explain": stats(explained)}
        for key in ("p50_ms", "p99_ms", "cpu_p50_ms", "cpu_p99_ms"):
            row[f"added_{key}"] = round(row["explain"][key] - row["plain"][key], 3)
        out[kind] = row
        print(f"{name:9s} {kind:26s} wall p50 {row['plain']['p50_ms']:6.2f} -> {row['explain']['p50_ms']:6.2f}, "
              f"p99 {row['plain']['p99_ms']:6.2f} -> {row['explain']['p99_ms']:6.2f} ms | CPU p50 "
              f"{row['plain']['cpu_p50_ms']:5.2f} -> {row['explain']['cpu_p50_ms']:5.2f}, p99 "
              f"{row['plain']['cpu_p99_ms']:5.2f} -> {row['explain']['cpu_p99_ms']:5.2f} ms (load "
              f"{os.getloadavg()[0]:.1f})", flush=True)
    return out


def measure_http(name: str, model, inter, args) -> dict:
    """Known-user and new-user requests, plain then explained, against `towerrec serve` in a subprocess."""
    import asyncio
    import json
    import tempfile

    from serve import Server, post_recommend

    rng = np.random.default_rng(0)
    users = rng.choice(inter.user_map.ids, args.requests + 20)
    histories = [list(rng.choice(inter.item_map.ids, 5, replace=False)) for _ in range(args.requests + 20)]

    async def alternate(port: int, bodies: list[dict]) -> tuple[list[float], list[float]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        plain, explained = [], []
        try:
            for n, body in enumerate(bodies):    # one request at a time is what is being measured
                for flag, out in ((False, plain), (True, explained)):
                    data = json.dumps({**body, "explain": flag}).encode()
                    start = time.perf_counter()
                    status = await post_recommend(reader, writer, data)
                    if status != 200:
                        raise RuntimeError(f"{name}: HTTP {status}")
                    if n >= 20:                  # warm-up
                        out.append((time.perf_counter() - start) * 1000)
        finally:
            writer.close()
        return plain, explained

    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="towerrec-explain-http-") as tmp:
        path = Path(tmp) / name
        model.save(path)
        server = Server(path, "exact", 1, ["--items", str(Path(args.data) / "items.csv")]).wait(300)
        try:
            for kind, bodies in (("known user", [{"user_id": str(u), "k": 10} for u in users]),
                                 ("new user, 5-item history", [{"history": [str(i) for i in h], "k": 10}
                                                               for h in histories])):
                plain, explained = asyncio.run(alternate(server.port, bodies))
                row = {}
                for label, times in (("plain", plain), ("explain", explained)):
                    p50, p99 = np.percentile(times, [50, 99])
                    row[label] = {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3),
                                  "mean_ms": round(float(np.mean(times)), 3)}
                for key in ("p50_ms", "p99_ms"):
                    row[f"added_{key}"] = round(row["explain"][key] - row["plain"][key], 3)
                out[kind] = row
                print(f"{name:9s} {kind:26s} HTTP wall p50 {row['plain']['p50_ms']:6.2f} -> "
                      f"{row['explain']['p50_ms']:6.2f}, p99 {row['plain']['p99_ms']:6.2f} -> "
                      f"{row['explain']['p99_ms']:6.2f} ms (added p99 {row['added_p99_ms']:+.2f}; load "
                      f"{os.getloadavg()[0]:.1f})", flush=True)
        finally:
            server.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--models", default="pop,itemknn,ease,als,hybrid,sasrec")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--service-requests", type=int, default=1000)
    p.add_argument("--thread-per-request", action="store_true",
                   help="a bare TestClient (a new thread per request: MKL's per-thread start-up in every one)")
    p.add_argument("--http", action="store_true",
                   help="`towerrec serve` in its own process and a loopback HTTP client, instead of the TestClient")
    args = p.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    dataset = load_dataset(args.data)
    results = {name: run(name, dataset, args) for name in args.models.split(",")}
    write_json("explain_latency_http" if args.http else "explain_latency",
               {"requests": args.requests, "epochs": args.epochs, "k": 10, "http": args.http,
                "thread_per_request": args.thread_per_request, "load_average_before": load_before,
                "load_average_after": os.getloadavg(), "models": results})


if __name__ == "__main__":
    main()
