"""The optimiser split: row-wise optimisers on sparse id-table gradients, AdamW for the rest."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from towerrec.errors import TowerrecError
from towerrec.models.optim import LeanAdamW, RowWiseAdagrad, SparseRowAdam, make_optimizers, set_sparse, table_modules
from towerrec.models.train import TrainConfig

ROWS, DIM = 12, 4


def _sparse_grads(steps: int, seed: int = 0, rows_per_step: int = 5) -> list[torch.Tensor]:
    """Sparse gradients with repeated rows (uncoalesced, as an embedding backward makes them)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        idx = torch.randint(1, ROWS, (rows_per_step,), generator=g)
        out.append(torch.sparse_coo_tensor(idx[None], torch.randn(rows_per_step, DIM, generator=g), (ROWS, DIM),
                                           check_invariants=True))
    return out


def _run(opt_cls, grads: list[torch.Tensor], **kw) -> torch.Tensor:
    p = nn.Parameter(torch.randn(ROWS, DIM, generator=torch.Generator().manual_seed(1)))
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def test_every_row_every_step_is_adamw_with_its_weight_decay():
    """A row touched at every step decays as under AdamW: sparse and dense gradients alike."""
    g = torch.Generator().manual_seed(2)
    dense = [torch.randn(ROWS, DIM, generator=g) for _ in range(15)]
    every_row = [d.to_sparse(sparse_dim=1) for d in dense]
    reference = _run(torch.optim.AdamW, dense, lr=0.05, weight_decay=0.3)
    assert torch.allclose(_run(SparseRowAdam, dense, lr=0.05, weight_decay=0.3), reference, atol=1e-6)
    assert torch.allclose(_run(SparseRowAdam, every_row, lr=0.05, weight_decay=0.3), reference, atol=1e-6)


def test_untouched_rows_and_the_padding_row_do_not_move():
    """Weight decay reaches the rows a step touches only; row 0 (unknown) stays zero."""
    emb = nn.Embedding(ROWS, DIM, padding_idx=0)
    nn.init.normal_(emb.weight)
    with torch.no_grad():
        emb.weight[0].zero_()
    set_sparse(emb)
    before = emb.weight.detach().clone()
    opt = make_optimizers(emb, kind="sparse_adam", lr=0.1, table_lr=0.1, weight_decay=0.5)
    for _ in range(3):
        opt.zero_grad()
        emb(torch.tensor([0, 2, 3, 3, 0])).sum().backward()
        assert emb.weight.grad.is_sparse
        opt.step()
    after = emb.weight.detach()
    moved = (after != before).any(dim=1)
    assert moved.tolist() == [False, False, True, True] + [False] * (ROWS - 4)
    assert after[0].abs().sum() == 0


def _adagrad_formula(grads: list[torch.Tensor], lr: float, weight_decay: float = 0.0) -> torch.Tensor:
    """Row-wise Adagrad by its formula on dense copies, from `_run`'s start: touched rows only."""
    p = torch.randn(ROWS, DIM, generator=torch.Generator().manual_seed(1))
    acc = torch.zeros(ROWS)
    for g in grads:
        d = g.to_dense()
        touched = d.abs().sum(1) > 0
        acc[touched] += d[touched].pow(2).mean(1)
        p[touched] = p[touched] * (1 - lr * weight_decay) - lr * d[touched] / (acc[touched].sqrt()[:, None] + 1e-8)
    return p


def test_rowwise_adagrad_matches_its_formula():
    """G_r += mean(g_r^2); row -= lr g_r / (sqrt(G_r) + eps), duplicates summed first."""
    grads = _sparse_grads(6, seed=3)
    assert torch.allclose(_run(RowWiseAdagrad, grads, lr=0.1, eps=1e-8), _adagrad_formula(grads, 0.1), atol=1e-6)
    assert len(RowWiseAdagrad([nn.Parameter(torch.zeros(ROWS, DIM))]).state) == 0   # state: one float per row, lazily


