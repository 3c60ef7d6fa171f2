"""The optimiser split of the training loop: id tables train row-wise on sparse gradients, every
other weight with fused AdamW.

Why: an id table of 500K users x 64 has 32M parameters, and a batch of 1,024 pairs touches ~1K
of its rows. With dense gradients AdamW reads and writes all 32M (plus two moments) every step,
the whole cost of a step at that size (4,157 interactions/s on 20M synthetic rows,
benchmarks/README.md). With `sparse=True` lookups the backward pass yields the touched rows only,
and a row-wise optimiser updates just those.

- `SparseRowAdam`: Adam(W) on the rows a step touches; when a row comes back after k skipped
  steps it first gets, in closed form, what dense AdamW would have done to it meanwhile
  (momentum drift, moment decay, weight decay). Plain lazy Adam (`torch.optim.SparseAdam`)
  freezes skipped rows, and that changed SASRec with a sampled softmax on ml-100k (valid
  NDCG@10 0.1222 -> 0.1099, seed 0); the catch-up costs ~1.3 ms a step on 500K + 100K x 64
  tables (2.9 against 1.6 ms for the optimiser, one thread).
- `RowWiseAdagrad`: FBGEMM's EXACT_ROWWISE_ADAGRAD: one accumulator per row (the mean squared
  gradient of the row), so the optimiser state is one float per row instead of 2 x dim. No
  momentum, so a skipped row has nothing to catch up.

**Regularisation of id rows.** AdamW's decoupled weight decay shrinks every row every step; a
sparse step cannot touch every row. `SparseRowAdam` applies the decay of the skipped steps,
(1 - lr x weight_decay)^k, when a row is next touched: AdamW's regularisation, paid lazily (a row
never touched again keeps its value, which no training step reads). `RowWiseAdagrad` decays the
rows a step touches ("L2 on the rows touched", as most recsys code). Padding rows (code 0,
"unknown") never appear in a sparse gradient, so they stay zero.

Dense gradients on a table (a full-softmax `h @ table.T`, a table read through `.weight`) are
handled too: every row is then touched, and the update equals the dense algorithm's.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from towerrec.errors import TowerrecError

EMBEDDING_OPTIMIZERS = ("sparse_adam", "rowwise_adagrad", "dense")


def table_modules(module: nn.Module) -> list[nn.Embedding | nn.EmbeddingBag]:
    """The id tables of `module` (every `nn.Embedding` / `nn.EmbeddingBag` with a trainable weight)."""
    return [m for m in module.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.weight.requires_grad]


def set_sparse(module: nn.Module, on: bool = True) -> Callable[[], None]:
    """Make the id tables of `module` produce sparse gradients (`on`) and return a function that
    puts the flags back. The flag only changes backward: lookups give the same values. Tables
    flagged `dense_gradients` (small feature tables, `towerrec.towers.features`) keep dense
    gradients: the table optimiser then updates all their rows, as it does for any dense gradient."""
    tables = [m for m in table_modules(module) if not getattr(m, "dense_gradients", False)]
    before = [m.sparse for m in tables]
    for m in tables:
        m.sparse = on

    def restore() -> None:
        for m, flag in zip(tables, before):
            m.sparse = flag

    return restore


def _rows(grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(rows [r], values [r, ...]) of a coalesced sparse gradient, or (None, grad) for a dense one."""
    if grad.is_sparse and grad.sparse_dim() != 1:   # not row-sparse (no embedding makes these)
        return None, grad.to_dense()
    if grad.is_sparse:
        if not grad.is_coalesced():
            rows = grad._indices()[0]
            if len(rows) < 2 or bool((rows[1:] > rows[:-1]).all()):   # one entry per row, in order (`IdEmbedding`)
                return rows, grad._values()
            grad = grad.coalesce()
        return grad.indices()[0], grad.values()
    return None, grad


