"""The two-tower model's lifecycle: fit (through the shared training loop), embeddings, the scoring
protocol of `towerrec.models.base`, new users from features, new items from content, artifacts."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.data.sequences import Sequences
from towerrec.data.stream_log import StreamLog
from towerrec.distributed import world_size
from towerrec.errors import TowerrecError
from towerrec.models.base import Capabilities, FitOptions, Recommendations, Recommender
from towerrec.models.train import TrainResult, train
from towerrec.models.two_tower.batches import PairBatches, StreamBatches, UserBatches, histories
from towerrec.models.two_tower.config import PRESETS, TwoTowerConfig
from towerrec.models.two_tower.module import TwoTowerModule
from towerrec.ranking import check_finite, mask_rows, rank
from towerrec.towers.content import ContentSpec, item_content, new_item_arrays
from towerrec.towers.features import (
    FeatureRows,
    TableSpec,
    encode_new_rows,
    table_arrays,
)
from towerrec.towers.graph import normalized_adjacency


class TwoTower(Recommender):
    """Two-tower retrieval (user tower, item tower, f(y, z)) with cf / content / hybrid presets.

    >>> model = TwoTower(TwoTowerConfig.for_preset("hybrid", epochs=5))
    >>> model.fit(split.train, user_features=users, item_features=items, valid=split.valid)
    >>> model.recommend(["196"], k=10).to_frame()
    >>> model.recommend(history=["242", "302"], k=10)       # a new user from a history
    """

    name = "two-tower"
    Config = TwoTowerConfig

    def __init__(self, config: TwoTowerConfig | None = None, **overrides: object) -> None:
        """`TwoTower(preset="cf", epochs=5)` starts from a preset (`cf`, `content`, `hybrid`, the
        default); other overrides go on top."""
        preset = overrides.pop("preset", None)
        if preset is not None:
            if config is not None:
                raise TowerrecError("TwoTower: give a preset or a config, not both")
            config = TwoTowerConfig.for_preset(str(preset))
        super().__init__(config, **overrides)

    def _reference_config(self) -> TwoTowerConfig:
        return TwoTowerConfig.for_preset(self.config.preset) if self.config.preset in PRESETS else TwoTowerConfig()

    @property
    def capabilities(self) -> Capabilities:
        """cf: ids only. content / hybrid: new users from a history (the history encoder), cold
        items from their features and text; user features once fitted with a user table."""
        c = self.config
        user_features = hasattr(self, "module_") and "features" in self.module_.user_tower.inputs
        return Capabilities(histories=c.history != "none", user_features=user_features, cold_items=c.content,
                            similar_items=True, vectors="ip" if c.scorer in ("dot", "cosine") else None,
                            add_items=c.content)

    # ---- training ---------------------------------------------------------------------------
    def _fit(self, interactions: Interactions, *, user_features: FeatureTable | None,
             item_features: FeatureTable | None, valid: Interactions | None, options: FitOptions) -> None:
        c = self.config
        c.validate()
        for table, id_map, side in ((user_features, interactions.user_map, "user"),
                                    (item_features, interactions.item_map, "item")):
            if table is not None and table.id_map != id_map:
                raise TowerrecError(f"{side}_features must be aligned to the interactions' {side} map "
                                    f"(build it with FeatureTable.from_frame(frame, interactions.{side}_map, ...))")
        self._setup(interactions.user_counts(), interactions.item_counts(), user_features, item_features, options)
        by_user = c.sampling == "users"
        batches = (UserBatches if by_user else PairBatches)(interactions, self.seen_, c)
        result = train(self.module_, n_samples=batches.n_samples, make_batch=batches,
                       config=dataclasses.replace(c.train, batch_size=c.users_per_batch) if by_user else c.train,
                       options=options, valid=valid, valid_scorer=self._valid_scorer, exclude_rows=self.seen_,
                       desc=f"{self.name}[{c.preset}]")
        self._finish(result)

    def stream_refusal(self) -> str | None:
        """Streaming reads (user, item) rows in shards; a history encoder needs every user's whole
        item history at every step, which a stream does not hold."""
        c = self.config
        if c.history != "none" or c.sampling != "pairs":
            return (f"{self.name}[{c.preset}] pools each user's item history (history={c.history!r}), and a stream "
                    f"holds no per-user histories: use preset cf (or history='none'), or load the log into memory")
        if c.id_encoder == "lightgcn":
            return (f"{self.name}[{c.preset}] propagates over the whole user-item graph, which a stream never "
                    "holds: use preset cf, or load the log into memory")
        return None

    def _fit_stream(self, log: StreamLog, *, options: FitOptions) -> None:
        c = self.config
        c.validate()
        self._setup(log.user_counts, log.item_counts, None, None, options)
        self.stream_summary_ = log.summary()
        result = train(self.module_, make_batch=StreamBatches(log.item_counts, c), config=c.train, options=options,
                       valid=log.holdout.valid if len(log.holdout.valid) else None, valid_scorer=self._valid_scorer,
                       exclude_rows=log.holdout.train_seen, desc=f"{self.name}[{c.preset}] stream", stream=log)
        self._finish(result)

    def _setup(self, user_counts: np.ndarray, item_counts: np.ndarray, user_features: FeatureTable | None,
               item_features: FeatureTable | None, options: FitOptions) -> None:
        """Feature arrays, item content, the module, and the logQ of the in-batch sampled softmax."""
        c = self.config
        if c.negative_memory > 0 and world_size() > 1:
            raise TowerrecError(f"{self.name}[{c.preset}]: negative_memory is not supported under torchrun (the "
                                "cross-rank softmax already adds every rank's candidates); set negative_memory = 0")
        n_users, n_items = len(user_counts), len(item_counts)
        self.user_spec_ = TableSpec.from_table(user_features, "user_id")
        user_arrays = table_arrays(user_features, self.user_spec_, n_users) if user_features is not None else None
        self.content_, item_arrays = item_content(item_features, n_items, text=c.text, text_model=c.text_model,
                                                  text_columns=c.text_columns, owner=f"{self.name}[{c.preset}]")
        torch.manual_seed(options.seed)
        adjacency = normalized_adjacency(self.seen_) if c.id_encoder == "lightgcn" else None
        self.module_ = self._build(np.where(user_counts > 0, np.arange(1, n_users + 1), 0),
                                   np.where(item_counts > 0, np.arange(1, n_items + 1), 0),
                                   user_arrays, item_arrays, n_user_ids=n_users, n_item_ids=n_items,
                                   graph_adjacency=adjacency)
        self.module_.set_log_q(item_counts)

    def _finish(self, result: TrainResult) -> None:
        self.history_, self.best_epoch_, self.seconds_to_best_ = result.history, result.best_epoch, result.seconds_to_best
        self.module_.cpu().eval()
        self._refresh_embeddings()
        if self.module_.graph is not None:   # a fitted model keeps the propagated table, not the graph
            self.module_.graph.adjacency = None

    def _update(self, delta, *, old_seen, items, users, options: FitOptions) -> None:
        """Grow the towers for new ids (new ids start from their content; `two_tower/update.py`),
        fine-tune on the new rows plus a replay sample of the old log, re-embed everything."""
        from towerrec.models.two_tower import update

        self.config.update.validate()
        update.grow(self, delta, items, users)
        result = update.fine_tune(self, delta, old_seen, options)
        self.update_history_ = result.history if result is not None else []
        self._refresh_embeddings()
        if self.module_.graph is not None:   # as after fit: the propagated table stays, the graph goes
            self.module_.graph.adjacency = None

    def _build(self, user_code: np.ndarray, item_code: np.ndarray, user_arrays: dict | None, item_arrays: dict | None,
               *, n_user_ids: int, n_item_ids: int, graph_adjacency: torch.Tensor | None = None) -> TwoTowerModule:
        return TwoTowerModule(self.config, n_user_ids=n_user_ids, n_item_ids=n_item_ids, user_code=user_code,
                              item_code=item_code, user_spec=self.user_spec_, item_spec=self.content_.table,
                              user_arrays=user_arrays, item_arrays=item_arrays,
                              text_in_dim=int(item_arrays["text"].shape[1]) if item_arrays and "text" in item_arrays else 0,
                              cnn_vocab_size=len(self.content_.text.get("vocab", [])), graph_adjacency=graph_adjacency)

    # ---- embeddings -------------------------------------------------------------------------
    @torch.no_grad()
    def _item_vectors(self, batch_size: int = 8192) -> torch.Tensor:
        m = self.module_
        device, n = m.item_code.device, len(m.item_code)
        with m.shared_graph():
            out = [m.item_vectors(torch.arange(s, min(s + batch_size, n), device=device))
                   for s in range(0, n, batch_size)]
        return m.scorer.prepare(torch.cat(out)) if out else torch.zeros(0, self._vector_dim())

    @torch.no_grad()
    def _user_vectors(self, user_idx: np.ndarray, seen: sp.csr_matrix | None, seen_rows: np.ndarray | None = None,
                      features: dict | None = None, batch_size: int = 1024) -> torch.Tensor:
        """User vectors [len(user_idx), d] (user index -1: no id); histories are rows `seen_rows` of `seen`."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        rows = user_idx if seen_rows is None else seen_rows
        with self.module_.shared_graph():
            return self._user_vector_batches(user_idx, seen, rows, features, batch_size)

    def _user_vector_batches(self, user_idx: np.ndarray, seen: sp.csr_matrix | None, rows: np.ndarray,
                             features: dict | None, batch_size: int) -> torch.Tensor:
        m = self.module_
        device = m.item_code.device
        out = []
        for s in range(0, len(user_idx), batch_size):
            sl = slice(s, s + batch_size)
            hist = None
            if self.config.history != "none":
                hist = {k: v.to(device) for k, v in histories(seen, rows[sl]).items()}
            feats = None
            if features is not None:
                feats = FeatureRows(features).to(device).take(torch.arange(1, len(user_idx) + 1, device=device)[sl])
            out.append(m.user_vectors(torch.from_numpy(user_idx[sl]).to(device), hist, feats))
        return torch.cat(out) if out else torch.zeros(0, self._vector_dim())

    def _vector_dim(self) -> int:
        """Width of the user and item vectors: the embedding, plus the item offset's column."""
        return self.config.embedding_dim + int(self.config.item_bias)

    def _valid_scorer(self):
        items = self._item_vectors()
        return lambda user_idx: self.module_.scorer(self._user_vectors(user_idx, self.seen_), items)

    def _refresh_embeddings(self) -> None:
        self.item_embeddings_ = self._item_vectors()
        self.user_embeddings_ = self._user_vectors(np.arange(len(self.user_map_)), self.seen_)

    def _history_users(self, histories: Sequences) -> torch.Tensor:
        """User vectors [n, d] from item histories alone (no user id, no user features)."""
        seen = histories.to_csr(self.n_items)
        return self._user_vectors(np.full(seen.shape[0], -1), seen, np.arange(seen.shape[0]))

    # ---- the scoring protocol ------------------------------------------------------------------
    @torch.no_grad()
    def _score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        return self.module_.scorer(self.user_embeddings_[torch.from_numpy(user_idx)], self.item_embeddings_)

    @torch.no_grad()
    def _score_histories(self, histories: Sequences) -> torch.Tensor:
        """New users from their item histories: the pooled history only (not the id-only `cf`)."""
        return self.module_.scorer(self._history_users(histories), self.item_embeddings_)

    def _item_scores(self, item_idx: np.ndarray) -> torch.Tensor:
        """Cosine of the item-tower vectors."""
        z = torch.nn.functional.normalize(self.item_embeddings_, dim=-1)
        return z[torch.from_numpy(item_idx)] @ z.T

    # query(u) @ item_vectors().T == the model's scores (dot and cosine scorers): servable by an index
    def user_vectors(self, user_idx: np.ndarray) -> torch.Tensor:
        self._check_fitted()
        return self.module_.scorer.query(self.user_embeddings_[torch.from_numpy(np.asarray(user_idx, np.int64))])

    def history_vectors(self, histories: Sequences) -> torch.Tensor:
        self._check_fitted()
        return self.module_.scorer.query(self._history_users(histories))

    def item_vectors(self) -> torch.Tensor:
        self._check_fitted()
        return self.item_embeddings_

    def n_parameters(self) -> int:
        self._check_fitted()
        return int(sum(p.numel() for p in self.module_.parameters()))

    def item_space(self) -> torch.Tensor:
        """The item tower's vectors (for any scorer, an MLP's included)."""
        self._check_fitted()
        return self.item_embeddings_

    # ---- explanations (towerrec.explain; the work is in two_tower/explain.py) -------------------
    def score_history_variants(self, user_idx: int, variants: Sequences, item_idx: np.ndarray) -> torch.Tensor:
        """The user's id and feature row kept, the history replaced by each row of `variants`."""
        from towerrec.models.two_tower.explain import history_scores

        return history_scores(self, user_idx, variants, item_idx)

    def history_effects(self, user_idx: int, history: Sequences, item_idx: np.ndarray) -> np.ndarray:
        from towerrec.models.two_tower.explain import history_effects

        return history_effects(self, user_idx, history, item_idx)

    def feature_effects(self, user_idx: int, history: Sequences, item_idx: np.ndarray) -> list[list]:
        from towerrec.models.two_tower.explain import feature_effects

        return feature_effects(self, user_idx, history, item_idx)

    def explanation_method(self) -> str:
        if self.config.history == "none":
            return "none from the history: the id-only user tower does not read it (see nearest and features)"
        return "leave one out: the score minus the score without that history item (id and features kept)"

    # ---- new users from features, new items from content ---------------------------------------
    def user_feature_columns(self) -> list[dict]:
        return [{"name": c["name"], "kind": c["kind"]} for c in self.user_spec_.columns] \
            if self.capabilities.user_features else []

    def _feature_users(self, frame: pd.DataFrame,
                       histories: Sequence[Sequence[str]] | None) -> tuple[np.ndarray, sp.csr_matrix, torch.Tensor]:
        """(ids, histories as CSR rows, user vectors [n, d]) of new users given by a feature frame
        (an id column, or the ids as the index)."""
        self._check_fitted()
        if not self.capabilities.user_features:
            raise NotImplementedError(f"{self.name}[{self.config.preset}] does not use user features")
        ids, arrays = encode_new_rows(frame, self.user_spec_, "user")
        rows = [self.item_map_.index(h) for h in histories] if histories is not None else [[] for _ in ids]
        if len(rows) != len(ids):
            raise TowerrecError("user features: give one history per frame row")
        seen = Sequences.from_lists(rows).to_csr(self.n_items)
        return ids, seen, self._user_vectors(np.full(len(ids), -1), seen, np.arange(len(ids)), features=arrays)

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

    def snapshot(self) -> "TwoTower":
        """A copy whose module is its own (`add_items` extends the module's buffers)."""
        import copy

        out = copy.copy(self)
        out.module_ = copy.deepcopy(self.module_)
        return out

    def add_items(self, frame: pd.DataFrame) -> "TwoTower":
        """Embed new catalogue items from their features and text, without retraining.

        `frame` has an `item_id` column and the item feature columns used at fit time. The new items
        have no trained id embedding (like cold items: hybrid models rely on their content, id-only
        models cannot do this); unseen categories count as missing; users' history vectors do not
        change (a user's past cannot contain a new item).
        """
        self._check_fitted()
        m = self.module_
        if m.item_rows is None or "features" not in m.item_tower.inputs:
            raise NotImplementedError(f"{self.name}[{self.config.preset}] has an id-only item tower: "
                                      "it cannot embed items from features")
        ids = frame[self.content_.table.id_col].astype(str).to_numpy(dtype=object)
        known = self.item_map_.get_index(ids) >= 0
        if known.any():
            raise TowerrecError(f"add_items: already in the catalogue: {list(ids[known][:5])}")
        n_old = self.n_items
        m.item_rows.extend(new_item_arrays(frame, self.content_, ids))
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
        self.retired_ = np.concatenate([self._retired(), np.zeros(len(ids), dtype=bool)])
        self._record("add_items", new_items=len(ids))
        return self

    # ---- artifacts --------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        out = {f"module.{k}": v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        out["user_embeddings"] = self.user_embeddings_.numpy()
        out["item_embeddings"] = self.item_embeddings_.numpy()
        return out

    def _extra(self) -> dict:
        m = self.module_
        n_item_ids = m.graph.n_items if m.graph is not None else next(
            (t.inputs["id"].embedding.num_embeddings - 1 for t in (m.item_tower, m.history_tower)
             if t is not None and "id" in t.inputs), 0)
        return {"user_spec": self.user_spec_.to_json(), "item_spec": self.content_.table.to_json(),
                "text": self.content_.text, "n_item_ids": n_item_ids, "history": self.history_,
                "best_epoch": self.best_epoch_}

    def _load_state(self, tensors: dict[str, np.ndarray], extra: dict) -> None:
        self.user_spec_ = TableSpec.from_json(extra["user_spec"])
        self.content_ = ContentSpec(TableSpec.from_json(extra["item_spec"]), extra.get("text") or {})
        self.history_, self.best_epoch_ = extra.get("history", []), extra.get("best_epoch", -1)

        def rows(prefix: str) -> dict | None:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)} or None

        user_code, item_code = tensors["module.user_code"], tensors["module.item_code"]
        self.module_ = self._build(user_code, item_code, rows("module.user_rows."), rows("module.item_rows."),
                                   n_user_ids=len(user_code) if not self.config.hash_buckets else 0,
                                   n_item_ids=int(extra.get("n_item_ids") or len(item_code)))
        self.module_.load_state_dict({k[len("module."):]: torch.from_numpy(np.array(v))
                                      for k, v in tensors.items() if k.startswith("module.")})
        self.module_.eval()
        self.user_embeddings_ = torch.from_numpy(np.array(tensors["user_embeddings"]))
        self.item_embeddings_ = torch.from_numpy(np.array(tensors["item_embeddings"]))


def preset_factory(name: str):
    """A `MODELS` entry: factory(**overrides) -> TwoTower with preset `name`."""
    def make(**overrides: object) -> TwoTower:
        return TwoTower(TwoTowerConfig.for_preset(name, **overrides))
    make.__name__ = f"two_tower_{name}"
    return make
