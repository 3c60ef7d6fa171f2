"""CLI subcommands of the serving feature, registered by towerrec.cli.build_parser: `serve`, `index-stats`.

Imports here stay light (argparse only); FastAPI, uvicorn and faiss load when a command runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add `towerrec serve ARTIFACT` and `towerrec index-stats ARTIFACT`."""
    p = sub.add_parser("serve", help="serve a saved model over HTTP (REST API, OpenAPI docs, demo page)")
    p.add_argument("artifact", help="model folder written by `towerrec train`, or a model store (`towerrec update "
                                    "--publish`): its LATEST version is served")
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                   help="poll the artifact (a store's LATEST, or the folder's model.json) this often and swap to a "
                        "new version atomically when it changes (each worker polls for itself)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="worker processes (each loads the model)")
    p.add_argument("--token-file", default=None, metavar="FILE",
                   help="require the token in FILE (first line) on every request but /health; default: "
                        "$TOWERREC_TOKEN. Programs send 'Authorization: Bearer TOKEN', browsers ask for it")
    p.add_argument("--token", default=None,
                   help="the token itself (visible to other users in `ps`: prefer --token-file or $TOWERREC_TOKEN)")
    _add_index_args(p)
    p.add_argument("--items", default=None, help="CSV/Parquet items table (item_id + attributes) for titles and filters")
    p.add_argument("--threads", type=int, default=None,
                   help="torch/faiss threads per worker (default 1: concurrency comes from requests)")
    p.add_argument("--max-body-bytes", type=int, default=None, help="413 above this request size (default 256 KiB)")
    p.add_argument("--request-timeout", type=float, default=None, metavar="SECONDS",
                   help="close a connection that has not sent a complete request within this time after it "
                        "opened or after its last response (slow or idle clients; default 10)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("index-stats", help="ANN recall@k and latency of a model's retrieval index vs exact search")
    p.add_argument("artifact")
    _add_index_args(p)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--queries", type=int, default=1000, help="users sampled as queries (seeded)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--threads", type=int, default=1, help="torch/faiss threads, as a serving worker (default 1)")
    p.set_defaults(func=cmd_index_stats)


def _add_index_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", default="auto", choices=("exact", "faiss", "auto"),
                   help="retrieval for embedding models: exact top-k, FAISS, or auto (FAISS for large catalogues)")
    p.add_argument("--faiss", default="pq", choices=("pq", "hnsw", "ivf"),
                   help="FAISS structure: pq (4-bit fast-scan PQ + exact re-rank), hnsw or ivf")
    p.add_argument("--rerank", type=int, default=None, help="pq: candidates re-scored exactly per query")
    p.add_argument("--ef-search", type=int, default=None, help="HNSW efSearch (recall/latency knob)")
    p.add_argument("--nprobe", type=int, default=None, help="IVF lists probed per query")


def _faiss_options(args: argparse.Namespace) -> dict:
    out: dict = {"structure": args.faiss}
    if args.ef_search:
        out["ef_search"] = args.ef_search
    if args.nprobe:
        out["ivf_probe"] = args.nprobe
    if args.rerank:
        out["pq_rerank"] = args.rerank
    return out


#: modules of the `serve` extra, each with what it is for
SERVE_MODULES = {"fastapi": "FastAPI", "uvicorn": "uvicorn", "faiss": "faiss (faiss-cpu)", "orjson": "orjson",
                 "fastapi_offline": "the Swagger UI files (fastapi-offline)"}


def require_extra(modules: tuple[str, ...], command: str) -> None:
    """One line naming the first missing module of the `serve` extra and how to install it."""
    import importlib

    from towerrec.errors import TowerrecError

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise TowerrecError(f"`towerrec {command}` needs {SERVE_MODULES[name]}, which is not installed: "
                                "pip install 'towerrec[serve]'") from None


