"""The two-tower math on index tensors: user and item towers, the scorer f(y, z) and the training
losses (`compute_loss`). Nothing here knows about ids, files or fitting; see `model.py`."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from towerrec import distributed
from towerrec.errors import TowerrecError
from towerrec.models.losses import (
    bce,
    bpr,
    candidate_log_q,
    ccl,
    distinct_candidates,
    full_softmax,
    negative_probabilities,
    sampled_softmax,
)
from towerrec.models.two_tower.config import TwoTowerConfig
from towerrec.towers.features import FeatureRows, IdEmbedding, TableSpec
from towerrec.towers.graph import GraphIdEncoder, GraphPropagation
from towerrec.towers.history import HistoryPooling
from towerrec.towers.inputs import item_encoders, user_encoders, width
from towerrec.towers.mlp import ACTIVATIONS, MLP
from towerrec.towers.scorers import make_scorer
from towerrec.towers.tower import Tower


def _plus(loss: torch.Tensor, kl: torch.Tensor | float) -> torch.Tensor:
    """loss + kl, without an add (and its backward) when there is no KL term (0.0)."""
    return loss if isinstance(kl, float) and kl == 0.0 else loss + kl


class TwoTowerModule(nn.Module):
    """The math on index tensors.

    Buffers: `user_code` [n_users] / `item_code` [n_items] id codes (0 = no trained id), the
    feature rows of both sides (`FeatureRows`, row = index + 1, row 0 blank), `trained_items`.
    user_vectors(...) -> [B, d]; item_vectors(item_idx [M]) -> [M, d]; compute_loss(batch) -> [].
    With `id_encoder="lightgcn"` the user and item ids of both towers read one LightGCN
    propagation (`self.graph`, adjacency from `graph_adjacency`); with `variational` the user
    tower is a Mult-VAE encoder (mean and log-variance; the KL term is added to the loss).
    """

    def __init__(self, config: TwoTowerConfig, *, n_user_ids: int, n_item_ids: int, user_code: np.ndarray,
                 item_code: np.ndarray, user_spec: TableSpec, item_spec: TableSpec,
                 user_arrays: dict[str, np.ndarray] | None, item_arrays: dict[str, np.ndarray] | None,
                 text_in_dim: int = 0, cnn_vocab_size: int = 0, graph_adjacency: torch.Tensor | None = None) -> None:
        super().__init__()
        c = self.config = config
        d = c.embedding_dim
        self.register_buffer("user_code", torch.as_tensor(user_code, dtype=torch.int64))
        self.register_buffer("item_code", torch.as_tensor(item_code, dtype=torch.int64))
        self.register_buffer("trained_items", torch.as_tensor(np.flatnonzero(item_code > 0), dtype=torch.int64))
        self.register_buffer("log_q", torch.zeros(len(item_code)), persistent=False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64), persistent=False)
        # cross-batch negatives: the last `negative_memory` positives' item vectors (FIFO ring)
        self.register_buffer("memory", torch.zeros(c.negative_memory, d), persistent=False)
        self.register_buffer("memory_items", torch.full((c.negative_memory,), -1, dtype=torch.int64), persistent=False)
        self.memory_at = 0
        self._kl: torch.Tensor | None = None
        self.user_rows = FeatureRows(user_arrays) if user_arrays is not None else None
        self.item_rows = FeatureRows(item_arrays) if item_arrays is not None else None

        sizes = c.sizes()
        self.graph = GraphPropagation(n_user_ids, n_item_ids, c.id_dim, c.graph_layers, graph_adjacency) \
            if c.id_encoder == "lightgcn" else None

        def item_side(ids: bool, features: bool, graph: GraphPropagation | None = None) -> dict[str, nn.Module]:
            return item_encoders(ids=ids, features=features, text=c.text, n_ids=n_item_ids, spec=item_spec,
                                 has_rows=self.item_rows is not None, sizes=sizes, text_in_dim=text_in_dim,
                                 cnn_vocab_size=cnn_vocab_size, graph=graph)

        # item tower
        inputs = item_side(c.item_ids, c.item_features, self.graph)
        if not inputs:
            raise TowerrecError("the item tower has no input: enable item_ids, or give item_features/text")
        self.item_tower = self._tower(inputs, () if c.item_linear else c.hidden)
        # history items (a separate "input" embedding of items, as in FISM / word2vec)
        self.history_tower = None
        if c.history != "none":
            h_inputs = item_side(c.history_ids, c.history_features)
            if not h_inputs:
                raise TowerrecError("the history encoder has no input: enable history_ids or history_features")
            self.history_tower = Tower(h_inputs, self._head(h_inputs, (), out_bias=c.history_bias))
            self.pool = HistoryPooling(d, c.history)
        # user tower
        u_inputs = user_encoders(ids=c.user_ids, features=c.user_features, history=self.history_tower is not None,
                                 n_ids=n_user_ids, spec=user_spec, has_rows=self.user_rows is not None, sizes=sizes,
                                 graph=self.graph)
        if not u_inputs:
            raise TowerrecError("the user tower has no input: enable user_ids, user_features or history")
        # a variational user tower outputs [mu, log-variance] of z (latent_dim, else d); with latent_dim
        # a decoder layer maps z to the user vector
        latent = c.latent_dim or d
        self.user_tower = self._tower(u_inputs, c.hidden, out_dim=2 * latent if c.variational else d,
                                      input_activation=c.input_activation, projected=True)
        self.user_decoder = nn.Sequential(nn.Linear(latent, d), ACTIVATIONS[c.activation]()) \
            if c.variational and c.latent_dim else None
        # per-item score offsets, keyed on the item id code (code 0, no trained id: no offset)
        self.item_bias = IdEmbedding(n_item_ids, 1) if c.item_bias else None
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.embedding.weight)
        self.scorer = make_scorer(c.scorer, d, temperature=c.temperature, learnable=c.learn_temperature)

    def _mlp(self, in_dim: int, hidden: tuple[int, ...], out_dim: int | None = None, out_bias: bool = True,
             input_activation: bool = False, zero_output: bool = False) -> MLP:
        c = self.config
        return MLP(in_dim, hidden, out_dim or c.embedding_dim, activation=c.activation, dropout=c.dropout, norm=c.norm,
                   out_bias=out_bias, input_activation=input_activation, zero_output=zero_output)

    def _head(self, inputs: dict[str, nn.Module], hidden: tuple[int, ...], out_bias: bool = True) -> nn.Module:
        """The top of an item-side tower: the MLP, or nothing when the tower is free id rows
        (`id_projection=False`, an id input alone and no hidden layer)."""
        if not self.config.id_projection and not hidden and list(inputs) == ["id"]:
            return nn.Identity()
        return self._mlp(width(inputs, self.config.embedding_dim), hidden, out_bias=out_bias)

    def _tower(self, inputs: dict[str, nn.Module], hidden: tuple[int, ...], *, out_dim: int | None = None,
               input_activation: bool = False, projected: bool = False) -> Tower:
        """The item or user tower. Under `id_residual` the id row is added to the MLP of the other
        inputs (the tower is the free id row alone when there are none); otherwise the MLP reads
        every input, or (`projected=False`, item side) `_head` decides."""
        c = self.config
        if c.id_residual and "id" in inputs:
            rest = {key: enc for key, enc in inputs.items() if key != "id"}
            # residual_zero_init: the tower starts as cf's free row, the features adding nothing yet
            mlp = self._mlp(width(rest, c.embedding_dim), hidden, out_dim, input_activation=input_activation,
                            zero_output=c.residual_zero_init) if rest else None
            return Tower(inputs, mlp, residual="id")
        if projected:
            return Tower(inputs, self._mlp(width(inputs, c.embedding_dim), hidden, out_dim,
                                           input_activation=input_activation))
        return Tower(inputs, self._head(inputs, hidden))

    def set_log_q(self, item_counts: np.ndarray) -> None:
        """One global logQ from training counts: the candidates of a row are the global batch
        (every rank's rows, gathered under DDP), the cross-batch memory's and every rank's extra
        negatives (uniform, or by count ** popularity_alpha)."""
        c = self.config
        item_prob = item_counts / max(item_counts.sum(), 1)
        log_q = candidate_log_q(item_prob, c.train.batch_size + c.negative_memory, c.negatives * distributed.world_size(),
                                c.negative_sampler, negative_probabilities(item_counts, c.negative_sampler,
                                                                           c.popularity_alpha))
        self.log_q = torch.from_numpy(log_q).to(self.log_q.device)

    def shared_graph(self):
        """One LightGCN propagation for everything computed inside (a training step, a scoring pass)."""
        return self.graph.shared() if self.graph is not None else nullcontext()

    def _drop(self, codes: torch.Tensor) -> torch.Tensor:
        p = self.config.id_dropout
        if self.training and p > 0:
            return codes * (torch.rand(codes.shape, device=codes.device) >= p)
        return codes

    def _item_input(self, tower: Tower, item_idx: torch.Tensor, id_dropped: torch.Tensor | None = None) -> dict:
        x: dict = {}
        if "id" in tower.inputs:
            codes = self.item_code[item_idx]
            x["id"] = self._drop(codes) if id_dropped is None else codes.masked_fill(id_dropped, 0)
        if "features" in tower.inputs:
            x["features"] = self.item_rows.take(item_idx + 1)
        return x

    def item_vectors(self, item_idx: torch.Tensor, id_dropped: torch.Tensor | None = None) -> torch.Tensor:
        """[M] item indices -> [M, d] ([M, d + 1] under `item_bias`); id_dropped [M] bool: embed those
        without their id (default: id dropout drawn here, in training)."""
        return self.item_output(self._item_input(self.item_tower, item_idx, id_dropped))

    def item_output(self, x: dict) -> torch.Tensor:
        """The item tower on its inputs `x`, with the item's offset as a last column under `item_bias`."""
        z = self.item_tower(x)
        return torch.cat([z, self.item_bias(x["id"]).to(z.dtype)], dim=-1) if self.item_bias is not None else z

    def user_output(self, y: torch.Tensor) -> torch.Tensor:
        """The user vector from the user tower's output `y`: a variational tower's sample (training,
        its KL kept for the loss) or mean, through the decoder layer when there is one; a 1 column
        under `item_bias`."""
        if self.config.variational:
            mu, log_var = y.chunk(2, dim=-1)
            if self.training:
                log_var = log_var.clamp(-10.0, 10.0)
                self._kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(-1)          # [B]
                y = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
            else:
                y = mu
            if self.user_decoder is not None:
                y = self.user_decoder(y)
        return torch.cat([y, y.new_ones(len(y), 1)], dim=-1) if self.item_bias is not None else y

    def user_vectors(self, user_idx: torch.Tensor, history: dict | None = None,
                     features: dict | None = None) -> torch.Tensor:
        """user_idx [B] (-1: unknown user: no id, no feature row unless `features` is given);
        history: the dict of `history_batch` as tensors (keys items, inverse, offsets, weights)."""
        tower = self.user_tower
        known = user_idx >= 0
        safe = user_idx.clamp_min(0)
        x: dict = {}
        if "id" in tower.inputs:
            x["id"] = self._drop(torch.where(known, self.user_code[safe], 0))
        if "features" in tower.inputs:
            x["features"] = features if features is not None else self.user_rows.take(torch.where(known, safe + 1, 0))
        if "history" in tower.inputs:
            if history is None:
                raise ValueError("this model pools a history: pass one")
            x["history"] = self._pooled_history(history)
        return self.user_output(tower(x))

    def _pooled_history(self, history: dict) -> torch.Tensor:
        """The history tower's item vectors pooled per row, [B, d].

        When the history tower is one affine map (W, b) over its inputs and the pooling is a
        weighted sum, pool(W r + b) = W pool(r) + mass * b: the inputs are pooled and the map runs
        on the B rows, not on each distinct history item (on the 20M log a batch of 1,024 rows
        reads ~67K distinct history items). Same values up to float rounding."""
        tower = self.history_tower
        x = self._item_input(tower, history["items"])
        linear = tower.affine() if self.pool.mode != "attention" else None
        reps = tower(x) if linear is None else tower.encode(x)
        if "row_user" in history:   # training rows sharing users (`_make_batch`)
            pooled, mass = self.pool.mean_leaving_out_with_mass(reps, history["inverse"], history["offsets"],
                                                                history["row_user"], history["left_out"])
        else:
            pooled, mass = self.pool.pool_with_mass(reps, history["inverse"], history["offsets"], history["weights"])
        if linear is None:
            return pooled
        out = F.linear(pooled, linear.weight)
        return out if linear.bias is None else out + mass[:, None] * linear.bias

    def compute_loss(self, batch: dict) -> torch.Tensor:
        with self.shared_graph():
            if "target_rows" in batch:
                loss = self._user_batch_loss(batch)
            else:
                loss = self._pair_loss(batch)
            c = self.config
            if c.id_l2 > 0:
                loss = loss + c.id_l2 * self._id_penalty(batch["user_idx"], batch.get("item_idx"))
        if self.training:
            self.steps += 1
        return loss

    def _kl_term(self, n_terms: int) -> torch.Tensor | float:
        """Annealed KL of a variational user tower, per loss term (the loss is a mean over `n_terms`)."""
        c = self.config
        if not c.variational or self._kl is None:
            return 0.0
        beta = c.kl_weight * min(1.0, float(self.steps) / max(c.kl_anneal_steps, 1))
        kl, self._kl = self._kl, None
        return beta * kl.sum() / max(n_terms, 1)

    def _id_penalty(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None) -> torch.Tensor:
        """Mean squared norm of the id embedding rows this batch read (ego rows for LightGCN):
        rows used often are regularised often, as in BPR's and LightGCN's per-batch L2."""
        out = torch.zeros((), device=self.user_code.device)
        sides = [(self.user_tower, self.user_code[user_idx.clamp_min(0)])]
        if item_idx is not None:
            sides.append((self.item_tower, self.item_code[item_idx]))
        for tower, codes in sides:
            if "id" in tower.inputs:
                enc = tower.inputs["id"]
                e = enc.ego(codes) if isinstance(enc, GraphIdEncoder) else enc(codes)
                out = out + e.float().pow(2).sum(-1).mean()
        return out

    def _pair_loss(self, batch: dict) -> torch.Tensor:
        c = self.config
        u = self.user_vectors(batch["user_idx"], batch.get("history"))
        kl = self._kl_term(len(u))
        pos = batch["item_idx"]
        if c.loss == "full_softmax":
            z = self.item_vectors(self.trained_items)
            target = torch.searchsorted(self.trained_items, pos)
            return _plus(full_softmax(self.scorer(u, z), target), kl)
        cands = torch.cat([pos, batch["negatives"]]) if "negatives" in batch else pos
        if c.loss == "sampled_softmax":
            return _plus(self._distinct_sampled_softmax(u, pos, cands), kl)
        if c.loss == "ccl":
            return _plus(self._ccl(u, pos, cands), kl)
        logits = self.scorer(u, self.item_vectors(cands))                  # [B, C]
        b = len(pos)
        positive = logits[:, :b].diagonal()
        if "negatives" in batch:
            negative = logits[:, b:]
        else:  # the previous row's item as the negative
            negative = logits[:, :b].gather(1, ((torch.arange(b, device=logits.device) - 1) % b)[:, None])
        return _plus(bpr(positive, negative) if c.loss == "bpr" else bce(positive, negative), kl)

    def _ccl(self, u: torch.Tensor, pos: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        """SimpleX's cosine contrastive loss over the distinct in-batch + extra candidates, each
        weighted by its multiplicity; the row's own item (any copy) is not its negative."""
        c = self.config
        distinct, column, log_count = distinct_candidates(cands)
        cos = F.normalize(u, dim=-1) @ F.normalize(self.item_vectors(distinct), dim=-1).T    # [B, U]
        rows = torch.arange(len(pos), device=cos.device)
        positive = cos[rows, column[:len(pos)]]
        weight = log_count.exp()[None, :].expand_as(cos).clone()
        weight[rows, column[:len(pos)]] = 0.0
        return ccl(positive, cos, weight, c.margin, c.negative_weight)

    def _memory_logits(self, u: torch.Tensor, pos: torch.Tensor) -> torch.Tensor | None:
        """[B, M] logits of the cross-batch negatives (logQ-corrected; empty slots and the row's
        own item removed), or None without a memory."""
        if self.config.negative_memory <= 0 or not self.training:
            return None
        items = self.memory_items
        bias = torch.where(items >= 0, -self.log_q[items.clamp_min(0)] if self.config.logq else 0.0, -torch.inf)
        q = self.scorer.query(u)
        logits = torch.addmm(bias[None, :].to(q.dtype), q, self.memory.T.to(q.dtype, copy=True))
        return logits.masked_fill(items[None, :] == pos[:, None], -torch.inf)

    @torch.no_grad()
    def _remember(self, z: torch.Tensor, items: torch.Tensor) -> None:
        """Push the prepared item vectors of this batch's positives into the ring (oldest out)."""
        m = self.config.negative_memory
        if m <= 0 or not self.training:
            return
        z, items = z[-m:], items[-m:]
        at = (self.memory_at + torch.arange(len(items), device=items.device)) % m
        self.memory[at] = z.to(self.memory.dtype)
        self.memory_items[at] = items
        self.memory_at = int((self.memory_at + len(items)) % m)

    def _distinct_sampled_softmax(self, u: torch.Tensor, pos: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        """The in-batch sampled softmax, each distinct candidate embedded and scored once.

        A candidate is an (item, id dropped) pair: id dropout is drawn per occurrence, as if every
        row's item went through the tower on its own, and the same item in the other form is an
        accidental hit for that row (out of its softmax), like its other copies. Equal in value and
        gradient to scoring all B + extra candidates (tests/models/test_two_tower.py)."""
        drops = self.training and self.config.id_dropout > 0 and "id" in self.item_tower.inputs
        cross_rank = self.training and distributed.active()
        # keys: item * 2 + (id dropped), which the cross-rank path reads too; when every candidate
        # keeps its id on one rank, the items themselves (seven ops a step fewer)
        paired = drops or cross_rank
        keys = cands
        if paired:
            dropped = (torch.rand(len(cands), device=cands.device) < self.config.id_dropout if drops else
                       torch.zeros(len(cands), dtype=torch.bool, device=cands.device))
            keys = cands * 2 + dropped
        distinct, column, log_count = distinct_candidates(keys)
        items = distinct // 2 if paired else distinct
        z = self.item_vectors(items, id_dropped=distinct % 2 == 1 if paired else None)
        if cross_rank:
            return self._cross_rank_softmax(u, keys[:len(pos)], column[:len(pos)], distinct, log_count, z)
        bias = log_count - self.log_q[items] if self.config.logq else log_count
        logits = self._logits(u, z, bias)                               # [B, U]
        accidental = None   # without id dropout no item has another form: no mask, and no [B, U] copy in backward
        if drops:
            twin = keys[:len(pos)] ^ 1                            # the row's item in the other form
            at = torch.searchsorted(distinct, twin).clamp_max(len(distinct) - 1)
            accidental = torch.where(distinct[at] == twin, at, -1)
        extra = self._memory_logits(u, pos)
        if self.config.negative_memory > 0 and self.training:
            self._remember(self.scorer.prepare(z.detach())[column[:len(pos)]], pos)
        return sampled_softmax(logits, column[:len(pos)], log_count, accidental, extra)

    def _cross_rank_softmax(self, u: torch.Tensor, row_keys: torch.Tensor, row_column: torch.Tensor,
                            distinct: torch.Tensor, log_count: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The in-batch sampled softmax of this rank's B rows over every rank's distinct candidates
        (DDP): the candidate vectors [U_r, d] are gathered with their gradients, in rank order.

        Equal to one process on the concatenated global batch (tests/models/test_ddp.py): a key
        on several ranks is several columns whose counts add up (sum_s exp(s + log k_s) = exp(s +
        log k)); the row's own column keeps one copy of its positive, and every other column that
        holds the row's item (on another rank, or with its id dropped) is an accidental hit,
        masked by item id. logQ comes from the training counts with the global batch size."""
        vectors, keys, counts, offset = distributed.gather_candidates(z, distinct, log_count)   # [C, d], [C], [C]
        items = keys // 2
        bias = counts - self.log_q[items] if self.config.logq else counts
        logits = self._logits(u, vectors, bias)                    # [B, C]
        rows = torch.arange(len(u), device=logits.device)
        target = offset + row_column
        logits[rows, target] -= counts[target]
        hit = items[None, :] == (row_keys // 2)[:, None]
        hit[rows, target] = False
        return F.cross_entropy(logits.masked_fill_(hit, -torch.inf).float(), target)

    def _logits(self, u: torch.Tensor, z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """scorer(u, z) + bias[None, :], [B, M]. Dot and cosine scorers scale the B x d and M x d
        factors and add the bias inside the matmul: every extra elementwise pass over B x M
        logits costs as much as the product itself on a CPU."""
        if getattr(self.scorer, "supports_index", False):
            return torch.addmm(bias[None, :], self.scorer.query(u), self.scorer.prepare(z).T)
        return self.scorer(u, z) + bias[None, :]

    def _user_batch_loss(self, batch: dict) -> torch.Tensor:
        """"users" sampling: every held-out item of every user in the batch is a positive.
        full_softmax scores the whole catalogue; sampled_softmax the batch's distinct targets plus
        the extra negatives, with logQ (expected count of a candidate) and other targets of the
        same user removed from each softmax."""
        c = self.config
        u = self.user_vectors(batch["user_idx"], batch["history"])            # [B, d]
        rows, targets = batch["target_rows"], batch["target_items"]           # [T], [T]
        kl = self._kl_term(len(rows))
        if c.loss == "full_softmax":
            logits = self.scorer(u, self.item_vectors(self.trained_items))    # [B, M]
            cols = torch.searchsorted(self.trained_items, targets)
            # one log-softmax per user, read at each of their targets
            return _plus(-F.log_softmax(logits.float(), dim=-1)[rows, cols].mean(), kl)
        cands, cols = torch.unique(targets, return_inverse=True)
        if "negatives" in batch:
            cands = torch.cat([cands, batch["negatives"]])
        bias = -self.log_q[cands] if c.logq else torch.zeros(len(cands), device=u.device)
        logits = self._logits(u, self.item_vectors(cands), bias)[rows]       # [T, C]
        # a user's other targets are positives too, not negatives of this row
        own = torch.zeros(len(u), len(cands), dtype=torch.bool, device=logits.device)
        own[rows, cols] = True
        other = own[rows]
        other[torch.arange(len(rows), device=logits.device), cols] = False
        return _plus(F.cross_entropy(logits.masked_fill(other, -torch.inf).float(), cols), kl)
