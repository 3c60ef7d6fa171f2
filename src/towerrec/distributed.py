"""The collectives of training and evaluating under `torchrun` (DDP), in one place.

Pitfalls this file exists for (sources in the scale notes):
- in-batch negatives from other ranks need an all_gather that lets gradients flow back to the
  rank that embedded them (`gather_with_grad`); a plain all_gather silently drops them;
- every rank must issue the same collectives the same number of times: `agree_steps` gives all
  ranks the smallest step count, so a rank with fewer batches never leaves the others hanging;
- evaluation splits users into contiguous slices (`block_slice`), never DistributedSampler's
  padded interleave (duplicated users bias the means), and gathers the per-user results in rank
  order (`all_gather_rows`), so the metrics are those of one process, bit for bit;
- a hang should fail, not stall a CI job: the process group is created with a timeout
  (`FitOptions.dist_timeout`);
- DDP reduces each sparse table gradient in a bucket of its own, and gloo runs concurrent
  reductions on its two worker threads; with several sparse tables a rank then dies of heap
  corruption now and then (torch 2.13, `benchmarks/README.md` "Scale"). On gloo, DDP therefore gets
  a group with one worker thread (`ddp_group`).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from towerrec.errors import TowerrecError

_LOSS_GROUP: dist.ProcessGroup | None = None   # a group of its own for the loss's collectives
_DDP_GROUP: dist.ProcessGroup | None = None    # gloo: one worker thread for DDP's reductions


@dataclass(frozen=True)
class DistContext:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_context(options) -> DistContext:  # noqa: ANN001 - FitOptions (models.base sits above this module)
    """Rank, world size and device; initialises the process group when run under torchrun
    (gloo on CPU, nccl on CUDA; `options.dist_timeout` seconds before a stuck collective fails)."""
    global _LOSS_GROUP, _DDP_GROUP
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = options.torch_device()
    if world <= 1:
        return DistContext(0, 1, device)
    if device.type == "cuda":
        local_rank, n_gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local_rank >= n_gpus:
            raise TowerrecError(f"torchrun started process {local_rank} on a node with {n_gpus} CUDA "
                                f"device(s): use --nproc_per_node <= {n_gpus}, or device='cpu' (gloo)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=float(getattr(options, "dist_timeout", 1800.0)))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    if _LOSS_GROUP is None:
        _LOSS_GROUP = dist.new_group(backend=dist.get_backend(), timeout=timeout)
    if _DDP_GROUP is None and dist.get_backend() == "gloo":
        _DDP_GROUP = _single_thread_gloo(timeout)
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def ddp_group() -> dist.ProcessGroup | None:
    """The process group DDP should reduce gradients on: gloo's single-threaded group, else the
    default group (None)."""
    return _DDP_GROUP


SERIAL_GLOO = "towerrec_gloo"   # gloo with one worker thread, registered as a backend of its own


def _serial_gloo(store: dist.Store, rank: int, world: int, timeout: timedelta) -> dist.ProcessGroupGloo:
    """gloo's process group with one worker thread (`init_process_group` and `new_group` pass no
    options to gloo; a registered backend is torch's way in)."""
    options = dist.ProcessGroupGloo._Options()
    options._threads = 1
    options._timeout = timeout
    interfaces = [name for name in os.environ.get("GLOO_SOCKET_IFNAME", "").split(",") if name]
    options._devices = ([dist.ProcessGroupGloo.create_device(interface=name) for name in interfaces]
                        or [dist.ProcessGroupGloo.create_default_device()])
    return dist.ProcessGroupGloo(store, rank, world, options)


def _single_thread_gloo(timeout: timedelta) -> dist.ProcessGroup | None:
    """A gloo group whose reductions run one at a time; the default group, with a warning, if this
    torch cannot make one."""
    try:
        if SERIAL_GLOO not in dist.Backend.backend_list:
            dist.Backend.register_backend(SERIAL_GLOO, _serial_gloo, devices=["cpu"])
        return dist.new_group(backend=SERIAL_GLOO, timeout=timeout)
    except (AttributeError, TypeError) as err:   # gloo's options moved in this torch: keep the default group
        warnings.warn(f"towerrec: no single-threaded gloo group for DDP ({err}); using the default group, "
                      "where models with several sparse tables can crash now and then", stacklevel=2)
        return None