def test_rowwise_adagrad_decay_and_in_order_gradients_match_the_formula():
    """Decoupled decay on the touched rows; a gradient whose rows are distinct and in order (what
    `IdEmbedding` hands back) is taken as it is, with the result of the coalesced path."""
    grads = _sparse_grads(6, seed=4)   # repeated rows, out of order: the coalescing path
    assert not any(bool((g._indices()[0].diff() > 0).all()) for g in grads)
    in_order = []
    for g in grads:
        c = g.coalesce()
        in_order.append(torch.sparse_coo_tensor(c.indices(), c.values(), c.shape))   # not flagged coalesced
    assert not in_order[0].is_coalesced()
    ours = _run(RowWiseAdagrad, grads, lr=0.1, weight_decay=0.5)
    assert torch.allclose(_run(RowWiseAdagrad, in_order, lr=0.1, weight_decay=0.5), ours, atol=1e-6)
    assert torch.allclose(ours, _adagrad_formula(grads, 0.1, weight_decay=0.5), atol=1e-6)


def test_clipping_counts_a_repeated_row_once_and_scales_sparse_and_dense_alike():
    emb, lin = nn.Embedding(ROWS, DIM), nn.Linear(DIM, 1)
    model = nn.ModuleDict({"emb": emb, "lin": lin})
    x = torch.tensor([1, 1, 4])
    dense_copy = {k: v.detach().clone() for k, v in model.state_dict().items()}
    set_sparse(model)
    opt = make_optimizers(model, kind="sparse_adam", lr=0.1, table_lr=0.1, weight_decay=0.0)
    (lin(emb(x)) * 10).sum().backward()
    norm = opt.clip_grad_norm(0.5)
    twin = nn.ModuleDict({"emb": nn.Embedding(ROWS, DIM), "lin": nn.Linear(DIM, 1)})
    twin.load_state_dict(dense_copy)
    (twin["lin"](twin["emb"](x)) * 10).sum().backward()
    ref_norm = float(torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.5))
    assert norm == pytest.approx(ref_norm, rel=1e-5)
    assert torch.allclose(emb.weight.grad.to_dense(), twin["emb"].weight.grad, atol=1e-6)
    assert torch.allclose(lin.weight.grad, twin["lin"].weight.grad, atol=1e-6)


def test_the_split_puts_tables_row_wise_and_the_rest_in_adamw():
    model = nn.ModuleDict({"ids": nn.Embedding(ROWS, DIM), "bag": nn.EmbeddingBag(ROWS, DIM), "lin": nn.Linear(DIM, 2)})
    assert [type(m).__name__ for m in table_modules(model)] == ["Embedding", "EmbeddingBag"]
    opts = make_optimizers(model, kind="rowwise_adagrad", lr=1e-3, table_lr=0.05, weight_decay=0.01)
    adamw, rows = opts.optimizers
    assert isinstance(adamw, torch.optim.AdamW) and isinstance(rows, RowWiseAdagrad)
    assert {id(p) for p in rows.param_groups[0]["params"]} == {id(model["ids"].weight), id(model["bag"].weight)}
    assert rows.param_groups[0]["lr"] == 0.05
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.01, 0.0]   # matrices decay, biases not
    dense = make_optimizers(model, kind="dense", lr=1e-3, table_lr=0.05, weight_decay=0.01).optimizers
    assert len(dense) == 1 and isinstance(dense[0], torch.optim.AdamW)
    restore = set_sparse(model)
    assert model["ids"].sparse and model["bag"].sparse
    restore()
    assert not model["ids"].sparse


def test_small_feature_tables_keep_dense_gradients_and_id_tables_go_sparse():
    """A categorical, bag or bucket table with fewer rows than DENSE_FEATURE_ROWS trains on dense
    gradients (every batch row hits it: a sparse gradient would be mostly repeats); id tables and
    large feature vocabularies go sparse; both stay with the table optimiser."""
    from towerrec.towers.features import DENSE_FEATURE_ROWS, BagEncoder, CategoricalEncoder, IdEmbedding

    model = nn.ModuleDict({"ids": IdEmbedding(50, DIM), "cat": CategoricalEncoder(30, DIM), "bag": BagEncoder(20, DIM),
                           "huge": CategoricalEncoder(DENSE_FEATURE_ROWS, DIM)})
    restore = set_sparse(model)
    assert model["ids"].embedding.sparse and model["huge"].embedding.sparse
    assert not model["cat"].embedding.sparse and not model["bag"].bag.sparse
    codes = torch.tensor([3, 3, 5, 1])
    (model["ids"](codes).sum() + model["cat"](codes).sum() + model["bag"](codes, torch.tensor([0, 2]))).sum().backward()
    assert model["ids"].embedding.weight.grad.is_sparse and not model["cat"].embedding.weight.grad.is_sparse
    rows = make_optimizers(model, kind="rowwise_adagrad", lr=1e-3, table_lr=0.05, weight_decay=0.0).optimizers[-1]
    assert len(rows.param_groups[0]["params"]) == 4
    restore()
    assert not model["ids"].embedding.sparse