def read_token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, --token (with a warning) or $TOWERREC_TOKEN; None for none."""
    from towerrec.errors import TowerrecError
    from towerrec.serve.app import check_token

    if args.token and args.token_file:
        raise TowerrecError("give --token or --token-file, not both")
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as fh:
                token = fh.readline().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TowerrecError(f"{args.token_file}: cannot read the token file: {exc}") from None
        if not token:
            raise TowerrecError(f"{args.token_file}: the token file is empty")
        source = args.token_file
    elif args.token:
        print("towerrec: warning: --token is visible to other users of this machine (ps, /proc); "
              "prefer --token-file FILE or $TOWERREC_TOKEN", file=sys.stderr)
        token, source = args.token, "--token"
    else:
        token, source = os.environ.get("TOWERREC_TOKEN") or None, "$TOWERREC_TOKEN"
    if token is None:
        return None
    try:
        return check_token(token)
    except TowerrecError as exc:
        raise TowerrecError(f"{source}: {exc}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from towerrec.errors import TowerrecError

    require_extra(tuple(SERVE_MODULES), "serve")
    import uvicorn

    from towerrec.serve.app import MAX_BODY_BYTES
    from towerrec.serve.protocol import REQUEST_TIMEOUT, request_deadline_protocol

    if args.workers < 1:
        raise TowerrecError(f"--workers must be >= 1, got {args.workers}")
    if args.watch is not None and not 0 < args.watch <= 3600:
        raise TowerrecError(f"--watch must be in (0, 3600] seconds, got {args.watch}")
    if args.request_timeout is not None and not 0 < args.request_timeout <= 3600:
        raise TowerrecError(f"--request-timeout must be in (0, 3600] seconds, got {args.request_timeout}")
    token = read_token(args)
    if args.host not in ("127.0.0.1", "localhost", "::1") and token is None:
        print(f"towerrec: warning: serving on {args.host} without a token: anyone who can reach it can query it",
              file=sys.stderr)
    threads = args.threads or 1
    config = {"artifact": args.artifact, "index": args.index, "items": args.items, "faiss": _faiss_options(args),
              "max_body_bytes": args.max_body_bytes or MAX_BODY_BYTES, "threads": threads,
              "request_timeout": args.request_timeout or REQUEST_TIMEOUT, "watch": args.watch,
              "workers": args.workers}
    # workers are separate processes: they read the config (and the token) from the environment
    os.environ["TOWERREC_SERVE_CONFIG"] = json.dumps(config)
    if token:
        os.environ["TOWERREC_TOKEN"] = token
    if args.workers == 1:
        from towerrec.serve.app import app_from_env

        app = app_from_env()   # load before binding: a bad artifact is a one-line error, not a crashed server
        info = app.state.service.info()
        print(f"towerrec: serving {info['model']} ({info['catalogue']['items']:,} items, index "
              f"{info['index']['kind']}) on http://{args.host}:{args.port}  (docs: /docs, demo: /)", file=sys.stderr)
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, http=request_deadline_protocol())
    else:
        print(f"towerrec: serving {args.artifact} with {args.workers} workers on http://{args.host}:{args.port}",
              file=sys.stderr)
        uvicorn.run("towerrec.serve.app:app_from_env", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level=args.log_level, http=request_deadline_protocol())
    return 0


def cmd_index_stats(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from towerrec.errors import TowerrecError

    require_extra(("faiss",) if args.index != "exact" else (), "index-stats")
    from towerrec.index import FaissConfig, recall_at_k
    from towerrec.serve.service import RecommenderService, set_threads

    if args.k <= 0 or args.queries <= 0 or args.threads <= 0:
        raise TowerrecError("--k, --queries and --threads must be positive")
    set_threads(args.threads)
    service = RecommenderService.from_artifact(args.artifact, index_kind=args.index,
                                               faiss_config=FaissConfig(**_faiss_options(args)))
    if service.index is None:
        raise TowerrecError(f"{service.model.name} has no embeddings: it is served by exact model scores "
                            "(recall 1.0 by construction); index-stats needs an embedding model such as als")
    queries = service.sample_queries(args.queries)
    stats = {"model": service.model.name, "artifact": args.artifact, "queries": len(queries), "k": args.k,
             "index": service.index.describe(),
             f"recall_at_{args.k}": recall_at_k(service.index, service.exact, queries, k=args.k)}
    for name, index in (("exact", service.exact), ("index", service.index)):
        times = []
        for q in queries[: min(len(queries), 500)]:
            start = time.perf_counter()
            index.search(q[None, :], args.k)
            times.append(time.perf_counter() - start)
        ms = np.asarray(times) * 1e3
        stats[f"{name}_ms"] = {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    idx = stats["index"]
    print(f"{stats['model']}: {idx['n_items']:,} items x {idx['dim']} dims, metric {idx['metric']}, index {idx['kind']}"
          + (f" ({idx['structure']})" if "structure" in idx else ""))
    print(f"recall@{args.k} vs exact over {len(queries):,} user queries: {stats[f'recall_at_{args.k}']:.4f}")
    for name in ("exact", "index"):
        print(f"{name:>6} one query: p50 {stats[f'{name}_ms']['p50']:.3f} ms, p99 {stats[f'{name}_ms']['p99']:.3f} ms")
    return 0
