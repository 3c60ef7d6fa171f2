"""The one training loop for every torch model (minGPT's trainer idea: nothing in here knows
what a tower or a sequence is).

A model provides a module with `compute_loss(batch) -> scalar`, the number of training samples
and `make_batch(sample_idx, rng) -> batch` (numpy indices in, a dict of CPU tensors out). The
loop does the optimiser split (`models/optim.py`: id tables row-wise on sparse gradients, the
rest fused AdamW), epochs, seeded shuffling, per-epoch validation on NDCG@10 with early stopping
and restores the best checkpoint; it records `history` (loss, valid metric, seconds per epoch).

A streamed log (`stream=`, `towerrec.data.stream_log.StreamLog`) replaces the sample indices: each
rank reads its own Parquet fragments through a DataLoader (`StreamOptions.workers` processes) and
`make_batch(raw_batch, rng)` completes each batch it yields. Ranks hold different numbers of rows,
so every epoch runs `steps = all_reduce(MIN, local full batches)` (`distributed.agree_steps`) steps on every rank: no rank
waits in a collective for another that has run out (DDP never hangs), and the rows left over
differ from epoch to epoch because the fragment order does.

It runs unchanged under `torchrun --nproc_per_node N` (`models/distributed.py`): the process
group is initialised from the environment (gloo on CPU, nccl on CUDA), the module is wrapped in
DistributedDataParallel (sparse table gradients included), each global batch is split across
ranks (rank r takes every N-th sample, like DistributedSampler, so the number of optimiser steps
matches one process, and all ranks agree on it), every rank validates its contiguous slice of
users (metrics identical to one process), only rank 0 prints, and the early-stopping decision is
broadcast from rank 0.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
from torch import nn

from towerrec.data.interactions import Interactions
from towerrec.distributed import DistContext, agree_steps, ddp_group, distributed_context
from towerrec.errors import TowerrecError
from towerrec.evaluation import evaluate_scores
from towerrec.models import torchrec_tables
from towerrec.models.base import FitOptions
from towerrec.models.optim import EMBEDDING_OPTIMIZERS, Optimizers, make_optimizers, set_sparse
from towerrec.models.torchrec_tables import SHARDINGS
from towerrec.progress import progress
from towerrec.ranking import TieOrder

ScoreFn = Callable[[np.ndarray], torch.Tensor]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """The shared loop's settings; every torch model holds one as its `train` field (the glossary
    names `epochs`, `learning_rate`, ... reach it from Python, the CLI and TOML alike)."""

    epochs: int = 20
    batch_size: int = 1024          # global batch; split across ranks under torchrun
    learning_rate: float = 1e-3
    weight_decay: float = 0.0       # AdamW, decoupled
    patience: int = 3               # epochs without a better valid metric before stopping
    grad_clip: float = 0.0          # max global grad norm; 0 = off
    steps_per_epoch: int = 0        # > 0: an "epoch" is this many batches (validate more often on big logs)
    metric: str = "NDCG@10"
    # id tables (every nn.Embedding / EmbeddingBag): "sparse_adam" (sparse gradients, lazy Adam on
    # the rows a step touches), "rowwise_adagrad" (FBGEMM's row-wise Adagrad: one accumulator per
    # row) or "dense" (AdamW over whole tables, the path before sparse training). 20M synthetic
    # rows, cf: dense 4,157 interactions/s; sparse, see benchmarks/README.md. `weight_decay`
    # reaches table rows when a step touches them (models/optim.py).
    embedding_optimizer: str = "sparse_adam"
    embedding_learning_rate: float = 0.0   # 0 = learning_rate (row-wise Adagrad wants more, ~0.05)
    # "table_wise" | "row_wise": under torchrun, TorchRec shards the id tables over the ranks (tables
    # past one device's memory; needs towerrec[torchrec], models/torchrec_tables.py); "none": DDP
    sharding: str = "none"

    @property
    def table_learning_rate(self) -> float:
        """The id tables' learning rate: `embedding_learning_rate`, or `learning_rate` when 0."""
        return self.embedding_learning_rate or self.learning_rate

    def validate(self) -> None:
        """Settings the loop cannot run with: one TowerrecError line naming the setting."""
        if self.embedding_optimizer not in EMBEDDING_OPTIMIZERS:
            raise TowerrecError(f"embedding_optimizer must be one of {', '.join(EMBEDDING_OPTIMIZERS)}, "
                                f"got {self.embedding_optimizer!r}")
        if self.sharding not in SHARDINGS:
            raise TowerrecError(f"sharding must be one of {', '.join(SHARDINGS)}, got {self.sharding!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise TowerrecError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("learning_rate", "embedding_learning_rate", "weight_decay", "grad_clip"):
            if not getattr(self, name) >= 0:
                raise TowerrecError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise TowerrecError(f"learning_rate must be > 0, got {self.learning_rate}")


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, loss, valid, seconds
    best_epoch: int = -1
    best_metric: float | None = None
    seconds_to_best: float | None = None
    world_size: int = 1


def shard(n_samples: int, batch_size: int, epoch: int, seed: int, ctx: DistContext) -> list[np.ndarray]:
    """This rank's batches for one epoch: a seeded global permutation (the same on every rank),
    padded by wrap-around to a multiple of the world size, rank r taking positions r::world, cut
    into batches of batch_size // world. Every rank gets the same number of batches."""
    perm = np.random.default_rng([seed, epoch]).permutation(n_samples)
    if ctx.world > 1:
        pad = (-len(perm)) % ctx.world
        perm = np.concatenate([perm, perm[:pad]])[ctx.rank::ctx.world]
    bs = max(1, batch_size // ctx.world)
    return [perm[s:s + bs] for s in range(0, len(perm), bs)]


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class _Loss(nn.Module):
    """DDP hooks a module's forward; this makes forward(batch) = module.compute_loss(batch)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: Any) -> torch.Tensor:
        return self.module.compute_loss(batch)


class _Stream(Protocol):
    """What the loop needs of a streamed log (`towerrec.data.stream_log.StreamLog`)."""

    fragments: list
    options: Any

    def reader(self, batch_size: int, *, rank: int = 0, world: int = 1) -> Any: ...


def _stream_epochs(stream: _Stream, config: TrainConfig, ctx: DistContext
                   ) -> Callable[[int], tuple[Iterator[Any], int]]:
    """epoch -> (this rank's raw batches, the steps to take): a DataLoader over this rank's reader."""
    from torch.utils.data import DataLoader

    from towerrec.data.stream import check_shards

    workers = stream.options.workers
    check_shards(len(stream.fragments), ctx.world, workers)
    reader = stream.reader(max(1, config.batch_size // ctx.world), rank=ctx.rank, world=ctx.world)
    loader = DataLoader(reader, batch_size=None, num_workers=workers, persistent_workers=False,
                        prefetch_factor=4 if workers else None)

    def epoch_batches(epoch: int) -> tuple[Iterator[Any], int]:
        reader.set_epoch(epoch)
        steps = agree_steps(reader.steps())   # the smallest over ranks: no rank waits for another
        if steps == 0:
            raise TowerrecError(f"a rank has less than one batch ({config.batch_size // ctx.world:,} rows) of the log "
                                f"this epoch: use a smaller batch_size or more, smaller row groups")
        return iter(loader), steps

    return epoch_batches


def train_optimizers(module: nn.Module, config: TrainConfig, exclude: set[int] = frozenset()) -> Optimizers:
    """The loop's optimisers for `module` under `config`: AdamW on the dense weights, the row-wise
    `embedding_optimizer` on the id tables (its own learning rate, or the dense one)."""
    return make_optimizers(module, kind=config.embedding_optimizer, lr=config.learning_rate,
                           table_lr=config.table_learning_rate,
                           weight_decay=config.weight_decay, exclude=exclude)


def train_step(wrapped: nn.Module, optimizer: Optimizers, batch: Any, *, grad_clip: float = 0.0,
               autocast: Any = None) -> torch.Tensor:
    """One optimisation step on `batch` (forward, backward, clipping, the optimisers' step); returns
    the loss. The loop's whole step, which `benchmarks/scale.py` times against the bare-torch floor."""
    with autocast if autocast is not None else nullcontext():
        loss = wrapped(batch)
    optimizer.zero_grad()
    loss.backward()
    if grad_clip > 0:
        optimizer.clip_grad_norm(grad_clip)
    optimizer.step()
    return loss


def train(module: nn.Module, *, n_samples: int = 0, make_batch: Callable[[Any, np.random.Generator], Any],
          config: TrainConfig, options: FitOptions, valid: Interactions | None = None,
          valid_scorer: Callable[[], ScoreFn] | None = None, exclude_rows: sp.csr_matrix | None = None,
          desc: str = "train", stream: _Stream | None = None) -> TrainResult:
    """Train `module` in place and return its history; the best-validated weights are restored.

    `valid_scorer()` is called once per validation (module in eval mode, no grad) and returns
    `score_fn(user_idx [b]) -> [b, n_items]`; `exclude_rows` [n_users, n_items] (the train items)
    are masked when `options.exclude_seen`, as the reported metric masks them.
    Without `valid`, every epoch runs and the last weights are kept. With `stream`, batches come
    from the streamed log and `make_batch(raw, rng)` completes them (`n_samples` is unused).
    """
    config.validate()
    ctx = distributed_context(options)
    epoch_batches = _stream_epochs(stream, config, ctx) if stream is not None else None
    torch.manual_seed(options.seed + ctx.rank)
    module.to(ctx.device)
    restore_dense = set_sparse(module, config.embedding_optimizer != "dense")   # before DDP sees the module
    wrapped: nn.Module = _Loss(module)
    sharded = config.sharding != "none"
    if sharded:   # id tables sharded by TorchRec, the rest data parallel
        wrapped = torchrec_tables.distribute(wrapped, module, sharding=config.sharding, kind=config.embedding_optimizer,
                                             lr=config.table_learning_rate, weight_decay=config.weight_decay, device=ctx.device)
    elif ctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(wrapped, device_ids=[ctx.device] if ctx.device.type == "cuda" else None,
                      broadcast_buffers=False, find_unused_parameters=True, process_group=ddp_group())
    optimizer = train_optimizers(module, config, exclude=torchrec_tables.fused_parameters(module))
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if ctx.device.type == "cuda" else nullcontext())
    result = TrainResult(world_size=ctx.world)
    ties = TieOrder.seeded(valid.n_items, options.seed) if valid is not None else None
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs = 0
    start = time.perf_counter()
    show = options.progress if ctx.main else False
    bar = progress(range(config.epochs), desc=desc, total=config.epochs, show=show, summary=False)
    for epoch in bar:
        t0, cpu0 = time.perf_counter(), time.process_time()
        module.train()
        rng = np.random.default_rng([options.seed, epoch, ctx.rank, 1])
        # summed on the device (no GPU sync per step); MPS has no float64
        loss_sum = torch.zeros((), dtype=torch.float32 if ctx.device.type == "mps" else torch.float64,
                               device=ctx.device)
        n_seen = 0
        raw = None
        if epoch_batches is not None:
            raw, steps = epoch_batches(epoch)
            batches: Any = itertools.islice(raw, min(steps, config.steps_per_epoch) if config.steps_per_epoch > 0
                                            else steps)
        else:
            batches = shard(n_samples, config.batch_size, epoch, options.seed, ctx)
            if config.steps_per_epoch > 0:
                batches = batches[:config.steps_per_epoch]
            batches = batches[:agree_steps(len(batches))]   # every rank takes as many steps: no hang
        n_steps = 0
        first_step = (0.0, 0)
        for idx in batches:
            n_steps += 1
            loss = train_step(wrapped, optimizer, to_device(make_batch(idx, rng), ctx.device),
                              grad_clip=config.grad_clip, autocast=autocast)
            rows = len(idx["item_idx"]) if isinstance(idx, dict) else len(idx)
            loss_sum += loss.detach().to(loss_sum.dtype) * rows
            n_seen += rows
            if n_steps == 1:   # the reader's start (a streamed log fills its shuffle buffer) and the first step
                first_step = (time.perf_counter() - t0, rows)
        batches = raw = None   # a DataLoader iterator shuts its workers down when dropped
        # collectives take tensors on the process group's device (nccl: cuda only)
        total = torch.stack([loss_sum, loss_sum.new_tensor(float(n_seen))])
        if ctx.world > 1:
            dist.all_reduce(total)
        # cpu_seconds (this process, all its threads): what the epoch cost on a machine shared with others
        record: dict[str, Any] = {"epoch": epoch, "loss": float(total[0] / max(total[1], 1)),
                                  "seconds": time.perf_counter() - t0, "steps": n_steps, "samples": int(total[1]),
                                  # CPU seconds of this process (all its threads): on a shared machine the
                                  # wall time also measures the other jobs
                                  "cpu_seconds": time.process_time() - cpu0,
                                  # the first step apart (reader start, buffer fill): the rest is the steady rate
                                  "first_step_seconds": first_step[0], "first_step_samples": first_step[1]}
        # [metric, improved, stop]; broadcast from the process group's device (nccl: cuda only)
        decision = torch.zeros(3, dtype=torch.float64, device=ctx.device if ctx.world > 1 else "cpu")
        if valid is not None and valid_scorer is not None:
            t1 = time.perf_counter()
            module.eval()
            # every rank ranks its slice of the users and all get the same metric (sharded tables:
            # every rank ranks all users, as their lookups are collectives)
            with torch.no_grad():
                res = evaluate_scores(valid_scorer(), valid, ties=ties, k=(int(config.metric.split("@")[1]),),
                                      exclude=exclude_rows if options.exclude_seen else None,
                                      metrics=(config.metric.split("@")[0],), show=False,
                                      distributed=ctx.world > 1 and not sharded)
            value = res.summary[config.metric]
            if ctx.main:
                improved = result.best_metric is None or value > result.best_metric
                bad = 0 if improved else bad_epochs + 1
                decision[:] = torch.tensor([value, float(improved), float(bad >= config.patience)])
                record["eval_seconds"] = time.perf_counter() - t1
            if ctx.world > 1:
                dist.broadcast(decision, 0)
            value, improved, stop = float(decision[0]), bool(decision[1]), bool(decision[2])
            record[f"valid_{config.metric}"] = value
            if improved:
                result.best_metric, result.best_epoch = value, epoch
                result.seconds_to_best = time.perf_counter() - start
                best_state = torchrec_tables.snapshot(module)
                bad_epochs = 0
            else:
                bad_epochs += 1
        else:
            stop = False
            result.best_epoch, result.seconds_to_best = epoch, time.perf_counter() - start
        record["elapsed"] = time.perf_counter() - start
        result.history.append(record)
        if ctx.main:
            metric = record.get(f"valid_{config.metric}")
            bar.set_postfix(loss=f"{record['loss']:.4f}", **({config.metric: f"{metric:.4f}"} if metric is not None else {}))
            # a bar shows this on a terminal; elsewhere (logs, CI, notebooks' files) one line per epoch
            (log.debug if bar.shown else log.info)(
                "%s epoch %d: loss %.4f%s (%.1f s)", desc, epoch, record["loss"],
                f", valid {config.metric} {metric:.4f}" if metric is not None else "", record["seconds"])
        if stop:
            break
    if best_state is not None:
        torchrec_tables.restore(module, best_state)
    if sharded:
        torchrec_tables.unshard(module)   # a plain model from here on (evaluation, saving, serving)
    restore_dense()
    module.eval()
    if ctx.main:
        best = f"; best epoch {result.best_epoch} (valid {config.metric} {result.best_metric:.4f})" \
            if result.best_metric is not None else ""
        log.info("%s: %d epoch%s in %.1f s%s", desc, len(result.history), "" if len(result.history) == 1 else "s",
                 time.perf_counter() - start, best)
    return result