class SparseRowAdam(torch.optim.Optimizer):
    """Adam(W) on the rows present in each (sparse) gradient, with what the skipped steps would have
    done caught up in closed form when a row is next touched.

    Under dense AdamW a row that no step touches keeps moving: its first moment decays by b1 and
    drives the row on, its second by b2, and weight decay shrinks it. Plain lazy Adam
    (`torch.optim.SparseAdam`) freezes such a row instead, which changed training on ml-100k
    (SASRec with a sampled softmax: valid NDCG@10 0.1222 -> 0.1099, one seed). Here, a row last
    updated at step s and touched again at step t first gets the k = t - 1 - s skipped steps:
    the drift -lr * m / sqrt(v) * sum_j r^j c (r = b1 / sqrt(b2), c the bias correction a few
    steps into the gap, eps ignored), the moments decayed by b1^k and b2^k, the decay
    (1 - lr * wd)^k; then the usual step. A row touched every step is exactly AdamW; rows never touched stay as they are
    (the padding row 0 is never in a gradient, so it stays zero). A dense gradient updates every
    row: AdamW for that table."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: ANN001 - torch's signature
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["last"] = torch.zeros(p.shape[0], dtype=torch.int64, device=p.device)  # last step per row
                state["step"] += 1
                t = state["step"]
                rows, g = _rows(p.grad)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                if rows is None:
                    rows = torch.arange(p.shape[0], device=p.device)
                    g = g.reshape(p.shape)
                if rows.numel() == 0:
                    continue
                last = state["last"].index_select(0, rows)
                m_r, v_r, p_r = m.index_select(0, rows), v.index_select(0, rows), p.index_select(0, rows)
                self._catch_up(p_r, m_r, v_r, last, t, lr, b1, b2, wd)
                if wd:
                    p_r.mul_(1 - lr * wd)
                m_r.lerp_(g, 1 - b1)
                v_r.mul_(b2).addcmul_(g, g, value=1 - b2)
                p_r.addcdiv_(m_r, v_r.sqrt().div_(math.sqrt(1 - b2 ** t)).add_(eps), value=-lr / (1 - b1 ** t))
                m.index_copy_(0, rows, m_r)
                v.index_copy_(0, rows, v_r)
                p.index_copy_(0, rows, p_r)
                state["last"].index_fill_(0, rows, t)

    @staticmethod
    def _catch_up(p_r: torch.Tensor, m_r: torch.Tensor, v_r: torch.Tensor, last: torch.Tensor, t: int, lr: float,
                  b1: float, b2: float, wd: float) -> None:
        """Apply, in place, the k = t - 1 - last steps a row sat out (see the class docstring).
        Whole-block passes with per-row factors (1 and 0 for rows without a gap): most rows of a
        big table have one, and gathering the others out would cost more than it saves."""
        k = (t - 1 - last).clamp_min(0)
        if not bool((k > 0).any()):
            return
        shape = (-1,) + (1,) * (p_r.dim() - 1)
        kf = k.to(torch.float64)
        if wd:   # every skipped step decays the row, seen before or not
            p_r.mul_(((1 - lr * wd) ** kf).to(p_r.dtype).view(shape))
        r = b1 / math.sqrt(b2)
        # sum_{j=1..k} r^j c(last + j), c(n) = sqrt(1 - b2^n) / (1 - b1^n): the weights r^j sit in
        # the first ~10 skipped steps, over which c barely moves, so c is taken there. Rows never
        # updated (last 0) have m = 0: no drift.
        n = (last + k.clamp_max(10)).clamp_min(1).to(torch.float64)
        series = r * (1 - r ** kf) / (1 - r) * torch.sqrt(1 - b2 ** n) / (1 - b1 ** n)
        p_r.addcdiv_(m_r * series.to(p_r.dtype).view(shape), v_r.sqrt().clamp_min_(1e-30), value=-lr)
        m_r.mul_((b1 ** kf).to(p_r.dtype).view(shape))
        v_r.mul_((b2 ** kf).to(p_r.dtype).view(shape))


class RowWiseAdagrad(torch.optim.Optimizer):
    """Row-wise Adagrad (FBGEMM's EXACT_ROWWISE_ADAGRAD): per row r, G_r += mean(g_r^2) and
    row -= lr g_r / (sqrt(G_r) + eps); weight decay as in `SparseRowAdam` (touched rows)."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 1e-2, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: ANN001 - torch's signature
        for group in self.param_groups:
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["sum"] = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
                rows, g = _rows(p.grad)
                acc = state["sum"]
                flat = g.reshape(len(g), -1)
                if rows is None:
                    acc.add_(flat.square().mean(1))
                    scale = acc.sqrt().add_(eps).reciprocal_().mul_(-lr)
                    if wd:
                        p.mul_(1 - lr * wd)
                    p.add_(g * scale.view(-1, *([1] * (g.dim() - 1))))
                    continue
                if rows.numel() == 0:
                    continue
                a_r = acc.index_select(0, rows).add_(torch.linalg.vector_norm(flat, dim=1).square_(),
                                                     alpha=1 / flat.shape[1])
                acc.index_copy_(0, rows, a_r)
                denom = a_r.sqrt_().add_(eps).view(-1, *([1] * (g.dim() - 1)))
                if wd:   # one gather and one write of the rows
                    p.index_copy_(0, rows, p.index_select(0, rows).mul_(1 - lr * wd).addcdiv_(g, denom, value=-lr))
                else:
                    p.index_add_(0, rows, g / denom, alpha=-lr)


class LeanAdamW(torch.optim.AdamW):
    """torch's fused AdamW (the same kernel, state and state_dict) without the per-step Python
    around it: `torch.optim.AdamW.step` groups its tensors by device and dtype and runs hooks on
    every call, ~0.4 ms a step, a third of cf's whole optimiser time on the 20M log (its dense part
    is two 64 x 64 layers). Groups whose parameters share one device and floating dtype call the
    kernel directly; anything else takes the parent's step."""

    def __init__(self, params: Iterable, **kwargs: object) -> None:
        super().__init__(params, fused=True, **kwargs)

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: ANN001 - torch's signature
        if closure is not None or not all(self._direct(g["params"]) for g in self.param_groups):
            return super().step(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            beta1, beta2 = group["betas"]
            torch._fused_adamw_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                                [s["exp_avg_sq"] for s in states], [], steps, lr=group["lr"], beta1=beta1,
                                beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                amsgrad=False, maximize=False)

    @staticmethod
    def _direct(params: list[torch.Tensor]) -> bool:
        return (not params or len({(p.device, p.dtype) for p in params}) == 1 and params[0].dtype.is_floating_point
                and not any(p.grad is not None and p.grad.is_sparse for p in params))


def _adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel over all parameters) where torch supports it: on CPU a step over
    ~2M embedding parameters takes 8 ms fused against 38 ms for the per-tensor default."""
    try:
        return LeanAdamW(groups, lr=lr)
    except (RuntimeError, ValueError):  # a device or dtype without a fused kernel
        return torch.optim.AdamW(groups, lr=lr)


class Optimizers:
    """The dense AdamW and the row-wise table optimiser behind one zero_grad / clip / step."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], params: list[nn.Parameter]) -> None:
        self.optimizers, self.params = optimizers, params

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def clip_grad_norm(self, max_norm: float) -> float:
        """Scale all gradients so that their global L2 norm is at most `max_norm` (sparse ones
        coalesced first: a row looked up twice has one gradient, the sum). Returns the norm."""
        norms = []
        for p in self.params:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                p.grad = p.grad.coalesce()
                norms.append(p.grad.values().norm())
            else:
                norms.append(p.grad.norm())
        if not norms:
            return 0.0
        total = float(torch.stack(norms).norm())
        if total > max_norm:
            coef = max_norm / (total + 1e-6)
            for p in self.params:
                if p.grad is not None:
                    p.grad.mul_(coef)
        return total

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()


