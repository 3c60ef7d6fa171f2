"""One rank of tests/models/test_ddp.py's torchrun runs (not collected by pytest: no test_ prefix).

    python -m torch.distributed.run --nproc_per_node W ddp_worker.py OUT_DIR [ONE_PROCESS_JSON]

Checks, each written to OUT_DIR/rank<r>.json for the test to assert on:
- `step`: one step of the two-tower sampled softmax on a fixed global batch, split over the ranks
  (DDP, sparse id-table gradients, in-batch negatives gathered across ranks), against the same
  module on the whole batch in one process: loss and every gradient. A `plain` variant gathers
  without gradients (the pitfall) and must differ.
- `eval`: full-ranking metrics of a DDP-trained model, split over ranks, and the summary of the same
  ranking in this process alone; users scored per rank (no duplicates, none missing).
- `steps`: `agree_steps` with a different local count on every rank.
- `ddp_group`: the backend and gloo worker threads of the group DDP reduces on.
- rank 0 saves the model (rank-0 checkpoint) and records its scores for the round trip.
"""
from __future__ import annotations

import copy
import faulthandler
import json
import os
import sys
from contextlib import nullcontext
from unittest import mock

import numpy as np
import torch

from towerrec import distributed
from towerrec.distributed import agree_steps
from towerrec.evaluation import evaluate
from towerrec.models.base import FitOptions

faulthandler.enable()   # a crash in a rank prints its Python stack to stderr (the test shows it)
from towerrec.models.optim import set_sparse
from towerrec.models.train import _Loss
from towerrec.models.two_tower import TwoTower, TwoTowerConfig
from towerrec.models.two_tower.batches import PairBatches
from towerrec.splits import random_split

GLOBAL_BATCH = 24   # divisible by 1, 2, 3, 4


def data():
    from towerrec.data.synthetic import synthetic

    ds = synthetic(120, 60, 2_400, seed=3)
    return ds, random_split(ds.interactions, seed=0)


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in module.named_parameters():
        if p.grad is not None:
            out[name] = (p.grad.to_dense() if p.grad.is_sparse else p.grad).detach().clone()
    return out


def plain_gather(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The pitfall: a gather without gradients, the local rows put back (open_clip's local variant)."""
    group = distributed._LOSS_GROUP
    sizes = distributed.all_gather_rows(torch.tensor([[len(x)]]), group=group).flatten().tolist()
    offset = sum(sizes[:torch.distributed.get_rank()])
    parts = distributed.all_gather_rows(x.detach(), group=group)
    return torch.cat([parts[:offset], x, parts[offset + len(x):]]), offset


def step_check(model: TwoTower, train, preset: str) -> dict:
    """Loss and gradients of one DDP step against one process on the whole batch."""
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    module = copy.deepcopy(model.module_).train()
    set_sparse(module, True)
    batches = PairBatches(train, model.seen_, model.config)
    idx = np.random.default_rng(7).permutation(batches.n_samples)[:GLOBAL_BATCH]
    rng = np.random.default_rng(0)
    reference = copy.deepcopy(module)
    with mock.patch.object(distributed, "active", lambda: False):          # one process, whole batch
        ref_loss = reference.compute_loss(batches(idx, rng))
        ref_loss.backward()
    ref = grads(reference)
    out: dict = {"reference_loss": float(ref_loss)}
    for variant in ("autograd", "plain"):
        m = copy.deepcopy(module)
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp = DDP(_Loss(m), broadcast_buffers=False, find_unused_parameters=True, process_group=distributed.ddp_group())
        patch = mock.patch.object(distributed, "gather_with_grad", plain_gather) if variant == "plain" else nullcontext()
        with patch:
            loss = ddp(batches(idx[rank::world], rng))                    # rank r: rows r, r + W, ...
            loss.backward()
        total = loss.detach().clone()
        torch.distributed.all_reduce(total)
        got = grads(m)
        out[variant] = {
            "loss": float(total) / world,
            "sparse_tables": sorted(n for n, p in m.named_parameters() if p.grad is not None and p.grad.is_sparse),
            "missing": sorted(set(ref) ^ set(got)),
            "max_grad_diff": max(float((got[n] - ref[n]).abs().max()) for n in ref if n in got),
            "max_grad": max(float(ref[n].abs().max()) for n in ref),
        }
    return out


def eval_check(model: TwoTower, split) -> dict:
    calls = []
    original = model._score_users

    def counting(user_idx: np.ndarray) -> torch.Tensor:
        calls.append(len(user_idx))
        return original(user_idx)

    with mock.patch.object(model, "_score_users", counting):
        spread = evaluate(model, split, batch_size=16)                    # distributed (under torchrun)
    scored = sum(calls)
    alone = evaluate(model, split, batch_size=16, distributed=False)
    return {"spread": spread.summary, "alone": alone.summary, "users": spread.info["users_evaluated"],
            "users_alone": alone.info["users_evaluated"], "scored_here": scored,
            "top_equal": bool(np.array_equal(spread.top_items, alone.top_items))}


def main() -> None:
    out_dir = sys.argv[1]
    rank = int(os.environ.get("RANK", "0"))
    ds, split = data()
    options = FitOptions(seed=0, threads=1, progress=False, device="cpu", dist_timeout=60.0)
    result: dict = {"rank": rank}
    for preset, extra in (("cf", {}), ("hybrid", {"text": "none", "dropout": 0.0, "id_dropout": 0.0})):
        config = TwoTowerConfig.for_preset(preset, epochs=2, patience=2, batch_size=48, embedding_dim=16, id_dim=16,
                                           feature_dim=8, hidden=(), **extra)
        model = TwoTower(config).fit(split.train, user_features=ds.user_features, item_features=ds.item_features,
                                     valid=split.valid, options=options)
        result[preset] = {"step": step_check(model, split.train, preset), "eval": eval_check(model, split),
                          "history": model.history_}
        if preset == "cf":
            model.save(os.path.join(out_dir, "model"))
            if rank == 0:
                users = np.arange(model.seen_.shape[0])
                result["saved_scores"] = model.score_users(users).numpy().round(6).tolist()
    result["steps"] = agree_steps(3 + rank)
    group = distributed.ddp_group()
    result["ddp_group"] = {"backend": torch.distributed.get_backend(group),
                           "threads": group._get_backend(torch.device("cpu")).options._threads}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
