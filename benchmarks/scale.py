"""Scale: two-tower training on 20M and 100M synthetic interactions, against a bare-torch floor and
implicit's ALS on the same log.

    python benchmarks/scale.py                                   # every part, 20m and 100m
    python benchmarks/scale.py --runs cf-throughput-20m,cf-ml100k --threads 2
    python benchmarks/scale.py --list
    python benchmarks/scale.py --runs cf-throughput-20m --set embedding_optimizer=rowwise_adagrad \
        --set embedding_learning_rate=0.1      # a config override; the record's run name carries it

Each run is one process (peak RSS is per run: the largest single process from /usr/bin/time, and
the sum over the process tree, DataLoader workers included, sampled every 0.5 s) and adds its
record to results/scale.json (re-read before writing, so runs may be added one at a time).

Logs: `towerrec.data.synthetic.write_synthetic` (500K users x 100K items x 20M rows; 2.5M users x
100K items x 100M rows; seed 0) written as Parquet in row groups of 131,072 rows to --data-dir
(outside the repository). What each run measures:

- `cf-throughput-<size>`: preset cf streamed from the Parquet log (`fit_stream`), a fixed number of
  steps (`--steps`, global batch 1,024); interactions_per_s = rows trained / seconds of those
  steps, the reader's start included; steady_interactions_per_s leaves out the first step (which
  waits for the shuffle buffer to fill, ~1 s), as the floor leaves out its warm-up steps.
  In the same process, the floor (`train_floor.py`): the same step in bare torch (two
  embedding tables of the same sizes with sparse gradients, the linear layer on each, cosine /
  temperature against the batch's distinct items with logQ, backward) on rows the reader yielded,
  no optimiser.
- `cf-interleaved-<size>`: the same comparison in alternating blocks of one process (12 rounds of
  `--steps / 12` towerrec steps, read from the stream, and as many floor steps): percent_of_floor
  is the median of the 12 paired ratios, which a host whose speed drifts between runs moves far
  less than the ratio of two separately timed rates.
- `cf-epoch-<size>`: one full streamed cf epoch with the 2,000-user held-out sample, the seen pass
  and saving the artifact; epoch_seconds is the training epoch alone.
- `hybrid-throughput-20m`: preset hybrid without text (ids, user and item features, mean history)
  in memory (a history tower needs every user's history: it does not stream), a fixed number of
  steps; floor: a bare-torch module of the same shapes (id tables, small feature tables on dense
  gradients, history items embedded once, pooled per row, then projected, MLP 256, cosine, in-batch
  softmax), no optimiser.
- `hybrid-paths-<size>`: hybrid's two step-shape choices on and off in alternating blocks of one
  process (the same batches): the history tower's affine map after the pooling or on every history
  item, small feature tables on dense or sparse gradients; per variant the median ms a step and
  the median paired speed-up against both off.
- `<preset>-ml100k`: the quality check, the same code path on ml-100k's random 8:1:1 split (seed 0):
  cf streamed from the train part written to Parquet (early stopping on the stream's own held-out
  sample), hybrid without text in memory; test NDCG@10 with train + valid items masked.
- `implicit-20m`: implicit's ALS (factors 64, 15 iterations) fitted on the same 20M log, run with the
  throwaway venv's interpreter (--implicit-python); never a towerrec dependency.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, parse_set, peak_rss_mb, write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("TOWERREC_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
SIZES = {"1m": dict(n_users=20_000, n_items=10_000, n_interactions=1_000_000),     # for trying the script
         "20m": dict(n_users=500_000, n_items=100_000, n_interactions=20_000_000),
         "100m": dict(n_users=2_500_000, n_items=100_000, n_interactions=100_000_000)}
ROW_GROUP = 1 << 17
RUNS = ["gen-20m", "cf-ml100k", "hybrid-ml100k", "cf-throughput-20m", "cf-interleaved-20m", "hybrid-throughput-20m", "hybrid-paths-20m", "cf-epoch-20m",
        "implicit-20m", "gen-100m", "cf-throughput-100m", "cf-epoch-100m"]


# ---- helpers run inside the measured process ----------------------------------------------------
def log_dir(data_dir: Path, size: str) -> Path:
    return data_dir / f"synthetic-{size}"


def gen(size: str, data_dir: Path) -> dict:
    from towerrec.data.synthetic import write_synthetic

    out = log_dir(data_dir, size)
    start = time.perf_counter()
    if not (out / "interactions.parquet").exists():
        write_synthetic(out, **SIZES[size], seed=0, parquet=True, row_group_size=ROW_GROUP)
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(out / "interactions.parquet").metadata
    return {"path": str(out), "rows": meta.num_rows, "row_groups": meta.num_row_groups,
            "bytes": (out / "interactions.parquet").stat().st_size, "seconds": time.perf_counter() - start,
            "disk": shutil.disk_usage(out)._asdict(), **SIZES[size]}


def steady_rate(h: dict) -> float:
    """Rows per second after the first step (which also pays the reader's start: a streamed log
    fills its shuffle buffer, 2^20 rows, before the first batch), as the floor is timed after warm-up."""
    return (h["samples"] - h["first_step_samples"]) / (h["seconds"] - h["first_step_seconds"])


def stream_batches(log, batch_size: int, steps: int) -> list:
    reader = log.reader(batch_size)
    reader.set_epoch(0)
    out = []
    for batch in reader:
        out.append((batch["user_idx"], batch["item_idx"]))
        if len(out) == steps:
            break
    return out


def cf_stream(size: str, data_dir: Path, threads: int, steps: int, workers: int, epoch: bool,
              overrides: dict) -> dict:
    import numpy as np
    import torch

    from towerrec.data.stream import StreamOptions
    from towerrec.data.stream_log import scan_log
    from towerrec.evaluation import evaluate_holdout
    from towerrec.models.base import FitOptions
    from towerrec.models.two_tower import TwoTower

    torch.set_num_threads(threads)
    source = log_dir(data_dir, size)
    log = scan_log(str(source), StreamOptions(holdout_users=2_000, workers=workers, keep_seen=epoch))
    model = TwoTower(preset="cf", epochs=1, steps_per_epoch=0 if epoch else steps, **overrides)
    out: dict = {"preset": "cf", "path": "streamed from Parquet (fit_stream)", "log": log.summary(),
                 "config": repr(model), "workers": workers}
    start = time.perf_counter()
    model.fit_stream(log, options=FitOptions(seed=0, progress=False, threads=threads))
    fit_s = time.perf_counter() - start
    h = model.history_[0]
    out.update(interactions_per_s=h["samples"] / h["seconds"], rows_trained=h["samples"], steps=h["steps"],
               interactions_per_cpu_s=h["samples"] / h["cpu_seconds"], train_cpu_seconds=h["cpu_seconds"],
               train_seconds=h["seconds"], fit_seconds_with_scan_valid_and_seen_pass=fit_s + log.scan_seconds,
               valid_seconds=h.get("eval_seconds"), loss=h["loss"], valid_NDCG_at_10=h.get("valid_NDCG@10"),
               first_step_seconds=h["first_step_seconds"],
               steady_interactions_per_s=steady_rate(h))
    if epoch:
        res = evaluate_holdout(model, log.holdout, k=(10,))
        path = model.save(data_dir / f"artifact-cf-{size}")
        out.update(epoch_seconds=h["seconds"], holdout_test_NDCG_at_10=res["test"].summary["NDCG@10"],
                   holdout_valid_NDCG_at_10=res["valid"].summary["NDCG@10"], artifact=str(path))
    else:
        from train_floor import floor_rate   # the bare-torch floor shared with benchmarks/two_tower.py

        batches = stream_batches(log, 1024, 300)             # ~300K rows of the log, as the reader yields them
        user = np.concatenate([u.numpy() for u, _ in batches])
        item = np.concatenate([i.numpy() for _, i in batches])
        floor = floor_rate(user, item, log.n_users, log.n_items, steps=min(steps, 300), threads=threads)
        out.update(floor_interactions_per_s=floor["interactions_per_second"], floor=floor,
                   floor_interactions_per_cpu_s=floor["interactions_per_cpu_second"],
                   floor_note="benchmarks/train_floor.py: cf's step in bare torch (sparse table gradients, linear "
                              "layers, cosine/T against the batch's distinct items with logQ, backward), no optimiser")
        out["percent_of_floor"] = 100 * out["interactions_per_s"] / out["floor_interactions_per_s"]
        out["percent_of_floor_cpu"] = 100 * out["interactions_per_cpu_s"] / out["floor_interactions_per_cpu_s"]
        out["steady_percent_of_floor"] = 100 * out["steady_interactions_per_s"] / out["floor_interactions_per_s"]
    return out


def cf_interleaved(size: str, data_dir: Path, threads: int, steps: int, overrides: dict, rounds: int = 12) -> dict:
    """towerrec's whole cf step against the bare-torch floor, in alternating blocks of the same process.

    A block of towerrec steps reads its batches from the streamed log as `fit_stream` does (the
    reader, `StreamBatches`, `train_step`: forward, backward, the optimisers); a floor block runs
    `train_floor.FloorStep` on rows the same reader yielded. Blocks alternate, so both see the
    same machine: on a shared host whose speed moves by 2x between runs, the median of the paired
    ratios is the figure that holds still."""
    import numpy as np
    import torch

    from towerrec.data.stream import StreamOptions
    from towerrec.data.stream_log import scan_log
    from towerrec.models.base import FitOptions
    from towerrec.models.optim import set_sparse
    from towerrec.models.train import _Loss, train_optimizers, train_step
    from towerrec.models.two_tower import TwoTower
    from towerrec.models.two_tower.batches import StreamBatches
    from train_floor import FloorStep

    torch.set_num_threads(threads)
    log = scan_log(str(log_dir(data_dir, size)), StreamOptions(holdout_users=2_000, keep_seen=False))
    model = TwoTower(preset="cf", **overrides)
    c = model.config
    model._setup(log.user_counts, log.item_counts, None, None, FitOptions(seed=0, threads=threads))
    module = model.module_.train()
    set_sparse(module, c.train.embedding_optimizer != "dense")
    wrapped = _Loss(module)
    optimizer = train_optimizers(module, c.train)
    make_batch = StreamBatches(log.item_counts, c)
    reader = log.reader(c.train.batch_size)
    reader.set_epoch(0)
    rows = iter(reader)
    rng = np.random.default_rng(0)
    block = max(1, steps // rounds)
    drawn = stream_batches(log, c.train.batch_size, block)
    floor = FloorStep(np.concatenate([i.numpy() for _, i in drawn]), log.n_users, log.n_items,
                      batch_size=c.train.batch_size, dim=c.embedding_dim, temperature=c.temperature)
    floor_batches = [(u + 1, i + 1) for u, i in drawn]

    def towerrec_block() -> None:
        for _ in range(block):
            train_step(wrapped, optimizer, make_batch(next(rows), rng), grad_clip=c.train.grad_clip)

    def floor_block() -> None:
        for u, i in floor_batches:
            floor.step(u, i)

    towerrec_block()                                   # warm-up: the shuffle buffer's fill, first allocations
    floor_block()
    ms: dict[str, list[float]] = {"towerrec": [], "floor": []}
    for r in range(rounds):
        order = [("towerrec", towerrec_block), ("floor", floor_block)]
        for name, run in (order if r % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            run()
            ms[name].append((time.perf_counter() - start) / block * 1e3)
    ratios = [f / t for t, f in zip(ms["towerrec"], ms["floor"])]
    return {"preset": "cf", "config": repr(model), "rounds": rounds, "steps_per_block": block,
            "batch_size": c.train.batch_size, "towerrec_ms_per_step": ms["towerrec"], "floor_ms_per_step": ms["floor"],
            "interactions_per_s": c.train.batch_size / float(np.median(ms["towerrec"])) * 1e3,
            "floor_interactions_per_s": c.train.batch_size / float(np.median(ms["floor"])) * 1e3,
            "percent_of_floor": 100 * float(np.median(ratios)),
            "percent_of_floor_range": [round(100 * min(ratios), 1), round(100 * max(ratios), 1)]}


def hybrid_floor(module, make_batch, n_samples: int, steps: int, config) -> dict:
    """Bare torch with hybrid's shapes (no text): per side an id table of the model's size, two 16-d
    encodings from small dense feature tables, history items embedded once, pooled, then projected,
    MLP (256) to 64, cosine, in-batch softmax."""
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)
    n_users, n_items = len(module.user_code), len(module.item_code)
    d, f = config.embedding_dim, config.feature_dim
    user_id, item_id, hist_id = (nn.Embedding(n + 1, config.id_dim, sparse=True) for n in (n_users, n_items, n_items))
    # age + country, category + tags: two 16-d encodings from small tables (towerrec's have 11 to 121
    # rows), on dense gradients as towerrec's are (`DENSE_FEATURE_ROWS`); a row's code is its id mod 128
    user_feat = nn.Embedding(128, 2 * f)
    item_feat = nn.Embedding(128, 2 * f)
    hist_proj = nn.Linear(config.id_dim + 2 * f, d)
    user_mlp = nn.Sequential(nn.Linear(config.id_dim + 2 * f + d, 256), nn.GELU(), nn.Dropout(0.3), nn.Linear(256, d))
    item_mlp = nn.Sequential(nn.Linear(config.id_dim + 2 * f, 256), nn.GELU(), nn.Dropout(0.3), nn.Linear(256, d))
    params = [p for m in (user_id, item_id, hist_id, user_feat, item_feat, hist_proj, user_mlp, item_mlp)
              for p in m.parameters()]
    rng = np.random.default_rng(0)
    batches = [make_batch(rng.integers(0, n_samples, config.train.batch_size), rng) for _ in range(steps)]
    rows, start, cpu = 0, time.perf_counter(), time.process_time()
    for b in batches:
        u, i, h = b["user_idx"], b["item_idx"], b["history"]
        raw = torch.cat([hist_id(h["items"]), item_feat(h["items"] % 128)], 1)          # distinct items once
        per_user = F.embedding_bag(h["inverse"], raw, h["offsets"], mode="sum")   # one kernel, as towerrec's
        # the exact-mean path pools each distinct user once (row_user maps rows to them); a
        # subsampled history (max_history, history_dropout) is one history per row. The history
        # projection is linear: it runs on the pooled rows, as towerrec's does
        pooled = hist_proj(per_user[h["row_user"]] if "row_user" in h else per_user)
        y = F.normalize(user_mlp(torch.cat([user_id(u), user_feat(u % 128), pooled], 1)), dim=-1)
        z = F.normalize(item_mlp(torch.cat([item_id(i), item_feat(i % 128)], 1)), dim=-1)
        loss = F.cross_entropy(y @ z.T / config.temperature, torch.arange(len(u)))
        loss.backward()
        for p in params:
            p.grad = None
        rows += len(u)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"floor_interactions_per_s": rows / seconds, "floor_rows": rows, "floor_seconds": seconds,
            "floor_interactions_per_cpu_s": rows / cpu,
            "floor": "bare torch with hybrid's shapes (id tables, small dense feature tables, history items embedded once, "
                     "pooled, then projected, MLP 256, cosine in-batch softmax), forward + backward, no optimiser, "
                     "batches built by the model's PairBatches beforehand (not timed)"}


def hybrid_memory(size: str, threads: int, steps: int, overrides: dict) -> dict:
    import torch

    from towerrec.data.synthetic import synthetic
    from towerrec.models.base import FitOptions
    from towerrec.models.two_tower import TwoTower
    from towerrec.models.two_tower.batches import PairBatches

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ds = synthetic(**SIZES[size], seed=0)            # the same rows as the Parquet log
    load_s = time.perf_counter() - t0
    model = TwoTower(preset="hybrid", text="none", epochs=1, steps_per_epoch=steps, **overrides)
    model.fit(ds.interactions, user_features=ds.user_features, item_features=ds.item_features,
              options=FitOptions(seed=0, progress=False, threads=threads))
    h = model.history_[0]
    out = {"preset": "hybrid (text none)", "path": "in memory (fit): a history tower needs every user's history",
           "config": repr(model), "generate_seconds": load_s, "interactions_per_s": h["samples"] / h["seconds"],
           "interactions_per_cpu_s": h["samples"] / h["cpu_seconds"], "train_cpu_seconds": h["cpu_seconds"],
           "rows_trained": h["samples"], "steps": h["steps"], "train_seconds": h["seconds"],
           "epoch_seconds": None, "epoch_seconds_note": "not run: a full epoch at this rate is rows / interactions_per_s",
           "first_step_seconds": h["first_step_seconds"], "steady_interactions_per_s": steady_rate(h)}
    batches = PairBatches(ds.interactions, model.seen_, model.config)
    out.update(hybrid_floor(model.module_, batches, batches.n_samples, min(steps, 200), model.config))
    out["percent_of_floor"] = 100 * out["interactions_per_s"] / out["floor_interactions_per_s"]
    out["percent_of_floor_cpu"] = 100 * out["interactions_per_cpu_s"] / out["floor_interactions_per_cpu_s"]
    out["steady_percent_of_floor"] = 100 * out["steady_interactions_per_s"] / out["floor_interactions_per_s"]
    return out


def hybrid_paths(size: str, threads: int, steps: int, overrides: dict, rounds: int = 6) -> dict:
    """hybrid's step with each step-shape choice on and off, in alternating blocks of `steps / rounds`
    steps on the same batches: `history_map_after_pooling` (the history tower's affine map runs on
    the pooled rows, `TwoTowerModule._pooled_history`) and `small_feature_tables_dense` (feature
    tables under `DENSE_FEATURE_ROWS` rows keep dense gradients). "old" is both off, the code
    before 2026-12-02 (evening)."""
    import numpy as np
    import torch

    from towerrec.data.synthetic import synthetic
    from towerrec.models.base import FitOptions
    from towerrec.models.optim import set_sparse, table_modules
    from towerrec.models.train import _Loss, train_optimizers, train_step
    from towerrec.models.two_tower import TwoTower
    from towerrec.models.two_tower.batches import PairBatches

    torch.set_num_threads(threads)
    ds = synthetic(**SIZES[size], seed=0)
    model = TwoTower(preset="hybrid", text="none", epochs=1, steps_per_epoch=2, **overrides)
    model.fit(ds.interactions, user_features=ds.user_features, item_features=ds.item_features,
              options=FitOptions(seed=0, progress=False, threads=threads))
    module = model.module_.train()
    wrapped, optimizer = _Loss(module), train_optimizers(module, model.config.train)
    make_batch = PairBatches(ds.interactions, model.seen_, model.config)
    rng = np.random.default_rng(0)
    block = max(1, steps // rounds)
    batches = [make_batch(rng.integers(0, make_batch.n_samples, model.config.train.batch_size), rng)
               for _ in range(block)]
    small = [m for m in table_modules(module) if getattr(m, "dense_gradients", False)]
    tower, affine = module.history_tower, module.history_tower.affine
    variants = {"old": (False, False), "history_map_after_pooling": (True, False),
                "small_feature_tables_dense": (False, True), "new": (True, True)}

    def use(after_pooling: bool, dense: bool) -> None:
        tower.affine = affine if after_pooling else (lambda: None)
        for m in small:
            m.dense_gradients = dense
        for m in table_modules(module):
            m.sparse = False
        set_sparse(module, True)

    for name, flags in variants.items():          # warm-up: first allocations of each path
        use(*flags)
        for b in batches[:3]:
            train_step(wrapped, optimizer, b)
    ms: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            use(*variants[name])
            start = time.perf_counter()
            for b in batches:
                train_step(wrapped, optimizer, b)
            ms[name].append((time.perf_counter() - start) / block * 1e3)
    use(True, True)
    bs = model.config.train.batch_size
    return {"preset": "hybrid (text none)", "config": repr(model), "rounds": rounds, "steps_per_block": block,
            "small_dense_tables": [m.num_embeddings for m in small], "ms_per_step": ms,
            "median_ms_per_step": {k: float(np.median(v)) for k, v in ms.items()},
            "interactions_per_s": {k: bs / float(np.median(v)) * 1e3 for k, v in ms.items()},
            "speedup_vs_old": {k: float(np.median([o / x for o, x in zip(ms["old"], v)])) for k, v in ms.items()}}


def ml100k(preset: str, threads: int, data_dir: Path, overrides: dict) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from towerrec.data.registry import load_dataset
    from towerrec.data.stream import StreamOptions
    from towerrec.data.stream_log import scan_log
    from towerrec.evaluation import evaluate, evaluate_holdout
    from towerrec.models.base import FitOptions
    from towerrec.models.two_tower import TwoTower
    from towerrec.ranking import TieOrder
    from towerrec.splits import random_split

    torch.set_num_threads(threads)
    ds = load_dataset(str(SHARED / "ml-100k"))
    split = random_split(ds.interactions, seed=0)
    options = FitOptions(seed=0, progress=False, threads=threads)
    start = time.perf_counter()
    if preset == "hybrid":
        model = TwoTower(preset="hybrid", text="none", **overrides).fit(split, options=options)
        test = evaluate(model, split).summary["NDCG@10"]
        return {"preset": "hybrid (text none)", "path": "in memory (fit)", "test_NDCG_at_10": test,
                "valid_NDCG_at_10": evaluate(model, split, part="valid").summary["NDCG@10"],
                "best_epoch": model.best_epoch_, "fit_seconds": time.perf_counter() - start,
                "protocol": "ml-100k random 8:1:1 seed 0, full ranking, train+valid masked"}
    folder = data_dir / "ml100k-train-parquet"
    folder.mkdir(parents=True, exist_ok=True)
    frame = split.train.to_frame()
    pq.write_table(pa.Table.from_pandas(frame[["user_id", "item_id"] + (["timestamp"] if "timestamp" in frame else [])],
                                        preserve_index=False), folder / "train.parquet", row_group_size=8_192)
    log = scan_log(str(folder), StreamOptions(holdout_users=300), seed=0)
    model = TwoTower(preset="cf", **overrides).fit_stream(log, options=options)
    # the split's test on the model's id maps; items the train part never saw (cold: no model can
    # rank them) stay in the truth as misses, on an item map extended past the model's items
    from towerrec.data.interactions import Interactions

    users = model.user_map_
    items = model.item_map_.extend(ds.interactions.item_map.ids)

    def remap(inter: "Interactions") -> "Interactions":
        f = inter.to_frame()
        return Interactions(user_idx=users.index(f.user_id), item_idx=items.index(f.item_id),
                            weight=np.ones(len(f), np.float32), user_map=users, item_map=items)

    test, seen = remap(split.test), remap(split.train.concat(split.valid)).to_csr()[:, :model.n_items]
    recs = model.rank_users(test.active_users(), 10, exclude=seen, ties=TieOrder.seeded(model.n_items, 0))
    recs = dataclasses.replace(recs, item_map=items)           # the same indices on the extended map
    ndcg = evaluate(recs, test, k=(10,)).summary["NDCG@10"]
    cold = int((test.item_idx >= model.n_items).sum())
    hold = evaluate_holdout(model, log.holdout, k=(10,))
    return {"preset": "cf", "path": "streamed from Parquet (the train part), early stopping on the stream's held-out "
            "sample of 300 users", "test_NDCG_at_10": ndcg, "holdout_valid_NDCG_at_10":
            hold["valid"].summary["NDCG@10"], "best_epoch": model.best_epoch_,
            "fit_seconds": time.perf_counter() - start, "test_rows_with_items_unseen_in_train": cold,
            "epochs_run": len(model.history_),
            "history": [{k: round(v, 4) if isinstance(v, float) else v for k, v in h.items()} for h in model.history_],
            "protocol": "ml-100k random 8:1:1 seed 0 test part, full ranking, train+valid masked; the in-memory cf "
                        "preset gives 0.2693 on the same split (benchmarks/README.md)"}


def one(run: str, args: argparse.Namespace) -> dict:
    data_dir = Path(args.data_dir)
    kind, _, size = run.rpartition("-")
    overrides = parse_set(args.set)
    if run.startswith("gen-"):
        return gen(size, data_dir)
    if run.endswith("-ml100k"):
        return ml100k(run.split("-")[0], args.threads, data_dir, overrides)
    if kind == "cf-throughput":
        return cf_stream(size, data_dir, args.threads, args.steps, args.workers, False, overrides)
    if kind == "cf-interleaved":
        return cf_interleaved(size, data_dir, args.threads, args.steps, overrides)
    if kind == "cf-epoch":
        return cf_stream(size, data_dir, args.threads, 0, args.workers, True, overrides)
    if kind == "hybrid-throughput":
        return hybrid_memory(size, args.threads, args.steps, overrides)
    if kind == "hybrid-paths":
        return hybrid_paths(size, args.threads, args.steps, overrides)
    raise SystemExit(f"unknown run {run!r}")


# ---- the parent: one process per run ------------------------------------------------------------
def _tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(children.get(p, []))
    return total


def spawn(run: str, args: argparse.Namespace) -> dict:
    if run == "implicit-20m":
        cmd = [args.implicit_python, str(HERE / "implicit_als.py"), str(log_dir(Path(args.data_dir), "20m")),
               "--threads", str(args.threads)]
    else:
        cmd = [sys.executable, __file__, "--one", run, "--threads", str(args.threads), "--steps", str(args.steps),
               "--workers", str(args.workers), "--data-dir", args.data_dir, *sum((["--set", s] for s in args.set), [])]
    load_start = os.getloadavg()
    timer = ["/usr/bin/time", "-f", "TIME %e %M"] if Path("/usr/bin/time").exists() else []
    start = time.perf_counter()
    proc = subprocess.Popen(timer + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_tree = [0]

    def watch() -> None:
        while proc.poll() is None:
            peak_tree[0] = max(peak_tree[0], _tree_rss(proc.pid))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    watcher.join()
    name = run + "".join(f"[{s}]" for s in args.set) + (f"[{args.tag}]" if args.tag else "")
    record: dict = {"run": name, "wall_s": round(time.perf_counter() - start, 1),
                    "load_avg_at_start": [round(x, 2) for x in load_start],
                    "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
                    "peak_rss_gb_process_tree": round(peak_tree[0] / 2**30, 3), "threads": args.threads,
                    "rerun": f"python benchmarks/scale.py --runs {run} --threads {args.threads} --steps {args.steps} "
                             f"--workers {args.workers}" + "".join(f" --set {s}" for s in args.set),
                    "overrides": parse_set(args.set)}
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        record["error"] = stderr[-3000:]
    else:
        record.update(json.loads(lines[-1]))
    for line in stderr.splitlines():
        if line.startswith("TIME "):
            _, wall, rss_kb = line.split()
            record["wall_s"], record["peak_rss_gb"] = float(wall), round(int(rss_kb) / 2**20, 3)
    return record


def save(record: dict) -> None:
    path = RESULTS / "scale.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    runs = {r["run"]: r for r in old.get("runs", [])}
    runs[record["run"]] = record
    df = shutil.disk_usage("/work" if Path("/work").exists() else "/")
    write_json("scale", {"note": __doc__.split("\n\n")[2], "targets": TARGETS,
                         "disk_free_gb": round(df.free / 2**30, 1), "runs": [runs[r] for r in sorted(runs)]})


TARGETS = {"cf-20m interactions_per_s": ">= 40,000 and >= 80% of the floor",
           "hybrid (no text)-20m interactions_per_s": ">= 25,000",
           "cf-20m one epoch": "<= 600 s with peak RSS <= 4 GB",
           "cf-100m one streamed epoch": "completes with peak RSS <= 6 GB"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1_000, help="steps timed by the throughput runs")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader reader processes (streamed runs)")
    parser.add_argument("--data-dir", default=os.environ.get("TOWERREC_BIGDATA", "/work/bigdata"),
                        help="where the big logs and artifacts go (never the repository)")
    parser.add_argument("--implicit-python", default="/work/venv-implicit/bin/python",
                        help="an interpreter with implicit installed (a throwaway venv)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a model config override of the cf / hybrid runs (VALUE a Python literal, a bare word "
                             "a string), e.g. --set embedding_optimizer=rowwise_adagrad; the record's run name "
                             "carries it")
    parser.add_argument("--tag", default="", help="appended to the record's run name, so a re-measurement is "
                                                  "kept beside the earlier record instead of replacing it")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        parse_set(args.set)                 # a malformed --set fails here, in one line, before any run
    except ValueError as exc:
        parser.error(str(exc))
    if args.list:
        print("\n".join(RUNS))
        return
    if args.one:
        record = one(args.one, args)
        record["peak_rss_gb_in_process"] = round(peak_rss_mb() / 1024, 3)
        print(json.dumps(record, default=str))
        return
    for run in args.runs.split(","):
        record = spawn(run, args)
        save(record)
        shown = {k: record.get(k) for k in ("interactions_per_s", "floor_interactions_per_s", "percent_of_floor",
                                            "steady_interactions_per_s", "steady_percent_of_floor",
                                            "interactions_per_cpu_s", "percent_of_floor_cpu",
                                            "epoch_seconds", "test_NDCG_at_10", "peak_rss_gb",
                                            "peak_rss_gb_process_tree", "wall_s") if record.get(k) is not None}
        print(f"{run}: {shown}" + (f"  ERROR {record['error'][-500:]}" if "error" in record else ""), flush=True)


if __name__ == "__main__":
    main()
