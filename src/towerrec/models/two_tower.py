"""Two-tower retrieval model: a user tower, an item tower and a scoring function f(y, z).

The towers concatenate their inputs (id embeddings, feature encoders, a frozen sentence-transformers
text embedding projected by a trainable layer, or a small text CNN, and on the user side a pooled
history of past items) and map them through an MLP (Covington et al., "Deep Neural Networks for
YouTube Recommendations", RecSys 2016; Yi et al., RecSys 2019 for the sampled softmax with logQ
correction). Three presets:

- `cf`: ids only on both sides (neural matrix factorisation). Cannot score new users or items.
- `content`: the item tower sees only item features and text, the user tower user features and
  the content of the items in the user's history, so it recommends items no one interacted with
  and serves new users from a history.
- `hybrid`: ids, features and text on both sides, with id dropout so that items without a trained
  id (cold items, `add_items`) still embed well from their content.

Leak guard: training samples are (user, item) pairs, and the item is removed from its own user's
history in that sample (otherwise the model learns to find the target in the history).

Cold start: `recommend(history=[...])` / `_score_histories` embed a user from an item history
(user features missing, user id unknown); `recommend_features(frame)` embeds new users from a
feature frame (plus optional histories); `add_items(frame)` embeds new items from their features
without retraining.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from towerrec.data.features import FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError
from towerrec.models.base import Capabilities, FitOptions, Recommendations, Recommender
from towerrec.models.losses import LOSSES, bce, bpr, candidate_log_q, distinct_candidates, full_softmax, sampled_softmax
from towerrec.models.train import TrainConfig, train
from towerrec.data.sequences import Sequences
from towerrec.ranking import check_finite, mask_rows, rank
from towerrec.towers.features import FeatureRows, IdEmbedding, TableEncoder, TableSpec, encode_frame, table_arrays
from towerrec.towers.history import HistoryPooling, history_batch
from towerrec.towers.mlp import MLP
from towerrec.towers.scorers import make_scorer
from towerrec.towers.text import CNNTextEncoder, PretrainedTextEncoder, build_vocab, embed_texts, tokenize
from towerrec.towers.tower import Tower


@dataclass(frozen=True)
class TwoTowerConfig:
    """Every field is a plain value so TOML can override it (`dataclasses.replace`)."""

    preset: str = "hybrid"            # a label; `TwoTowerConfig.for_preset(name)` applies a preset
    # what each tower sees
    user_ids: bool = True
    user_features: bool = True
    history: str = "mean"             # "none" | "mean" | "attention": pooled past items, user side
    history_ids: bool = True          # history items embedded by id ...
    history_features: bool = True     # ... and/or by their features and text (needed for cold items)
    item_ids: bool = True
    item_features: bool = True
    text: str = "pretrained"          # "none" | "pretrained" (frozen sentence model) | "cnn"
    text_model: str = ""              # "" = bundled all-MiniLM-L6-v2; any sentence-transformers path/name
    text_columns: tuple[str, ...] = ()  # () = the text columns; listed categorical/multi add their labels
    # sizes
    embedding_dim: int = 64           # output of both towers
    id_dim: int = 64
    feature_dim: int = 16             # per categorical / bag / numeric encoder
    text_dim: int = 64
    hidden: tuple[int, ...] = (256,)  # MLP widths on top of each tower; () = one linear layer
    activation: str = "gelu"
    dropout: float = 0.3              # in the tower MLPs; ml-100k valid NDCG@10 0.2329 -> 0.2341 with (256,)
    norm: str = "none"
    bag_mode: str = "mean"
    numeric_buckets: int = 0
    hash_buckets: int = 0             # > 0: hash user and item ids into this many rows
    # regularisation
    id_dropout: float = 0.2           # per sample, replace an id by "unknown" (cold-start robustness)
    history_dropout: float = 0.0      # per history entry, during training
    max_history: int = 0              # > 0: subsample longer training histories to about this length
    # scoring and loss
    scorer: str = "cosine"            # "cosine" | "dot" | "mlp" (mlp: no ANN index possible)
    temperature: float = 0.1          # ml-100k valid NDCG@10: 0.05 -> 0.2282, 0.1 -> 0.2329
    learn_temperature: bool = False
    loss: str = "sampled_softmax"     # "sampled_softmax" | "full_softmax" | "bpr" | "bce"
    logq: bool = True                 # logQ correction of the sampled softmax
    negatives: int = 0                # extra negatives per batch (shared by its rows)
    negative_sampler: str = "uniform"  # "uniform" | "popularity"
    # training
    # "pairs": one sample per (user, item) row, the user's other items as history (the row's item
    # left out). "users": one sample per user, a random `holdout` share of the user's items are
    # the targets and the rest the history (Mult-DAE style): each history is pooled once per user
    # instead of once per row, so an epoch costs O(interactions), not O(sum of squared history
    # lengths); needs a history encoder and a softmax loss.
    sampling: str = "pairs"
    holdout: float = 0.2
    users_per_batch: int = 128        # "users" sampling: users per step
    epochs: int = 30
    batch_size: int = 1024
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 3
    steps_per_epoch: int = 0          # > 0: batches per "epoch" (a fresh permutation each time)

    @classmethod
    def for_preset(cls, name: str = "hybrid", **overrides: object) -> "TwoTowerConfig":
        """The preset `name` ("cf", "content", "hybrid") with `overrides` on top."""
        if name not in PRESETS:
            raise TowerrecError(f"unknown two-tower preset {name!r}; choose one of {', '.join(PRESETS)}")
        return dataclasses.replace(cls(), preset=name, **{**PRESETS[name], **overrides})


# Defaults tuned on the ml-100k random split's VALID part (benchmarks/two_tower.py).
PRESETS: dict[str, dict] = {
    # cf: one linear layer over each id embedding (matrix factorisation) and no id dropout (an id-only
    # model has nothing to fall back on): valid NDCG@10 0.2241, best epoch 10, against 0.2209 at epoch
    # 19 with the shared MLP (256,) and id dropout 0.2
    "cf": dict(user_ids=True, user_features=False, history="none", item_ids=True, item_features=False,
               text="none", hidden=(), id_dropout=0.0),
    "content": dict(user_ids=False, user_features=True, history="mean", history_ids=False,
                    history_features=True, item_ids=False, item_features=True, text="pretrained"),
    "hybrid": dict(user_ids=True, user_features=True, history="mean", history_ids=True, history_features=True,
                   item_ids=True, item_features=True, text="pretrained", id_dropout=0.2),
}


def _text_dim(item_arrays: dict | None) -> int:
    return int(item_arrays["text"].shape[1]) if item_arrays and "text" in item_arrays else 0


def preset_factory(name: str):
    """A `MODELS` entry: factory(**overrides) -> TwoTower with preset `name`."""
    def make(**overrides: object) -> "TwoTower":
        return TwoTower(TwoTowerConfig.for_preset(name, **overrides))
    make.__name__ = f"two_tower_{name}"
    return make


class TwoTowerModule(nn.Module):
    """The math on index tensors.

    Buffers: `user_code` [n_users] / `item_code` [n_items] id codes (0 = no trained id), the
    feature rows of both sides (`FeatureRows`, row = index + 1, row 0 blank), `trained_items`.
    user_vectors(...) -> [B, d]; item_vectors(item_idx [M]) -> [M, d]; compute_loss(batch) -> [].
    """

    def __init__(self, config: TwoTowerConfig, *, n_user_ids: int, n_item_ids: int, user_code: np.ndarray,
                 item_code: np.ndarray, user_spec: TableSpec, item_spec: TableSpec,
                 user_arrays: dict[str, np.ndarray] | None, item_arrays: dict[str, np.ndarray] | None,
                 text_in_dim: int = 0, cnn_vocab_size: int = 0) -> None:
        super().__init__()
        c = self.config = config
        d = c.embedding_dim
        self.register_buffer("user_code", torch.as_tensor(user_code, dtype=torch.int64))
        self.register_buffer("item_code", torch.as_tensor(item_code, dtype=torch.int64))
        self.register_buffer("trained_items", torch.as_tensor(np.flatnonzero(item_code > 0), dtype=torch.int64))
        self.register_buffer("log_q", torch.zeros(len(item_code)), persistent=False)
        self.user_rows = FeatureRows(user_arrays) if user_arrays is not None else None
        self.item_rows = FeatureRows(item_arrays) if item_arrays is not None else None

        def text_module() -> nn.Module | None:
            if c.text == "pretrained" and text_in_dim:
                return PretrainedTextEncoder(text_in_dim, c.text_dim)
            if c.text == "cnn" and cnn_vocab_size:
                return CNNTextEncoder(cnn_vocab_size, c.text_dim)
            return None

        def item_inputs(ids: bool, features: bool) -> dict[str, nn.Module]:
            out: dict[str, nn.Module] = {}
            if ids:
                out["id"] = IdEmbedding(n_item_ids, c.id_dim, c.hash_buckets)
            text = text_module() if features else None
            if self.item_rows is not None and (text is not None or (features and item_spec.columns)):
                out["features"] = TableEncoder(item_spec if features else TableSpec(), c.feature_dim,
                                               bag_mode=c.bag_mode, numeric_buckets=c.numeric_buckets, text=text)
            return out

        def dims(inputs: dict[str, nn.Module]) -> int:
            return sum(getattr(m, "out_dim", getattr(m, "dim", d)) for m in inputs.values())

        # item tower
        inputs = item_inputs(c.item_ids, c.item_features)
        if not inputs:
            raise TowerrecError("the item tower has no input: enable item_ids, or give item_features/text")
        self.item_tower = Tower(inputs, self._mlp(dims(inputs), c.hidden))
        # history items (a separate "input" embedding of items, as in FISM / word2vec)
        self.history_tower = None
        if c.history != "none":
            h_inputs = item_inputs(c.history_ids, c.history_features)
            if not h_inputs:
                raise TowerrecError("the history encoder has no input: enable history_ids or history_features")
            self.history_tower = Tower(h_inputs, self._mlp(dims(h_inputs), ()))
            self.pool = HistoryPooling(d, c.history)
        # user tower
        u_inputs: dict[str, nn.Module] = {}
        if c.user_ids:
            u_inputs["id"] = IdEmbedding(n_user_ids, c.id_dim, c.hash_buckets)
        if c.user_features and self.user_rows is not None and user_spec.columns:
            u_inputs["features"] = TableEncoder(user_spec, c.feature_dim, bag_mode=c.bag_mode,
                                                numeric_buckets=c.numeric_buckets)
        if self.history_tower is not None:
            u_inputs["history"] = nn.Identity()
        if not u_inputs:
            raise TowerrecError("the user tower has no input: enable user_ids, user_features or history")
        self.user_tower = Tower(u_inputs, self._mlp(dims(u_inputs), c.hidden))
        self.scorer = make_scorer(c.scorer, d, temperature=c.temperature, learnable=c.learn_temperature)

    def _mlp(self, in_dim: int, hidden: tuple[int, ...]) -> MLP:
        c = self.config
        return MLP(in_dim, hidden, c.embedding_dim, activation=c.activation, dropout=c.dropout, norm=c.norm)

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
        """[M] item indices -> [M, d]; id_dropped [M] bool: embed those without their id (default:
        id dropout drawn here, in training)."""
        return self.item_tower(self._item_input(self.item_tower, item_idx, id_dropped))

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
            reps = self.history_tower(self._item_input(self.history_tower, history["items"]))
            if "row_user" in history:   # training rows sharing users (`_make_batch`)
                x["history"] = self.pool.mean_leaving_out(reps, history["inverse"], history["offsets"],
                                                          history["row_user"], history["left_out"])
            else:
                x["history"] = self.pool(reps, history["inverse"], history["offsets"], history["weights"])
        return tower(x)

    def compute_loss(self, batch: dict) -> torch.Tensor:
        if "target_rows" in batch:
            return self._user_batch_loss(batch)
        c = self.config
        u = self.user_vectors(batch["user_idx"], batch.get("history"))
        pos = batch["item_idx"]
        if c.loss == "full_softmax":
            z = self.item_vectors(self.trained_items)
            target = torch.searchsorted(self.trained_items, pos)
            return full_softmax(self.scorer(u, z), target)
        cands = torch.cat([pos, batch["negatives"]]) if "negatives" in batch else pos
        if c.loss == "sampled_softmax":
            return self._distinct_sampled_softmax(u, pos, cands)
        logits = self.scorer(u, self.item_vectors(cands))                  # [B, C]
        b = len(pos)
        positive = logits[:, :b].diagonal()
        if "negatives" in batch:
            negative = logits[:, b:]
        else:  # the previous row's item as the negative
            negative = logits[:, :b].gather(1, ((torch.arange(b, device=logits.device) - 1) % b)[:, None])
        return bpr(positive, negative) if c.loss == "bpr" else bce(positive, negative)

    def _distinct_sampled_softmax(self, u: torch.Tensor, pos: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        """The in-batch sampled softmax, each distinct candidate embedded and scored once.

        A candidate is an (item, id dropped) pair: id dropout is drawn per occurrence, as if every
        row's item went through the tower on its own, and the same item in the other form is an
        accidental hit for that row (out of its softmax), like its other copies. Equal in value and
        gradient to scoring all B + extra candidates (tests/models/test_two_tower.py)."""
        dropped = torch.zeros(len(cands), dtype=torch.bool, device=cands.device)
        if self.training and self.config.id_dropout > 0 and "id" in self.item_tower.inputs:
            dropped = torch.rand(len(cands), device=cands.device) < self.config.id_dropout
        keys = cands * 2 + dropped
        distinct, column, log_count = distinct_candidates(keys)
        items = distinct // 2
        bias = log_count - self.log_q[items] if self.config.logq else log_count
        logits = self._logits(u, self.item_vectors(items, id_dropped=distinct % 2 == 1), bias)   # [B, U]
        twin = keys[:len(pos)] ^ 1                                # the row's item in the other form
        at = torch.searchsorted(distinct, twin).clamp_max(len(distinct) - 1)
        accidental = torch.where(distinct[at] == twin, at, -1)
        return sampled_softmax(logits, column[:len(pos)], log_count, accidental)

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
        if c.loss == "full_softmax":
            logits = self.scorer(u, self.item_vectors(self.trained_items))    # [B, M]
            cols = torch.searchsorted(self.trained_items, targets)
            return F.cross_entropy(logits[rows].float(), cols)
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
        return F.cross_entropy(logits.masked_fill(other, -torch.inf).float(), cols)


class TwoTower(Recommender):
    """Two-tower retrieval (user tower, item tower, f(y, z)) with cf / content / hybrid presets.

    >>> model = TwoTower(TwoTowerConfig.for_preset("hybrid", epochs=5))
    >>> model.fit(split.train, user_features=users, item_features=items, valid=split.valid)
    >>> model.recommend(["196"], k=10).to_frame()
    >>> model.recommend(history=["242", "302"], k=10)       # a new user from a history
    """

    name = "two-tower"
    Config = TwoTowerConfig

    @property
    def capabilities(self) -> Capabilities:
        """cf: ids only. content / hybrid: new users from a history (the history encoder), cold
        items from their features and text; user features once fitted with a user table."""
        c = self.config
        content = c.item_features or c.text != "none"
        user_features = hasattr(self, "module_") and "features" in self.module_.user_tower.inputs
        return Capabilities(histories=c.history != "none", user_features=user_features, cold_items=content,
                            similar_items=True, vectors="ip" if c.scorer in ("dot", "cosine") else None,
                            add_items=content)

    # ---- training ---------------------------------------------------------------------------
    def _fit(self, interactions: Interactions, *, user_features: FeatureTable | None,
             item_features: FeatureTable | None, valid: Interactions | None, options: FitOptions) -> None:
        c = self.config
        if c.loss not in LOSSES:
            raise TowerrecError(f"loss must be one of {LOSSES}, got {c.loss!r}")
        if c.sampling not in ("pairs", "users"):
            raise TowerrecError(f"sampling must be 'pairs' or 'users', got {c.sampling!r}")
        if c.sampling == "users" and (c.history == "none" or c.loss not in ("full_softmax", "sampled_softmax")
                                      or not 0.0 < c.holdout < 1.0):
            raise TowerrecError("sampling='users' needs a history encoder (history 'mean' or 'attention'), "
                                f"a softmax loss and 0 < holdout < 1 (got history={c.history!r}, loss={c.loss!r}, "
                                f"holdout={c.holdout})")
        for table, id_map, side in ((user_features, interactions.user_map, "user"),
                                    (item_features, interactions.item_map, "item")):
            if table is not None and table.id_map != id_map:
                raise TowerrecError(f"{side}_features must be aligned to the interactions' {side} map "
                                    f"(build it with FeatureTable.from_frame(frame, interactions.{side}_map, ...))")
        n_users, n_items = interactions.n_users, interactions.n_items
        user_counts, item_counts = interactions.user_counts(), interactions.item_counts()
        user_code = np.where(user_counts > 0, np.arange(1, n_users + 1), 0)
        item_code = np.where(item_counts > 0, np.arange(1, n_items + 1), 0)
        self.user_spec_ = TableSpec.from_table(user_features, "user_id")
        self.item_spec_ = TableSpec.from_table(item_features, "item_id")
        user_arrays = table_arrays(user_features, self.user_spec_, n_users) if user_features is not None else None
        item_arrays, self.text_ = self._item_arrays(item_features, n_items)
        torch.manual_seed(options.seed)
        self.module_ = self._build(n_users, n_items, user_code, item_code, user_arrays, item_arrays)
        item_prob = item_counts / max(item_counts.sum(), 1)
        self.module_.log_q.copy_(torch.from_numpy(candidate_log_q(item_prob, c.batch_size, c.negatives,
                                                                  c.negative_sampler)))
        # training samples are the rows of `interactions` ((user, item) pairs) or the active users
        self._train_u, self._train_i = interactions.user_idx.astype(np.int64), interactions.item_idx.astype(np.int64)
        self._trained = np.flatnonzero(item_counts)
        by_user = c.sampling == "users"
        self._active_users = np.flatnonzero(user_counts)
        result = train(self.module_, n_samples=len(self._active_users) if by_user else len(interactions),
                       make_batch=self._make_user_batch if by_user else self._make_batch,
                       config=TrainConfig(epochs=c.epochs, batch_size=c.users_per_batch if by_user else c.batch_size,
                                          learning_rate=c.learning_rate, weight_decay=c.weight_decay,
                                          patience=c.patience, steps_per_epoch=c.steps_per_epoch),
                       options=options, valid=valid, valid_scorer=self._valid_scorer, exclude_rows=self.seen_,
                       desc=f"{self.name}[{c.preset}]")
        del self._train_u, self._train_i, self._active_users
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.seconds_to_best_ = result.seconds_to_best
        self.module_.cpu().eval()
        self._refresh_embeddings()

    def _build(self, n_users: int, n_items: int, user_code: np.ndarray, item_code: np.ndarray,
               user_arrays: dict | None, item_arrays: dict | None) -> TwoTowerModule:
        text = self.text_
        return TwoTowerModule(self.config, n_user_ids=n_users, n_item_ids=n_items, user_code=user_code,
                              item_code=item_code, user_spec=self.user_spec_, item_spec=self.item_spec_,
                              user_arrays=user_arrays, item_arrays=item_arrays,
                              text_in_dim=_text_dim(item_arrays),
                              cnn_vocab_size=len(text.get("vocab", [])))

    def _item_arrays(self, table: FeatureTable | None, n_items: int) -> tuple[dict | None, dict]:
        """Item feature rows plus text embeddings (pretrained) or tokens (cnn); and the text spec."""
        c = self.config
        if table is None:
            return None, {}
        arrays = table_arrays(table, self.item_spec_, n_items)
        names = list(c.text_columns) or [col.name for col in table.of_kind("text")]
        missing = [n for n in names if n not in table.columns]
        if missing:
            raise TowerrecError(f"text_columns {missing} are not item feature columns ({list(table.columns)})")
        text: dict = {}
        if c.text != "none" and names:
            text = {"columns": [[n, table.columns[n].kind] for n in names], "explicit": bool(c.text_columns),
                    "kind": c.text, "model": c.text_model}
            texts = table.text(names if c.text_columns else None)
            self._add_text(arrays, texts, text, fit=True)
        return arrays, text

    @staticmethod
    def _add_text(arrays: dict, texts: np.ndarray, text: dict, *, fit: bool) -> None:
        if text["kind"] == "pretrained":
            emb = embed_texts(list(texts), text["model"])
            arrays["text"] = np.vstack([np.zeros((1, emb.shape[1]), np.float32), emb])
        else:
            if fit:
                text["vocab"] = build_vocab(texts)
            tok = tokenize(texts, text["vocab"])
            arrays["tokens"] = np.vstack([np.zeros((1, tok.shape[1]), np.int64), tok])

    def _history(self, seen: sp.csr_matrix, rows: np.ndarray, **kw: object) -> dict[str, torch.Tensor]:
        h = history_batch(seen.indptr, seen.indices, rows, n_items=seen.shape[1], **kw)
        return {k: torch.from_numpy(v) for k, v in h.items()}

    def _make_batch(self, idx: np.ndarray, rng: np.random.Generator) -> dict:
        c = self.config
        u, i = self._train_u[idx], self._train_i[idx]
        batch: dict = {"user_idx": torch.from_numpy(u), "item_idx": torch.from_numpy(i)}
        if c.history == "mean" and c.history_dropout == 0 and c.max_history == 0:
            # each distinct user's history pooled once, the row's own item subtracted (exact)
            users, row_user = np.unique(u, return_inverse=True)
            h = self._history(self.seen_, users)
            h["row_user"] = torch.from_numpy(row_user.astype(np.int64))
            h["left_out"] = torch.searchsorted(h["items"], torch.from_numpy(i))   # items are sorted
            batch["history"] = h
        elif c.history != "none":
            keep = None
            if c.history_dropout > 0 or c.max_history > 0:
                keep = np.full(len(u), 1.0 - c.history_dropout)
                if c.max_history > 0:
                    lens = np.diff(self.seen_.indptr)[u]
                    keep = keep * np.minimum(1.0, c.max_history / np.maximum(lens, 1))
            batch["history"] = self._history(self.seen_, u, exclude=i, keep_prob=keep, rng=rng)
        if c.negatives > 0 and c.loss != "full_softmax":
            if c.negative_sampler == "popularity":   # a random training pair's item ~ popularity
                neg = self._train_i[rng.integers(0, len(self._train_i), c.negatives)]
            else:                                   # uniform over items seen in training
                neg = self._trained[rng.integers(0, len(self._trained), c.negatives)]
            batch["negatives"] = torch.from_numpy(neg)
        return batch

    def _make_user_batch(self, idx: np.ndarray, rng: np.random.Generator) -> dict:
        """"users" sampling: each user's items split at random into history and held-out targets."""
        c = self.config
        u = self._active_users[idx]
        h = history_batch(self.seen_.indptr, self.seen_.indices, u, n_items=self.seen_.shape[1],
                          keep_prob=1.0 - c.holdout, rng=rng)
        held = h["weights"] == 0
        lens = np.diff(np.append(h["offsets"], len(h["inverse"])))
        rows = np.repeat(np.arange(len(u)), lens)[held]
        batch: dict = {"user_idx": torch.from_numpy(u), "history": {k: torch.from_numpy(v) for k, v in h.items()},
                       "target_rows": torch.from_numpy(rows), "target_items": torch.from_numpy(h["items"][h["inverse"][held]])}
        if c.negatives > 0 and c.loss != "full_softmax":
            neg = (self._train_i[rng.integers(0, len(self._train_i), c.negatives)] if c.negative_sampler == "popularity"
                   else self._trained[rng.integers(0, len(self._trained), c.negatives)])
            batch["negatives"] = torch.from_numpy(neg)
        return batch

    # ---- embeddings -------------------------------------------------------------------------
    @torch.no_grad()
    def _item_vectors(self, batch_size: int = 8192) -> torch.Tensor:
        m = self.module_
        device = m.item_code.device
        n = len(m.item_code)
        out = [m.item_vectors(torch.arange(s, min(s + batch_size, n), device=device)) for s in range(0, n, batch_size)]
        return m.scorer.prepare(torch.cat(out)) if out else torch.zeros(0, self.config.embedding_dim)

    @torch.no_grad()
    def _user_vectors(self, user_idx: np.ndarray, seen: sp.csr_matrix | None, seen_rows: np.ndarray | None = None,
                      features: dict | None = None, batch_size: int = 1024) -> torch.Tensor:
        """User vectors [len(user_idx), d]; histories are rows `seen_rows` of `seen`."""
        m = self.module_
        device = m.item_code.device
        user_idx = np.asarray(user_idx, dtype=np.int64)
        rows = user_idx if seen_rows is None else seen_rows
        out = []
        for s in range(0, len(user_idx), batch_size):
            sl = slice(s, s + batch_size)
            hist = None
            if self.config.history != "none":
                hist = {k: v.to(device) for k, v in self._history(seen, rows[sl]).items()}
            feats = None
            if features is not None:
                feats = FeatureRows(features).to(device).take(torch.arange(1, len(user_idx) + 1, device=device)[sl])
            out.append(m.user_vectors(torch.from_numpy(user_idx[sl]).to(device), hist, feats))
        return torch.cat(out) if out else torch.zeros(0, self.config.embedding_dim)

    def _valid_scorer(self):
        items = self._item_vectors()

        def score(user_idx: np.ndarray) -> torch.Tensor:
            return self.module_.scorer(self._user_vectors(user_idx, self.seen_), items)
        return score

    def _refresh_embeddings(self) -> None:
        self.item_embeddings_ = self._item_vectors()
        self.user_embeddings_ = self._user_vectors(np.arange(len(self.user_map_)), self.seen_)

    # ---- scoring ----------------------------------------------------------------------------
    @torch.no_grad()
    def _score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        return self.module_.scorer(self.user_embeddings_[torch.from_numpy(user_idx)], self.item_embeddings_)

    # ---- vectors (serving from an index): query(u) @ item_vectors().T == the model's scores ------
    def user_vectors(self, user_idx: np.ndarray) -> torch.Tensor:
        self._check_fitted()
        return self.module_.scorer.query(self.user_embeddings_[torch.from_numpy(np.asarray(user_idx, np.int64))])

    def history_vectors(self, histories: Sequences) -> torch.Tensor:
        self._check_fitted()
        return self.module_.scorer.query(self._history_users(histories.to_csr(self.n_items)))

    def item_vectors(self) -> torch.Tensor:
        self._check_fitted()
        return self.item_embeddings_

    def _history_users(self, seen: sp.csr_matrix) -> torch.Tensor:
        """User vectors [n, d] from item histories alone (no user id, no user features)."""
        if self.config.history == "none":
            raise NotImplementedError(f"{self.name}[{self.config.preset}] has no history encoder: it cannot "
                                      "score users it was not trained on (use the content or hybrid preset)")
        seen = sp.csr_matrix(seen)
        return self._user_vectors(np.full(seen.shape[0], -1), seen, np.arange(seen.shape[0]))

    @torch.no_grad()
    def _score_histories(self, histories: Sequences) -> torch.Tensor:
        """New users from their item histories: no user id, no user features, the pooled history
        only. The id-only `cf` preset cannot do this."""
        y = self._history_users(histories.to_csr(self.n_items))
        return self.module_.scorer(y, self.item_embeddings_)

    def _feature_users(self, frame: pd.DataFrame,
                       histories: Sequence[Sequence[str]] | None) -> tuple[np.ndarray, sp.csr_matrix, torch.Tensor]:
        """(ids, histories as CSR rows, user vectors [n, d]) of new users given by a feature frame."""
        self._check_fitted()
        if not self.capabilities.user_features:
            raise NotImplementedError(f"{self.name}[{self.config.preset}] does not use user features")
        id_col = self.user_spec_.id_col
        if id_col not in frame.columns:   # ids as the index (a one-row request frame)
            frame = frame.assign(**{id_col: frame.index.astype(str)}).reset_index(drop=True)
        known = {c["name"] for c in self.user_spec_.columns}
        unknown = sorted(set(frame.columns) - known - {id_col})
        if unknown:
            raise TowerrecError(f"unknown user feature(s) {unknown}; this model uses {sorted(known)}")
        for c in self.user_spec_.columns:
            if c["kind"] == "numeric" and c["name"] in frame.columns:
                raw = frame[c["name"]]
                bad = raw.notna() & pd.to_numeric(raw, errors="coerce").isna()
                if bad.any():
                    raise TowerrecError(f"user feature {c['name']!r} is numeric; got {raw[bad].tolist()[:3]}")
        ids = frame[id_col].astype(str).to_numpy(dtype=object)
        try:
            table = encode_frame(frame, self.user_spec_, IdMap(ids, name="user"))
        except (ValueError, TypeError, KeyError) as exc:
            raise TowerrecError(f"user features: {exc}") from None
        arrays = table_arrays(table, self.user_spec_, len(ids))
        rows = [self.item_map_.index(h) for h in histories] if histories is not None else [[] for _ in ids]
        if len(rows) != len(ids):
            raise TowerrecError("user features: give one history per frame row")
        seen = sp.csr_matrix((np.ones(sum(map(len, rows)), np.float32),
                              np.concatenate([np.asarray(r, np.int64) for r in rows] + [np.zeros(0, np.int64)]),
                              np.cumsum([0] + [len(r) for r in rows])), shape=(len(ids), self.n_items))
        y = self._user_vectors(np.full(len(ids), -1), seen, np.arange(len(ids)), features=arrays)
        return ids, seen, y

    def user_feature_columns(self) -> list[dict]:
        return [{"name": c["name"], "kind": c["kind"]} for c in self.user_spec_.columns] \
            if self.capabilities.user_features else []

    @torch.no_grad()
    def feature_vectors(self, frame: pd.DataFrame, histories: Sequence[Sequence[str]] | None = None) -> torch.Tensor:
        """Query vectors [n, d] of new users from their features (and histories, item ids), for the index."""
        return self.module_.scorer.query(self._feature_users(frame, histories)[2])

    @torch.no_grad()
    def recommend_features(self, frame: pd.DataFrame, k: int = 10, *, histories: Sequence[Sequence[str]] | None = None,
                           exclude_seen: bool = True) -> Recommendations:
        """Top-k for new users described by a feature frame (one row per user, `user_id` column,
        the columns of the training user features; unknown categories count as missing) and, if
        given, one item history per row. The user id is a label only: no id embedding is used."""
        ids, seen, y = self._feature_users(frame, histories)
        scores = self.module_.scorer(y, self.item_embeddings_).float()
        check_finite(scores, f"model {self.name!r}")
        if exclude_seen:
            mask_rows(scores, seen, np.arange(len(ids)))
        top = rank(scores, min(k, self.n_items), self.ties_, who=None)
        return Recommendations.from_top(ids, top, self.item_map_, fallback=["features"] * len(ids))

    def _item_scores(self, item_idx: np.ndarray) -> torch.Tensor:
        """Cosine of the item-tower vectors."""
        z = torch.nn.functional.normalize(self.item_embeddings_, dim=-1)
        return z[torch.from_numpy(item_idx)] @ z.T

    def add_items(self, frame: pd.DataFrame) -> "TwoTower":
        """Embed new catalogue items from their features and text, without retraining.

        `frame` has an `item_id` column and the item feature columns used at fit time. Limits:
        the new items have no trained id embedding (like cold items: hybrid models rely on their
        content, id-only models cannot do this); categories unseen at fit time count as missing;
        pretrained text needs sentence-transformers unless the texts are in the cache; history
        vectors of users do not change (a user's past cannot contain a new item).
        """
        self._check_fitted()
        m = self.module_
        if m.item_rows is None or "features" not in m.item_tower.inputs:
            raise NotImplementedError(f"{self.name}[{self.config.preset}] has an id-only item tower: "
                                      "it cannot embed items from features")
        ids = frame[self.item_spec_.id_col].astype(str).to_numpy(dtype=object)
        known = self.item_map_.get_index(ids) >= 0
        if known.any():
            raise TowerrecError(f"add_items: already in the catalogue: {list(ids[known][:5])}")
        new_map = IdMap(ids, name="item")
        arrays = table_arrays(encode_frame(frame, self.item_spec_, new_map), self.item_spec_, len(ids))
        if self.text_:
            names = [n for n, _ in self.text_["columns"]]
            cols = frame.reindex(columns=[self.item_spec_.id_col, *names]).astype(object)
            vocab = {c["name"]: c["vocab"] for c in self.item_spec_.columns}
            tmp = FeatureTable.from_frame(cols, new_map, id_col=self.item_spec_.id_col,
                                          kinds=dict(self.text_["columns"]),
                                          vocabs={n: vocab[n] for n, kd in self.text_["columns"] if n in vocab})
            self._add_text(arrays, tmp.text(names if self.text_["explicit"] else None), self.text_, fit=False)
        n_old = self.n_items
        m.item_rows.extend(arrays)
        m.item_code = torch.cat([m.item_code, torch.zeros(len(ids), dtype=torch.int64)])
        m.log_q = torch.cat([m.log_q, torch.zeros(len(ids))])
        self.item_map_ = self.item_map_.extend(ids)
        self.seen_ = sp.csr_matrix((self.seen_.data, self.seen_.indices, self.seen_.indptr),
                                   shape=(self.seen_.shape[0], n_old + len(ids)))
        self.item_popularity_ = np.concatenate([self.item_popularity_, np.zeros(len(ids), np.float32)])
        with torch.no_grad():
            new = m.scorer.prepare(m.item_vectors(torch.arange(n_old, n_old + len(ids))))
        self.item_embeddings_ = torch.cat([self.item_embeddings_, new])
        self.ties_ = self.ties_.extended(self.n_items)
        return self

    # ---- artifacts --------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        out = {f"module.{k}": v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        out["user_embeddings"] = self.user_embeddings_.numpy()
        out["item_embeddings"] = self.item_embeddings_.numpy()
        return out

    def _extra(self) -> dict:
        m = self.module_
        n_item_ids = next((t.inputs["id"].embedding.num_embeddings - 1 for t in (m.item_tower, m.history_tower)
                           if t is not None and "id" in t.inputs), 0)
        return {"user_spec": self.user_spec_.to_json(), "item_spec": self.item_spec_.to_json(), "text": self.text_,
                "n_item_ids": n_item_ids, "history": self.history_, "best_epoch": self.best_epoch_}

    def _load_state(self, tensors: dict[str, np.ndarray], extra: dict) -> None:
        self.user_spec_ = TableSpec.from_json(extra["user_spec"])
        self.item_spec_ = TableSpec.from_json(extra["item_spec"])
        self.text_ = extra.get("text") or {}
        self.history_, self.best_epoch_ = extra.get("history", []), extra.get("best_epoch", -1)

        def rows(prefix: str) -> dict | None:
            found = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            return found or None

        user_code, item_code = tensors["module.user_code"], tensors["module.item_code"]
        item_arrays = rows("module.item_rows.")
        self.module_ = TwoTowerModule(
            self.config, n_user_ids=len(user_code) if not self.config.hash_buckets else 0,
            n_item_ids=int(extra.get("n_item_ids") or len(item_code)), user_code=user_code, item_code=item_code,
            user_spec=self.user_spec_, item_spec=self.item_spec_, user_arrays=rows("module.user_rows."),
            item_arrays=item_arrays,
            text_in_dim=_text_dim(item_arrays),
            cnn_vocab_size=len(self.text_.get("vocab", [])))
        state = {k[len("module."):]: torch.from_numpy(np.array(v))
                 for k, v in tensors.items() if k.startswith("module.")}
        self.module_.load_state_dict(state)
        self.module_.eval()
        self.user_embeddings_ = torch.from_numpy(np.array(tensors["user_embeddings"]))
        self.item_embeddings_ = torch.from_numpy(np.array(tensors["item_embeddings"]))