def world_size() -> int:
    """The number of processes: the process group's, else torchrun's WORLD_SIZE, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    """A process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """Rank 0, or no process group: the process that writes files and prints."""
    return not active() or dist.get_rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where tensors must live for the default group's collectives (nccl: the current GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agree_steps(local_steps: int) -> int:
    """The number of steps every rank takes this epoch: the minimum over ranks. Training steps
    hold collectives (DDP's allreduce, the loss's all_gather), so unequal counts would hang."""
    if not active():
        return local_steps
    n = torch.tensor([local_steps], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(n, op=dist.ReduceOp.MIN)
    return int(n.item())


def block_slice(n_blocks: int, rank: int | None = None, world: int | None = None) -> range:
    """The contiguous run of blocks 0..n_blocks-1 that `rank` handles: the first n % world ranks get
    one more. No padding: every block belongs to exactly one rank."""
    rank = dist.get_rank() if rank is None else rank
    world = dist.get_world_size() if world is None else world
    base, extra = divmod(n_blocks, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def _sizes(n: int, group: dist.ProcessGroup | None, device: torch.device) -> list[int]:
    world = dist.get_world_size(group)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([n], dtype=torch.int64, device=device), group=group)
    return [int(s.item()) for s in sizes]


def all_gather_rows(x: torch.Tensor | np.ndarray, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Every rank's `x` [n_r, ...] (n_r may differ) concatenated in rank order -> [sum n_r, ...].
    No gradient. numpy in, a CPU tensor out."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not active():
        return t
    device = t.device if group is not None else _comm_device()
    sizes = _sizes(len(t), group, device)
    top = max(sizes)
    flat = t.reshape(len(t), int(np.prod(t.shape[1:])))
    bool_ = flat.dtype == torch.bool
    flat = flat.to(torch.uint8) if bool_ else flat          # gloo has no bool all_gather
    padded = torch.zeros(top, flat.shape[1], dtype=flat.dtype, device=device)
    padded[:len(t)] = flat
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    out = torch.cat([p[:n] for p, n in zip(parts, sizes)]).to(t.device)
    out = out.bool() if bool_ else out
    return out.reshape(-1, *t.shape[1:])


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each rank the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: dist.ProcessGroup | None, sizes: list[int]) -> torch.Tensor:  # noqa: ANN001
        ctx.group, ctx.n, ctx.start = group, len(x), sum(sizes[:dist.get_rank(group)])
        padded = x.new_zeros(max(sizes), *x.shape[1:])
        padded[:len(x)] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded, group=group)
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: ANN001
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)     # every rank's loss reaches every gathered row
        return grad[ctx.start:ctx.start + ctx.n], None, None


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' `x` [n_r, d] concatenated in rank order, with gradients flowing back to the rank
    that computed each row (open_clip's `gather_with_grad`; the scale notes measured a plain
    all_gather 0.228 off in gradient). Returns (gathered [sum n_r, d], offset of this rank's rows)."""
    if not active():
        return x, 0
    sizes = _sizes(len(x), _LOSS_GROUP, x.device)
    return _GatherWithGrad.apply(x, _LOSS_GROUP, sizes), sum(sizes[:dist.get_rank()])


def gather_candidates(vectors: torch.Tensor, keys: torch.Tensor, log_count: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Every rank's in-batch candidates in rank order: (vectors [C, d] with gradients to their
    ranks, keys [C], log_count [C], offset of this rank's rows), in one size exchange and one
    all_gather (one all_reduce in backward) instead of one pair each: on two CPU ranks the
    collectives' waits, not their bytes, are what a step pays. Keys and counts ride as two float64
    columns beside the vectors (exact for keys under 2^53)."""
    packed = torch.cat([vectors.to(torch.float64), keys[:, None].to(torch.float64),
                        log_count[:, None].to(torch.float64)], dim=1)
    gathered, offset = gather_with_grad(packed)
    return gathered[:, :-2].to(vectors.dtype), gathered[:, -2].long(), gathered[:, -1].to(log_count.dtype), offset
