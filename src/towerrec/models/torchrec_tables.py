"""Id tables past one device's memory: TorchRec shards them over the ranks (`towerrec[torchrec]`).

Under DDP every rank holds every table and its optimiser state: fine while the tables fit one
device (the scale notes' rule: tables + optimiser state <= ~40% of one GPU's memory; 10M items x
64 with Adam is ~10 GB). Past that, `TrainConfig.sharding = "table_wise"` or `"row_wise"` hands
the id tables (users, items, history items) to TorchRec's planner and `DistributedModelParallel`:
each rank stores a share of the rows, lookups and their gradients travel by all-to-all, and the
table optimiser runs fused in the backward pass (FBGEMM: `sparse_adam` -> ADAM,
`rowwise_adagrad` -> EXACT_ROWWISE_ADAGRAD, with `weight_decay` as FBGEMM applies it). Everything
else (towers, feature embeddings, the scorer) stays data parallel, and the loss, the cross-rank
negatives and the logQ are the same code as under DDP.

The same model config trains either way. At the end the tables are gathered back into ordinary
`nn.Embedding`s (rank 0 collects the shards on the host, then broadcasts), so evaluation, saving
and serving see a plain model. Validation during training runs the whole user list on every rank
(sharded lookups are collectives, so every rank must make the same ones).

Installing (torch, fbgemm-gpu and torchrec must be built for each other): torch 2.13.0 loads
fbgemm-gpu-cpu 1.8.0 (1.9.0, 1.7.0 and 1.6.0 fail with undefined symbols) with torchrec 1.8.0;
torchrec's metadata names the CUDA `fbgemm-gpu`, so on a CPU machine install
`fbgemm-gpu-cpu==1.8.0` and then `torchrec==1.8.0 --no-deps` with its other dependencies.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from towerrec.errors import TowerrecError
from towerrec.towers.features import IdEmbedding

SHARDINGS = ("none", "table_wise", "row_wise")
INSTALL_HINT = ("TorchRec is not installed: pip install 'towerrec[torchrec]' (GPU), or on a CPU machine "
                "pip install fbgemm-gpu-cpu==1.8.0 && pip install --no-deps torchrec==1.8.0 tensordict "
                "torchmetrics==1.0.3 pyre-extensions iopath")


def available() -> bool:
    """TorchRec and FBGEMM import (and FBGEMM's operators load against this torch)."""
    try:
        import fbgemm_gpu  # noqa: F401
        import torchrec  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


class TorchRecTable(nn.Module):
    """One id table as a one-table TorchRec `EmbeddingCollection`: forward(codes [b]) -> [b, d].

    Code 0 ("unknown") is never looked up and embeds to zeros, as `nn.Embedding(padding_idx=0)`.
    `initial` [rows, d] holds the towerrec initialisation until `distribute` copies it into the
    shards (TorchRec allocates sharded tables itself)."""

    def __init__(self, name: str, weight: torch.Tensor) -> None:
        super().__init__()
        from torchrec import EmbeddingCollection, EmbeddingConfig

        self.name, self.dim = name, int(weight.shape[1])
        self.ec = EmbeddingCollection(tables=[EmbeddingConfig(name=name, embedding_dim=self.dim,
                                                              num_embeddings=int(weight.shape[0]),
                                                              feature_names=[name])], device=torch.device("meta"))
        self.initial: torch.Tensor | None = weight.detach().cpu().clone()

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        from torchrec import KeyedJaggedTensor

        known = codes > 0
        kjt = KeyedJaggedTensor.from_lengths_sync(keys=[self.name], values=codes[known],
                                                  lengths=torch.ones(int(known.sum()), dtype=torch.int32,
                                                                     device=codes.device))
        rows = self.ec(kjt)[self.name].values()
        out = rows.new_zeros(len(codes), self.dim)
        return out.index_copy(0, known.nonzero().flatten(), rows)


def _tables(module: nn.Module) -> list[IdEmbedding]:
    return [m for m in module.modules() if isinstance(m, IdEmbedding)]


def distribute(wrapped: nn.Module, module: nn.Module, *, sharding: str, kind: str, lr: float,
               weight_decay: float, device: torch.device) -> nn.Module:
    """Shard the id tables of `module` (inside `wrapped`, the loop's loss module) with TorchRec's
    planner restricted to `sharding`, the tables' optimiser fused (`kind`), and return the
    `DistributedModelParallel` to call instead of DDP."""
    if not available():
        raise TowerrecError(INSTALL_HINT)
    if not (dist.is_available() and dist.is_initialized()):
        raise TowerrecError(f"sharding={sharding!r} shards the id tables over processes: run under torchrun "
                            "(torchrun --nproc_per_node N ...), or use sharding='none'")
    if kind not in ("sparse_adam", "rowwise_adagrad"):
        raise TowerrecError(f"sharding={sharding!r} trains the tables with FBGEMM's fused optimisers: "
                            f"embedding_optimizer 'sparse_adam' or 'rowwise_adagrad', not {kind!r}")
    import torchrec.optim as trec_optim
    from torchrec.distributed.embedding import EmbeddingCollectionSharder
    from torchrec.distributed.model_parallel import DefaultDataParallelWrapper, DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.distributed.planner.types import ParameterConstraints
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

    names = []
    for i, table in enumerate(_tables(module)):
        table.embedding = TorchRecTable(f"towerrec_id_{i}", table.embedding.weight)
        names.append(table.embedding.name)
    if not names:
        raise TowerrecError(f"sharding={sharding!r}: this model has no id table to shard")
    ecs = [m.ec for m in module.modules() if isinstance(m, TorchRecTable)]
    optimizer = trec_optim.Adam if kind == "sparse_adam" else trec_optim.RowWiseAdagrad
    apply_optimizer_in_backward(optimizer, [p for ec in ecs for p in ec.parameters()],
                                {"lr": lr, "weight_decay": weight_decay})
    constraints = {n: ParameterConstraints(sharding_types=[sharding]) for n in names}
    topology = Topology(world_size=dist.get_world_size(), compute_device=device.type)
    sharders = [EmbeddingCollectionSharder()]
    plan = EmbeddingShardingPlanner(topology=topology, constraints=constraints).collective_plan(
        wrapped, sharders, dist.GroupMember.WORLD)
    dmp = DistributedModelParallel(wrapped, device=device, plan=plan, sharders=sharders,
                                   data_parallel_wrapper=DefaultDataParallelWrapper(
                                       static_graph=False, find_unused_parameters=True))
    for table in module.modules():
        if isinstance(table, TorchRecTable) and table.initial is not None:
            _copy_into_shards(table, table.initial)
            table.initial = None
    return dmp


def _sharded_weight(table: TorchRecTable) -> Any:
    return next(v for k, v in table.ec.state_dict().items() if k.endswith("weight"))


def _copy_into_shards(table: TorchRecTable, full: torch.Tensor) -> None:
    """Write rows of `full` [rows, d] into this rank's shards of the table."""
    weight = _sharded_weight(table)
    with torch.no_grad():
        for shard in weight.local_shards():
            (r0, c0), (nr, nc) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
            shard.tensor.copy_(full[r0:r0 + nr, c0:c0 + nc].to(shard.tensor.device))


def fused_parameters(module: nn.Module) -> set[int]:
    """ids of the parameters trained by TorchRec's fused optimiser (the loop's AdamW skips them)."""
    return {id(p) for m in module.modules() if type(m).__name__.startswith("Sharded") for p in m.parameters()}


def is_sharded(module: nn.Module) -> bool:
    return any(isinstance(m, TorchRecTable) for m in module.modules())


def snapshot(module: nn.Module) -> dict[str, Any]:
    """A copy of the weights (for early stopping): this rank's shards of sharded tables."""
    out: dict[str, Any] = {}
    for key, value in module.state_dict().items():
        if hasattr(value, "local_shards"):
            out[key] = [s.tensor.detach().clone() for s in value.local_shards()]
        else:
            out[key] = value.detach().clone()
    return out


def restore(module: nn.Module, state: dict[str, Any]) -> None:
    """Put a `snapshot` back, in place (state_dict tensors share storage with the weights; sharded
    tables shard by shard)."""
    current = module.state_dict()
    with torch.no_grad():
        for key, saved in state.items():
            if isinstance(saved, list):
                for shard, tensor in zip(current[key].local_shards(), saved):
                    shard.tensor.copy_(tensor)
            else:
                current[key].copy_(saved)


def unshard(module: nn.Module) -> None:
    """Gather every sharded id table into an ordinary `nn.Embedding(padding_idx=0)` on every rank."""
    for table in _tables(module):
        if not isinstance(table.embedding, TorchRecTable):
            continue
        tr = table.embedding
        weight = _sharded_weight(tr)
        rows = int(weight.size(0))
        full = torch.zeros(rows, tr.dim) if dist.get_rank() == 0 else None
        weight.gather(dst=0, out=full)
        if full is None:
            full = torch.zeros(rows, tr.dim)
        dist.broadcast(full, 0)
        embedding = nn.Embedding(rows, tr.dim, padding_idx=0)
        with torch.no_grad():
            embedding.weight.copy_(full)
            embedding.weight[0].zero_()
        table.embedding = embedding