def test_lean_adamw_steps_as_torchs_fused_adamw_and_keeps_its_state():
    """The same kernel called directly: equal weights and state after steps where one parameter
    has no gradient (skipped, as torch skips it) and two groups decay differently."""
    g = torch.Generator().manual_seed(3)
    start = [torch.randn(5, 3, generator=g), torch.randn(3, generator=g), torch.randn(4, 2, generator=g)]
    grads = [[torch.randn_like(t) for t in start] for _ in range(6)]
    runs = []
    for cls, kw in ((LeanAdamW, {}), (torch.optim.AdamW, {"fused": True})):
        ps = [nn.Parameter(t.clone()) for t in start]
        opt = cls([{"params": ps[:2], "weight_decay": 0.1}, {"params": ps[2:], "weight_decay": 0.0}], lr=0.05, **kw)
        for step, gs in enumerate(grads):
            for i, (p, gr) in enumerate(zip(ps, gs)):
                p.grad = None if (i == 1 and step % 2) else gr.clone()
            opt.step()
        runs.append((ps, opt))
    (lean, lean_opt), (ref, ref_opt) = runs
    for a, b in zip(lean, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(lean_opt.state[a][key], ref_opt.state[b][key], rtol=0, atol=0)
    assert float(lean_opt.state[lean[1]]["step"]) == 3.0


@pytest.mark.parametrize("field,value,match", [("embedding_optimizer", "adam", "embedding_optimizer must be one of"),
                                               ("embedding_learning_rate", -1.0, "embedding_learning_rate"),
                                               ("learning_rate", 0.0, "learning_rate must be > 0")])
def test_impossible_settings_are_one_clear_error(field, value, match):
    with pytest.raises(TowerrecError, match=match):
        TrainConfig(**{field: value}).validate()
    from towerrec.models.two_tower import TwoTower

    with pytest.raises(TowerrecError, match=match):
        TwoTower(preset="cf", **{field: value}).fit(_tiny())


def _tiny():
    import pandas as pd

    from towerrec.data.interactions import Interactions

    return Interactions.from_frame(pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]}))


def test_rows_that_skip_steps_catch_up_with_dense_adamw():
    """A row left out of some steps still follows AdamW (momentum drift and decay caught up when it
    returns); plain lazy Adam (SparseAdam) freezes it and ends measurably elsewhere."""
    g = torch.Generator().manual_seed(4)
    dense, sparse = [], []
    for step in range(80):
        d = torch.randn(ROWS, DIM, generator=g)
        if step < 79:                                             # the last step touches every row
            d[1:] *= (torch.rand(ROWS - 1, 1, generator=g) < 0.3)  # each row (but 0) in ~30% of the steps
        dense.append(d)
        touched = d.abs().sum(1).nonzero().flatten()
        sparse.append(torch.sparse_coo_tensor(touched[None], d[touched], (ROWS, DIM)))
    reference = _run(torch.optim.AdamW, dense, lr=0.01, weight_decay=0.5)
    ours = _run(SparseRowAdam, sparse, lr=0.01, weight_decay=0.5)
    lazy = _run(torch.optim.SparseAdam, sparse, lr=0.01)
    err, lazy_err = (ours - reference).abs().max(), (lazy - reference).abs().max()
    moved = (reference - _run(torch.optim.AdamW, [], lr=0.01)).abs().max()
    print(float(err), float(lazy_err), float(moved))
    assert err < 0.05 * moved and lazy_err > 4 * err, (err, lazy_err, moved)