def make_optimizers(module: nn.Module, *, kind: str, lr: float, table_lr: float, weight_decay: float,
                    exclude: set[int] = frozenset()) -> Optimizers:
    """AdamW for the dense weights (decay on matrices only: biases, norms and the temperature are
    not decayed) and `kind` for the id tables (`table_modules`; "dense": AdamW for them too, the
    behaviour before sparse training). Parameters whose id is in `exclude` are trained elsewhere
    (TorchRec's fused optimiser)."""
    if kind not in EMBEDDING_OPTIMIZERS:
        raise TowerrecError(f"embedding_optimizer must be one of {', '.join(EMBEDDING_OPTIMIZERS)}, got {kind!r}")
    params = [p for p in module.parameters() if p.requires_grad and id(p) not in exclude]
    row_wise = {id(m.weight) for m in table_modules(module)} if kind != "dense" else set()
    dense = [p for p in params if id(p) not in row_wise]
    optimizers: list[torch.optim.Optimizer] = []
    if dense:   # one group (one fused call a step) when nothing is decayed
        optimizers.append(_adamw([{"params": dense, "weight_decay": 0.0}] if not weight_decay else
                                 [{"params": [p for p in dense if p.dim() >= 2], "weight_decay": weight_decay},
                                  {"params": [p for p in dense if p.dim() < 2], "weight_decay": 0.0}], lr))
    rows = [p for p in params if id(p) in row_wise]
    if rows:
        cls = SparseRowAdam if kind == "sparse_adam" else RowWiseAdagrad
        optimizers.append(cls(rows, lr=table_lr, weight_decay=weight_decay))
    return Optimizers(optimizers, params)
