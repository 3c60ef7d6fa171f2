"""Reload under load: `towerrec serve` swaps model versions while 8 clients keep asking.

    python benchmarks/serve_reload.py --model als --duration 40 --name serve_reload
    python benchmarks/serve_reload.py --model hybrid --set epochs=3 --workers 2 --name serve_reload-hybrid-2w

A model store is made from the first 60% of ml-100k (by time); `towerrec serve STORE --watch 0.5`
(a token, one or more workers) starts; 8 keep-alive connections send POST /recommend (random
known users) in a closed loop for --duration seconds while this process, every --every seconds,
updates the model with the next slice of the log and publishes it as the store's next version (and,
with one worker, also asks POST /admin/reload every other time). Every response that is not a 200
and every connection error is counted as failed; the versions served are read from /info. Writes
results/<name>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402
from serve import Server, percentiles, read_response  # noqa: E402

from towerrec.artifact import publish  # noqa: E402
from towerrec.data.registry import load_dataset  # noqa: E402
from towerrec.models import build_model  # noqa: E402
from towerrec.models.base import FitOptions  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TOKEN = "reload-benchmark-token"


async def client(port: int, bodies: list[bytes], start: int, stride: int, stop: threading.Event, out: dict) -> None:
    """One keep-alive connection; a broken connection is a failure, then it reconnects."""
    i = start
    head = ("POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {{n}}\r\n\r\n")
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            out["errors"].append(repr(exc))
            await asyncio.sleep(0.05)
            continue
        try:
            while not stop.is_set():
                body = bodies[i % len(bodies)]
                i += stride
                t0 = time.perf_counter()
                writer.write(head.format(n=len(body)).encode() + body)
                await writer.drain()
                status, payload = await read_response(reader)
                out["latency"].append((time.perf_counter() - t0, time.time()))
                out["status"][status] = out["status"].get(status, 0) + 1
                if status == 200 and not json.loads(payload)["items"]:
                    out["empty"] += 1
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError) as exc:
            out["errors"].append(repr(exc))
        finally:
            writer.close()


def run_load(port: int, bodies: list[bytes], concurrency: int, stop: threading.Event, out: dict) -> None:
    async def main() -> None:
        await asyncio.gather(*(client(port, bodies, c, concurrency, stop, out) for c in range(concurrency)))

    asyncio.run(main())


def info(port: int) -> dict:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/info", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()


def main() -> None:
    import httpx

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="als")
    p.add_argument("--set", action="append", default=[], help="FIELD=VALUE config overrides")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=float, default=40.0)
    p.add_argument("--every", type=float, default=4.0, help="seconds between published versions")
    p.add_argument("--slices", type=int, default=8, help="the last 40% of the log cut into this many updates")
    p.add_argument("--work", default="/tmp/towerrec-serve-reload")
    p.add_argument("--name", default="serve_reload")
    args = p.parse_args()
    overrides = {k: json.loads(v) if v[:1].isdigit() else v for k, v in (s.split("=", 1) for s in args.set)}

    data = load_dataset(str(DATA / "ml-100k"))
    inter = data.interactions
    order = np.lexsort([inter.row, inter.time])
    cut = int(0.6 * len(order))
    first = inter.subset(np.sort(order[:cut]))
    slices = np.array_split(order[cut:], args.slices)
    options = FitOptions(seed=0, progress=False, threads=1)
    from towerrec.data.delta import compact

    first = compact(first)
    itf = data.item_features.aligned(first.item_map) if data.item_features is not None else None
    uf = data.user_features.aligned(first.user_map) if data.user_features is not None else None
    model = build_model(args.model, overrides).fit(first, user_features=uf, item_features=itf, options=options)
    work = Path(args.work)
    store = work / f"store-{args.name}"
    if store.exists():
        import shutil

        shutil.rmtree(store)
    publish(model, store)
    token_file = work / "token"
    token_file.write_text(TOKEN + "\n")
    server = Server(store, "exact", args.workers, ["--watch", "0.5", "--token-file", str(token_file)])
    published = []
    try:
        server.wait(600)
        users = list(model.user_map_.ids)
        rng = np.random.default_rng(0)
        bodies = [json.dumps({"user_id": str(u), "k": 10}).encode() for u in rng.choice(users, 500)]
        out: dict = {"latency": [], "status": {}, "errors": [], "empty": 0}
        stop = threading.Event()
        loader = threading.Thread(target=run_load, args=(server.port, bodies, args.concurrency, stop, out))
        start, load_before = time.time(), os.getloadavg()
        loader.start()
        for n, rows in enumerate(slices):
            if time.time() - start > args.duration - args.every:
                break
            time.sleep(max(0.0, start + (n + 1) * args.every - time.time()))
            new = inter.subset(np.sort(rows))
            items = data.items[data.items["item_id"].isin(set(inter.item_map.ids[np.unique(new.item_idx)]))] \
                if data.items is not None else None
            model.update(new, items=items, options=options)
            t_pub = time.time()
            publish(model, store)
            via = "watch"
            if args.workers == 1 and n % 2 == 1:
                r = httpx.post(f"http://127.0.0.1:{server.port}/admin/reload",
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
                via = f"POST /admin/reload -> {r.status_code}"
            # when did the server start answering with it? (each worker answers /info for itself)
            deadline = time.time() + 60
            while time.time() < deadline and info(server.port)["version"]["model_version"] < model.version:
                time.sleep(0.05)
            published.append({"version": model.version, "rows": len(new), "update_s": model.update_seconds_,
                              "via": via, "served_after_s": round(time.time() - t_pub, 3)})
            print(f"published version {model.version} ({len(new)} rows) via {via}: served "
                  f"{published[-1]['served_after_s']:.2f} s later", flush=True)
        time.sleep(max(0.0, start + args.duration - time.time()))
        stop.set()
        loader.join()
        final = info(server.port)
    finally:
        server.close()
    lat = [x[0] for x in out["latency"]]
    failed = sum(v for k, v in out["status"].items() if k != 200) + len(out["errors"])
    result = {"model": args.model, "overrides": overrides, "workers": args.workers, "concurrency": args.concurrency,
              "duration_s": args.duration, "requests": len(lat), "req_per_s": round(len(lat) / args.duration, 1),
              "failed": failed, "status": {str(k): v for k, v in out["status"].items()},
              "connection_errors": out["errors"][:20], "empty_lists": out["empty"], "latency": percentiles(lat),
              "published": published, "final_info_version": final["version"],
              "load_before": load_before, "load_after": os.getloadavg()}
    write_json(args.name, result)
    print(f"{len(lat):,} requests in {args.duration:.0f} s, {len(published)} versions published and served, "
          f"{failed} failed; p50 {result['latency'].get('p50_ms')} ms, p99 {result['latency'].get('p99_ms')} ms "
          f"(load {load_before[0]:.1f} -> {result['load_after'][0]:.1f})")


if __name__ == "__main__":
    main()
