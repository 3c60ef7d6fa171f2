"""Implicit-feedback ALS: matrix factorisation with confidence weights, solved exactly.

Hu, Koren and Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008.
Frequency-scaled regularisation (`reg_exponent`) follows Rendle, Krichene, Zhang and Koren,
"Revisiting the Performance of iALS on Item Recommendation Benchmarks", RecSys 2022.

Every (user, item) pair has preference p = 1 if observed else 0 and confidence
c = 1 + alpha * w (or 1 + alpha * log(1 + w / epsilon)); w is 1, or the interaction weight.

    loss = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + sum_u lam_u |x_u|^2 + sum_i lam_i |y_i|^2
    x_u  = (Y^T Y + Y_u^T (C_u - I) Y_u + lam_u I)^-1  Y_u^T c_u          (same for y_i)

Y^T Y is shared by all users, so each solve only touches the user's own items. Each half-step
solves *all* users (or items) at once: rows are sorted by length, gathered into padded
[batch, length, factors] blocks, and their Gram matrices are built with one batched matmul and
factorised with one batched Cholesky. There is no Python loop over users.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.data.sequences import Sequences
from towerrec.errors import TowerrecError
from towerrec.models.base import Capabilities, FitOptions, Recommender

log = logging.getLogger(__name__)
# A padded block holds at most this many floats ([batch, length, factors]); 2^23 = 32 MiB.
_BLOCK_ELEMENTS = 1 << 23
# Rows in one block are at most this much longer than its shortest (+8). On ml-100k's train split:
# 11-12 blocks per side, 94k-98k padded entries for 81k interactions (blocks bounded by memory
# alone: 2-3 blocks, 216k-250k entries).
_MAX_PADDING = 1.25


@dataclass(frozen=True)
class ALSConfig:
    """Defaults tuned on the ml-100k random 8:1:1 *valid* split (seed 0); see benchmarks/."""

    embedding_dim: int = 64        # alias `factors`; ml-100k valid NDCG@10 flat from 48 to 96 (0.265-0.268); 32: 0.264
    regularization: float = 25.0   # large, as Y^T Y sums over all items; at alpha 1: 1 -> 0.225, 10 -> 0.250
    alpha: float = 2.0             # observed pairs weigh 1 + alpha; valid best 1.5-3 with lam 20-30
    confidence: str = "linear"     # "linear": c = 1 + alpha*w;  "log": c = 1 + alpha*log(1 + w/epsilon)
    epsilon: float = 1.0           # only for "log"
    use_weights: bool = False      # w = 1 per interaction; ratings as w (alpha 0.5) were +0.002, i.e. noise
    reg_exponent: float = 0.0      # lam_u = lam * (conf_u / mean conf)^reg_exponent; 1 was -0.004 here
    epochs: int = 10               # alias `iterations`; exact solves converge fast: 8, 10, 15, 20 all within 0.0005
    init_std: float = 0.1          # item/user factors start at N(0, init_std^2 / embedding_dim)
    # `update`: exact alternations over the touched rows (touched items, then touched users) after
    # the first user solve, then up to `update_sweeps` passes over *every* item and user, each row
    # moved `update_cg_steps` conjugate-gradient steps from its current factor (cheap: no f x f
    # solve). The sweeps let old rows follow the new ones, which matters where most new rows bring
    # new items (ciao rolling, NDCG@10 ratio to a refit: 0.87 without sweeps; benchmarks/README.md,
    # "Continual learning").
    update_passes: int = 1
    update_sweeps: int = 15        # at most; see `ALS.update_sweep_count`
    update_cg_steps: int = 2

    #: the published names (Hu et al.; implicit's `ALS(factors=, iterations=)`) accepted as aliases
    ALIASES: ClassVar[dict[str, str]] = {"factors": "embedding_dim", "iterations": "epochs"}


class ALS(Recommender):
    """Weighted matrix factorisation for implicit feedback (clicks, plays, views).

    Use it when you want compact user/item embeddings (e.g. to serve from an ANN index) and a fit
    that takes seconds. New users are folded in by solving their factor from their history.

    >>> model = ALS(embedding_dim=64, epochs=15).fit(split.train, options=FitOptions(seed=0))
    >>> ALS(factors=64, iterations=15).config == model.config     # the published names are aliases
    True
    >>> recs = model.recommend(["196"], k=10)
    >>> recs = model.recommend(history=["242", "302"], k=10)   # folded in, no retraining
    >>> sims = model.similar_items(["242"], k=5)               # cosine on item factors
    """

    name = "als"
    Config = ALSConfig

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(histories=True, similar_items=True, vectors="ip")

    def __init__(self, config: ALSConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        if cfg.confidence not in ("linear", "log"):
            raise TowerrecError(f"ALS confidence must be 'linear' or 'log', got {cfg.confidence!r}")
        if cfg.update_passes < 1:
            raise TowerrecError(f"ALS update_passes must be >= 1, got {cfg.update_passes}")
        if cfg.update_sweeps < 0 or cfg.update_cg_steps < 1:
            raise TowerrecError(f"ALS update_sweeps must be >= 0 and update_cg_steps >= 1, got "
                                f"{cfg.update_sweeps} and {cfg.update_cg_steps}")

    # ---- training -----------------------------------------------------------------------------
    def _confidence(self, m: sp.csr_matrix) -> sp.csr_matrix:
        """The same sparsity with data = c - 1 (float32)."""
        m = m.astype(np.float64, copy=True)
        if self.config.confidence == "log":
            m.data = self.config.alpha * np.log1p(m.data / self.config.epsilon)
        else:
            m.data = self.config.alpha * m.data
        return m.astype(np.float32)

    def _reg(self, conf: sp.csr_matrix, mean_conf: float) -> torch.Tensor:
        """lam per row [n_rows]: total confidence of the row over *all* columns, relative to the mean."""
        total = conf.shape[1] + np.asarray(conf.sum(axis=1), dtype=np.float64).ravel()
        return torch.from_numpy(self.config.regularization * (total / mean_conf) ** self.config.reg_exponent).float()

    def _fit(self, interactions: Interactions, *, user_features: FeatureTable | None,
             item_features: FeatureTable | None, valid: Interactions | None, options: FitOptions) -> None:
        cfg = self.config
        device = options.torch_device()
        conf_u = self._confidence(interactions.to_csr(binary=not cfg.use_weights))   # [n_users, n_items]
        conf_i = conf_u.T.tocsr()                                                     # [n_items, n_users]
        self.mean_conf_ = _mean_total(conf_u)
        mean_conf_items = _mean_total(conf_i)
        reg_u = self._reg(conf_u, self.mean_conf_).to(device)
        reg_i = self._reg(conf_i, mean_conf_items).to(device)
        gen = torch.Generator().manual_seed(options.seed)
        std = cfg.init_std / math.sqrt(cfg.embedding_dim)
        users = (torch.randn(conf_u.shape[0], cfg.embedding_dim, generator=gen) * std).to(device)
        items = (torch.randn(conf_u.shape[1], cfg.embedding_dim, generator=gen) * std).to(device)
        blocks_u = _Blocks(conf_u, reg_u, cfg.embedding_dim, device)
        blocks_i = _Blocks(conf_i, reg_i, cfg.embedding_dim, device)
        self.loss_history_: list[float] = []
        # items first, then users: the final user factors are the exact solve for the final item
        # factors, so folding in a training user's history reproduces its own factor
        for _ in range(cfg.epochs):
            items = blocks_i.solve(users)
            users = blocks_u.solve(items)
            self.loss_history_.append(_loss(conf_u, users, items, reg_u, reg_i))
            log.debug("als iteration %d: loss %.2f", len(self.loss_history_), self.loss_history_[-1])
        self.user_factors_ = users.cpu()   # [n_users, factors]
        self.item_factors_ = items.cpu()   # [n_items, factors]
        if cfg.use_weights:                # `update` needs the summed weights, which `seen_` (binary) lacks
            self.weighted_ = interactions.to_csr(binary=False)

    # ---- continual learning --------------------------------------------------------------------
    def _update(self, delta, *, old_seen, items, users, options: FitOptions) -> None:
        """Exact fold-in of the touched rows, then cheap sweeps over all rows.

        New users and items start at zero; then the touched users are solved for the items, the
        touched items (new, or with new rows) for the users, and the touched users once more
        (`update_passes` times items-then-users). Then `update_sweep_count(delta)` conjugate-gradient
        sweeps move every item and user towards its solve for the other side (O(nnz f) each, no
        f x f solve), and the touched users are solved exactly once more, so that each touched
        user's factor is the exact solve for the final item factors (as after fit)."""
        cfg = self.config
        matrix = self.seen_
        if cfg.use_weights:
            old = getattr(self, "weighted_", None)
            if old is None:
                raise TowerrecError("ALS(use_weights=True) loaded from an artifact keeps no weights: refit it")
            n_u, n_i = matrix.shape
            old = sp.csr_matrix((old.data, old.indices, np.concatenate(
                [old.indptr, np.full(n_u - old.shape[0], old.indptr[-1])])), shape=(n_u, n_i))
            matrix = self.weighted_ = (old + delta.rows.to_csr(binary=False)).tocsr()
        conf_u = self._confidence(matrix)
        conf_i = conf_u.T.tocsr()
        reg_u = self._reg(conf_u, self.mean_conf_)
        reg_i = self._reg(conf_i, _mean_total(conf_i))
        grow = torch.zeros
        users = torch.cat([self.user_factors_, grow(len(delta.new_users), cfg.embedding_dim)])
        items = torch.cat([self.item_factors_, grow(len(delta.new_items), cfg.embedding_dim)])
        touched_u, touched_i = np.sort(delta.touched_users), np.sort(delta.touched_items)
        cpu = torch.device("cpu")
        blocks_u = _Blocks(conf_u[touched_u], reg_u[torch.from_numpy(touched_u)], cfg.embedding_dim, cpu)
        blocks_i = _Blocks(conf_i[touched_i], reg_i[torch.from_numpy(touched_i)], cfg.embedding_dim, cpu)
        tu, ti = torch.from_numpy(touched_u), torch.from_numpy(touched_i)
        if len(tu):
            users[tu] = blocks_u.solve(items)
        for _ in range(cfg.update_passes):
            if len(ti):
                items[ti] = blocks_i.solve(users)
            if len(tu):
                users[tu] = blocks_u.solve(items)
        sweeps = self.update_sweep_count(delta)
        if sweeps:
            eq_i, eq_u = _NormalEquations(conf_i, reg_i), _NormalEquations(conf_u, reg_u)
        for _ in range(sweeps):
            items = eq_i.conjugate_gradient(items, users, cfg.update_cg_steps)
            users = eq_u.conjugate_gradient(users, items, cfg.update_cg_steps)
        if sweeps and len(tu):              # the touched users exact again, as after fit
            users[tu] = blocks_u.solve(items)
        self.last_update_sweeps_ = sweeps
        self.user_factors_, self.item_factors_ = users, items

    def _update_counts(self) -> dict[str, int]:
        return {"sweeps": int(getattr(self, "last_update_sweeps_", 0))}

    def update_sweep_count(self, delta) -> int:
        """Sweeps over every row for this update: `update_sweeps` scaled by the share of its rows that
        land on items new in it (rounded up). Those items were folded in from a handful of rows with
        the old factors fixed, and the old factors must move around them; an update of known items
        is already close to its refit after the exact solves (ml-100k, 0.8% new-item rows: 1 sweep;
        ciao, 67%: 11 of 15)."""
        rows = delta.rows
        if not len(rows) or not self.config.update_sweeps:
            return 0
        share = float(np.count_nonzero(rows.item_idx >= delta.n_items_before)) / len(rows)
        return math.ceil(self.config.update_sweeps * share)

    def training_history(self) -> list[dict] | None:
        losses = getattr(self, "loss_history_", None)
        return [{"epoch": i, "loss": float(v)} for i, v in enumerate(losses)] if losses else None

    # ---- scoring ------------------------------------------------------------------------------
    def _score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        return self.user_factors_[torch.from_numpy(user_idx)] @ self.item_factors_.T

    def fold_in(self, seen: sp.csr_matrix) -> torch.Tensor:
        """User factors [n, factors] for histories `seen` [n, n_items], items held fixed."""
        conf = self._confidence(seen.tocsr())
        reg = self._reg(conf, self.mean_conf_)
        return _Blocks(conf, reg, self.config.embedding_dim, torch.device("cpu")).solve(self.item_factors_)

    def _score_histories(self, histories: Sequences) -> torch.Tensor:
        return self.history_vectors(histories) @ self.item_factors_.T

    # ---- vectors (serving from an index) -------------------------------------------------------
    def user_vectors(self, user_idx: np.ndarray) -> torch.Tensor:
        self._check_fitted()
        return self.user_factors_[torch.from_numpy(np.asarray(user_idx, dtype=np.int64))]

    def history_vectors(self, histories: Sequences) -> torch.Tensor:
        """Folded-in factors of new users: the exact least-squares solve with the items fixed."""
        self._check_fitted()
        return self.fold_in(histories.to_csr(self.n_items))

    def item_vectors(self) -> torch.Tensor:
        self._check_fitted()
        return self.item_factors_

    def _item_scores(self, item_idx: np.ndarray) -> torch.Tensor:
        """Cosine of the item factors with each query item's."""
        unit = torch.nn.functional.normalize(self.item_factors_, dim=1)
        return unit[torch.from_numpy(item_idx)] @ unit.T

    # ---- explanations -------------------------------------------------------------------------
    def history_effects(self, user_idx: int, history: Sequences, item_idx: np.ndarray) -> np.ndarray:
        """Hu, Koren & Volinsky (2008, sec. 5): the folded-in score is sum_h c_uh y_i^T W_u y_h with
        W_u = (Y^T C_u Y + lambda_u I)^-1, so item h contributes c_uh y_i^T W_u y_h (exact for the
        fold-in, which reproduces a training user's factor). A repeated item counts once."""
        self._check_fitted()
        row = history.to_csr(self.n_items)
        conf = self._confidence(row)                                  # c - 1 on the history's items
        lam = float(self._reg(conf, self.mean_conf_)[0])
        y, gram = self._explain_gram()
        hist = history.tokens - 1
        y_h = y[torch.from_numpy(row.indices.astype(np.int64))]      # the distinct history items
        c1 = torch.from_numpy(conf.data.astype(np.float64))
        a = gram + (y_h * c1[:, None]).T @ y_h + lam * torch.eye(y.shape[1], dtype=torch.float64)
        w_y = torch.linalg.solve(a, y[torch.from_numpy(np.asarray(item_idx, dtype=np.int64))].T)   # W_u y_i [f, m]
        per_item = ((1.0 + c1)[:, None] * (y_h @ w_y)).numpy()      # [distinct, m]
        out = np.zeros((len(hist), len(item_idx)))
        first = np.unique(hist, return_index=True)[1]                # sorted distinct items, as row.indices
        out[first] = per_item
        return out

    def _explain_gram(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Y, Y^T Y) in float64, kept until the item factors change (a request reads them, not n_items x f^2)."""
        key = (id(self.item_factors_), self.item_factors_._version, tuple(self.item_factors_.shape))
        cached = self.__dict__.get("_gram_cache")
        if cached is None or cached[0] != key:
            y = self.item_factors_.double()
            cached = self.__dict__["_gram_cache"] = (key, y, y.T @ y)
        return cached[1], cached[2]

    def explanation_method(self) -> str:
        return "ALS decomposition: the score is the sum over the history of c_uh y_i^T W_u y_h"

    # ---- artifacts ----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        state = {"user_factors": self.user_factors_.numpy(), "item_factors": self.item_factors_.numpy(),
                 "mean_conf": np.array([self.mean_conf_], dtype=np.float64)}
        weighted = getattr(self, "weighted_", None)
        if weighted is not None:
            state.update({"weighted.indptr": weighted.indptr.astype(np.int64),
                          "weighted.indices": weighted.indices.astype(np.int64),
                          "weighted.data": weighted.data.astype(np.float32)})
        return state

    def _load_state(self, tensors: dict[str, np.ndarray], extra: dict) -> None:
        self.user_factors_ = torch.from_numpy(tensors["user_factors"])
        self.item_factors_ = torch.from_numpy(tensors["item_factors"])
        self.mean_conf_ = float(tensors["mean_conf"][0])
        if "weighted.data" in tensors:
            self.weighted_ = sp.csr_matrix((tensors["weighted.data"], tensors["weighted.indices"],
                                            tensors["weighted.indptr"]), shape=self.seen_.shape)


def _mean_total(conf: sp.csr_matrix) -> float:
    """Mean over non-empty rows of the total confidence (n_columns + sum of c - 1)."""
    counts = np.diff(conf.indptr)
    sums = np.asarray(conf.sum(axis=1), dtype=np.float64).ravel()[counts > 0]
    return float(conf.shape[1] + sums.mean()) if len(sums) else float(conf.shape[1])


class _Blocks:
    """The rows of a CSR of (c - 1), pre-gathered into padded blocks of similar length.

    Built once per fit side; `solve` is then one batched Gram + Cholesky per block.
    """

    def __init__(self, conf: sp.csr_matrix, reg: torch.Tensor, factors: int, device: torch.device) -> None:
        self.n_rows = conf.shape[0]
        self.device = device
        counts = np.diff(conf.indptr)
        order = np.argsort(counts, kind="stable")
        # one entry per block: rows [b], columns [b, L], c - 1 [b, L], c [b, L] (0 on padding), lam [b]
        self.blocks: list[tuple[torch.Tensor, ...]] = []
        start = 0
        while start < len(order):
            lengths = np.maximum(counts[order[start:]], 1)       # ascending: the last row sets L
            sizes = np.arange(1, len(lengths) + 1)
            fits = ((sizes * lengths * factors <= _BLOCK_ELEMENTS) & (sizes * factors * factors <= _BLOCK_ELEMENTS)
                    & (lengths <= _MAX_PADDING * lengths[0] + 8))  # little padding: it is wasted work
            stop = start + max(1, int(np.count_nonzero(fits)))  # `fits` is true on a prefix
            rows = order[start:stop]
            width = int(max(counts[rows].max(), 1))
            real = np.arange(width)[None, :] < counts[rows][:, None]
            # padding points at column 0 with c - 1 = 0 and real = 0: it adds nothing to either side
            pos = np.where(real, conf.indptr[rows][:, None] + np.arange(width)[None, :], 0)
            cols = np.where(real, conf.indices[pos], 0) if conf.nnz else np.zeros(pos.shape, dtype=np.int64)
            data = np.where(real, conf.data[pos], 0.0) if conf.nnz else np.zeros(pos.shape)
            self.blocks.append(tuple(torch.from_numpy(a).to(device) for a in (
                rows.astype(np.int64), cols.astype(np.int64), data.astype(np.float32),
                (data + real).astype(np.float32), reg.cpu().numpy()[rows])))
            start = stop

    def solve(self, other: torch.Tensor) -> torch.Tensor:
        """Exact least-squares factors [n_rows, factors] given the other side's `other` [n_cols, f].

        Few, large tensor ops per block: on a busy machine each multi-threaded op can wait a
        scheduler slice, so the op count, not the flops, sets the time.
        """
        f = other.shape[1]
        gram = other.T @ other                                   # Y^T Y [f, f], shared by all rows
        out = torch.zeros(self.n_rows, f, device=other.device, dtype=other.dtype)
        for rows, cols, c1, c, lam in self.blocks:
            y = other[cols]                                      # [b, L, f]
            a = torch.baddbmm(gram, (y * c1[..., None]).transpose(1, 2), y)  # Y^T Y + Y_u^T (C_u - I) Y_u
            a.diagonal(dim1=1, dim2=2).add_(lam[:, None])        # + lam_u I
            rhs = torch.bmm(c[:, None, :], y)[:, 0]              # Y_u^T c_u  [b, f]
            chol, info = torch.linalg.cholesky_ex(a)
            if bool((info != 0).any()):  # float32 round-off with a tiny regularisation
                out[rows] = torch.linalg.solve(a.double(), rhs.double()).to(other.dtype)
            else:
                out[rows] = torch.cholesky_solve(rhs[..., None], chol)[..., 0]
        return out


class _NormalEquations:
    """Every row's normal equations A_u x_u = b_u, A_u = Y^T Y + Y_u^T (C_u - I) Y_u + lam_u I and
    b_u = Y_u^T c_u, for one side, applied to all rows at once without forming any A_u: given the
    other side's factors Y, A p is one sampled product over the nonzeros and one sparse product,
    O(nnz f + n f^2). The sparsity is read once; Y changes between calls."""

    def __init__(self, conf: sp.csr_matrix, reg: torch.Tensor) -> None:
        self.crow = torch.from_numpy(conf.indptr.astype(np.int64))
        self.col = torch.from_numpy(conf.indices.astype(np.int64))
        self.c1 = torch.from_numpy(conf.data.astype(np.float32))
        self.shape = conf.shape
        self.lam = reg.float()[:, None]

    def _sparse(self, values: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():     # "sparse CSR support is in beta": the two products used here
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(self.crow, self.col, values, size=self.shape)

    def conjugate_gradient(self, x: torch.Tensor, other: torch.Tensor, steps: int) -> torch.Tensor:
        """Every row moved `steps` conjugate-gradient steps, from `x`, towards its exact solve given
        `other` = Y (Takacs, Pilaszy and Tikk, RecSys 2011; implicit's conjugate-gradient ALS):
        O(nnz f + n f^2) a step, against O(nnz f^2 + n f^3) for the exact solve."""
        gram, pattern = other.T @ other, self._sparse(torch.ones_like(self.c1))

        def apply(p: torch.Tensor) -> torch.Tensor:           # A p, row by row
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                dots = torch.sparse.sampled_addmm(pattern, p, other.T, beta=0.0).values()   # p_u . y_i
            return p @ gram + self.lam * p + self._sparse(dots * self.c1) @ other

        x = x.clone()
        r = self._sparse(1.0 + self.c1) @ other - apply(x)    # b - A x
        p, rs = r.clone(), (r * r).sum(1)
        for _ in range(steps):
            ap = apply(p)
            denom = (p * ap).sum(1)
            alpha = torch.where(denom > 0, rs / denom.clamp_min(1e-30), torch.zeros_like(rs))
            x += alpha[:, None] * p
            r -= alpha[:, None] * ap
            new_rs = (r * r).sum(1)
            p = r + torch.where(rs > 0, new_rs / rs.clamp_min(1e-30), torch.zeros_like(rs))[:, None] * p
            rs = new_rs
        return x


def _loss(conf: sp.csr_matrix, users: torch.Tensor, items: torch.Tensor, reg_u: torch.Tensor,
          reg_i: torch.Tensor) -> float:
    """The full weighted loss over all n_users x n_items pairs, in O(nnz * f + (n_users + n_items) f^2)."""
    coo = conf.tocoo()
    u = torch.from_numpy(coo.row.astype(np.int64)).to(users.device)
    i = torch.from_numpy(coo.col.astype(np.int64)).to(users.device)
    c1 = torch.from_numpy(coo.data).to(users.device).double()
    s = (users[u] * items[i]).sum(1).double()
    everything = ((users.T @ users).double() * (items.T @ items).double()).sum()   # sum_{u,i} s_ui^2
    observed = ((1 + c1) * (1 - s) ** 2 - s ** 2).sum()                         # swap p=0 for p=1, c
    penalty = ((reg_u.double() * users.double().pow(2).sum(1)).sum()
               + (reg_i.double() * items.double().pow(2).sum(1)).sum())
    return float(everything + observed + penalty)
