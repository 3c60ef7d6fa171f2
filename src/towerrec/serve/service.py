"""What the REST app does, without HTTP: a loaded model + catalogue + retrieval index answering queries.

Models that declare `capabilities.vectors == "ip"` (ALS, dot/cosine two-tower models) are served
through `towerrec.index` (exact or FAISS): their query vectors' inner products with their item
vectors are their scores, so the exact index reproduces the model's own ranking. Every other model
(EASE, ItemKNN, popularity, MLP scorers, sequence models) is served by its own
`Recommender.recommend`, so offline evaluation and serving share one code path. Everything here
goes through the model's declared protocol (`towerrec.models.base`): no attribute probing.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from towerrec.artifact import read_dataset_info, read_meta, resolve_artifact
from towerrec.data.sequences import Sequences
from towerrec.errors import TowerrecError, UnknownIdError
from towerrec.index import ExactIndex, FaissConfig, FaissIndex, build_index, recall_at_k
from towerrec.models.base import Recommender
from towerrec.ranking import TopK, pad, rank_row
from towerrec.recommendations import Recommendations
from towerrec.serve.catalogue import Catalogue

#: queries used to measure ANN recall@10 against exact search at start-up
RECALL_QUERIES = 200
#: known users' query vectors are computed once at start-up up to this many floats (256 MiB)
USER_CACHE_FLOATS = 64 * 2**20


@dataclass(frozen=True)
class Embeddings:
    """A model's retrieval view: item vectors, and how to embed a known user or an item history."""

    items: np.ndarray                                     # [n_items, d]
    users: Callable[[np.ndarray], np.ndarray]             # user_idx -> [n, d]
    histories: Callable[[Sequences], np.ndarray] | None
    metric: str = "ip"
    features: Callable[..., np.ndarray] | None = None     # ((frame, histories)) -> [n, d]


def _numpy(fn: Callable) -> Callable:
    return lambda *args: np.ascontiguousarray(torch.as_tensor(fn(*args)).detach().cpu().float().numpy())


def embeddings_of(model: Recommender) -> Embeddings | None:
    """The model's vectors when it declares `capabilities.vectors`, else None (served by `recommend`)."""
    caps = model.capabilities
    if caps.vectors != "ip":
        return None
    return Embeddings(items=_numpy(model.item_vectors)(), users=_numpy(model.user_vectors),
                      histories=_numpy(model.history_vectors) if caps.histories else None,
                      features=_numpy(model.feature_vectors) if caps.user_features else None)


@dataclass(frozen=True)
class Query:
    """One recommendation request in index space (ids already checked)."""

    user_id: str | None
    history: Sequence[str] | None
    k: int
    exclude_seen: bool = True
    exclude_items: Sequence[str] = ()
    filters: dict | None = None
    user_features: dict | None = None
    rerank: dict | None = None          # towerrec.rerank.RerankConfig fields


class RecommenderService:
    """Loads nothing itself: give it a fitted model and a catalogue (see `from_artifact`)."""

    def __init__(self, model: Recommender, catalogue: Catalogue, *, index_kind: str = "auto",
                 faiss_config: FaissConfig | None = None, artifact: str | None = None,
                 meta: dict | None = None, recall_queries: int = RECALL_QUERIES,
                 _derived: "RecommenderService | None" = None, _index: ExactIndex | FaissIndex | None = None) -> None:
        # meta: {"towerrec": version that saved the model, "dataset": checked dataset info or None}
        # _derived/_index: `with_items` / `without_items` build a service from another one and a
        # ready index (copy-on-write), reusing what the change does not touch
        self.model = model
        self.catalogue = catalogue
        self.artifact = artifact
        self.meta = meta or {}
        self.index_kind, self.faiss_config = index_kind, faiss_config
        self.embeddings = embeddings_of(model)
        self.index: ExactIndex | FaissIndex | None = None
        self.exact: ExactIndex | None = None
        self.recall_at_10: float | None = None
        self._user_queries: np.ndarray | None = None
        retired = model._retired()
        self.active: np.ndarray | None = ~retired if retired.any() else None   # retired items never listed
        if _derived is not None:
            self._user_queries, self.recall_at_10 = _derived._user_queries, _derived.recall_at_10
            self.index = _index
            self.exact = _index.exact if isinstance(_index, FaissIndex) else _index
        elif self.embeddings is not None:
            n_users = len(model.user_map_)
            if n_users * self.embeddings.items.shape[1] <= USER_CACHE_FLOATS:
                # one row lookup per request instead of a pass through the user tower's last steps
                self._user_queries = self.embeddings.users(np.arange(n_users, dtype=np.int64))
            self.index = build_index(self.embeddings.items, self.embeddings.metric, index_kind, faiss_config,
                                     ties=model.ties_)
            self.exact = self.index.exact if isinstance(self.index, FaissIndex) else self.index
            if isinstance(self.index, FaissIndex):
                self.recall_at_10 = recall_at_k(self.index, self.exact, self.sample_queries(recall_queries), k=10)
            else:
                self.recall_at_10 = 1.0
        elif index_kind == "faiss":
            raise TowerrecError(f"--index faiss needs a model with embeddings; {model.name} is served by its own "
                                "exact scoring (see towerrec.serve.service for the embedding protocol)")
        # one id per request: a dict lookup is ~100x cheaper than building a pandas Index for it
        self._user_pos = {u: i for i, u in enumerate(model.user_map_.ids.tolist())}
        self._item_pos = {v: i for i, v in enumerate(model.item_map_.ids.tolist())}
        self.started = time.time()

    @classmethod
    def from_artifact(cls, path: str | Path, *, index_kind: str = "auto", items_file: str | None = None,
                      faiss_config: FaissConfig | None = None) -> "RecommenderService":
        """Load the model, catalogue and dataset info of an artifact folder (every file checked); a
        model store (`towerrec.artifact.publish`) loads its LATEST version."""
        from datetime import datetime, timezone

        from towerrec.models import load_model

        given, path = Path(path), resolve_artifact(path)
        model = load_model(str(path))
        catalogue = Catalogue.from_artifact(path, model.item_map_, model.item_popularity_, items_file)
        meta = {"towerrec": read_meta(path).get("towerrec"), "dataset": read_dataset_info(path),
                "artifact_version": path.name if path != given else None,
                "loaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        return cls(model, catalogue, index_kind=index_kind, faiss_config=faiss_config, artifact=str(path), meta=meta)

    # ---- queries -----------------------------------------------------------------------------
    def sample_queries(self, n: int, seed: int = 0) -> np.ndarray:
        """Embeddings of up to n training users (seeded sample): the traffic ANN recall is measured on."""
        assert self.embeddings is not None
        n_users = len(self.model.user_map_)
        rng = np.random.default_rng(seed)
        users = np.sort(rng.choice(n_users, min(n, n_users), replace=False)) if n_users else np.array([], np.int64)
        return self.embeddings.users(users.astype(np.int64))

    def recommend(self, q: Query) -> Recommendations:
        """Top-k for a known user, else from `history`, else popularity; `.fallback` says which. With
        `q.rerank`, the top `candidates` re-ranked (`towerrec.rerank`)."""
        if q.rerank is None:
            return self._retrieve(q, q.k)
        reranker = self.reranker(q.rerank)
        recs = self._retrieve(q, min(max(q.k, reranker.config.candidates), self.model.n_items))
        idx, scores = reranker.rerank(recs.item_idx, recs.scores, q.k, self._known_row(q))
        return Recommendations(recs.user_ids, idx, scores, recs.item_map, recs.fallback)

    def reranker(self, fields: dict):
        """The re-ranker of these settings (built once per distinct setting, bound to this catalogue)."""
        from towerrec.rerank import RerankConfig, Reranker, categories_from_values

        config = RerankConfig(**fields).validate()
        cache = self.__dict__.setdefault("_rerankers", {})
        key = (config, id(self.model), self.model.n_items)      # a reloaded or grown model gets new ones
        if key not in cache:
            if len(cache) >= 64:
                cache.clear()
            column = next((c for c in self.catalogue.attributes if c.lower() in ("genres", "genre", "categories",
                                                                                  "category")), None)
            categories = categories_from_values(self.catalogue.attributes[column]) if column else None
            counts = np.bincount(self.model.seen_.indices, minlength=self.model.n_items)
            cache[key] = Reranker(config, item_counts=counts, categories=categories, model_space=self.item_space())
        return cache[key]

    def item_space(self):
        """The model's `towerrec.beyond.ItemSpace` (None without one), built once: its norms read every
        item vector. Rebuilt for another model object or a grown catalogue (an in-place change of the
        vectors of the same size is not seen: clear `_space` then)."""
        from towerrec.explain import item_space_of

        key = (id(self.model), self.model.n_items)
        cached = self.__dict__.get("_space")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_space"] = (key, item_space_of(self.model))
        return cached[1]

    def _known_row(self, q: Query) -> sp.csr_matrix:
        """[1, n_items] the user's training items and request history (the calibration profile)."""
        items = [self.item_indices(list(q.history or []))]
        user_idx = self._user_pos.get(q.user_id, -1) if q.user_id is not None else -1
        if user_idx >= 0:
            items.append(self.model.seen_items(user_idx))
        return _csr_rows([np.unique(np.concatenate(items))], self.model.n_items)

    def explain(self, q: Query, recs: Recommendations, k: int = 3) -> list:
        """`towerrec.explain.Explanation` of each listed item (padding left out): a known user through
        the model's own history of them, a new user through the request's `history`."""
        from towerrec.explain import Explanation, explain_indices

        listed = recs.item_idx[0] >= 0
        items, scores = recs.item_idx[0][listed], recs.scores[0][listed].astype(np.float64)
        user_idx = self._user_pos.get(q.user_id, -1) if q.user_id is not None else -1
        if user_idx >= 0 and bool(self.model.known_users(np.array([user_idx]))[0]):
            history = self.model.history_of(user_idx)
        else:
            user_idx = -1
            history = Sequences.from_lists([self.item_indices(list(q.history or []))])
        if recs.fallback[0] == "popularity" or (user_idx < 0 and history.tokens.size == 0):
            ids = self.model.item_map_.ids
            method = ("popularity fallback: the most popular items (the model knows nothing about this user)"
                      if recs.fallback[0] == "popularity" else
                      "scored from the request's user features: there is no history to explain it by")
            return [Explanation(q.user_id, str(ids[i]), float(s), method) for i, s in zip(items, scores)]
        return explain_indices(self.model, user_idx, history, items, k=k, user_id=q.user_id, scores=scores,
                               space=self.item_space())

    def _retrieve(self, q: Query, k: int) -> Recommendations:
        """`recommend` without re-ranking, `k` items."""
        model, caps = self.model, self.model.capabilities
        history = list(q.history or [])
        hist_idx = self.item_indices(history)
        # unknown excluded items cannot be recommended anyway
        excl = np.fromiter((self._item_pos[i] for i in q.exclude_items if i in self._item_pos), dtype=np.int64)
        allowed = self.allowed(q.filters)
        user_idx = self._user_pos.get(q.user_id, -1) if q.user_id is not None else -1
        uid = np.array([q.user_id if q.user_id is not None else "<history>"], dtype=object)
        if q.exclude_seen:
            excl = np.union1d(excl, hist_idx)
        known = user_idx >= 0 and bool(model.known_users(np.array([user_idx]))[0])
        if not known and q.user_features and caps.user_features:
            kind: str | None = "features"
        elif not known and len(hist_idx) and caps.histories:
            kind = "history"
        elif not known:
            kind = "popularity"
        else:
            kind = None
        if kind == "popularity":
            return self._popularity(uid, k, excl, allowed)
        if self.embeddings is None:
            return self._by_model(uid, user_idx, history, q, excl, allowed, kind, k)
        if kind is None:
            query = (self._user_queries[user_idx:user_idx + 1] if self._user_queries is not None
                     else self.embeddings.users(np.array([user_idx], dtype=np.int64)))
            if q.exclude_seen:
                excl = np.union1d(excl, model.seen_items(user_idx))
        elif kind == "features":
            query = self.embeddings.features(_feature_frame(q.user_features, uid[0]),
                                             [history] if history else None)
        else:
            query = self.embeddings.histories(Sequences.from_lists([hist_idx]))
        exclude = _csr_rows([excl], model.n_items) if len(excl) else None
        idx, scores = self.index.search(query, min(k, model.n_items), exclude=exclude, allowed=allowed)
        return Recommendations(uid, idx, scores, model.item_map_, [kind])

    def _by_model(self, uid: np.ndarray, user_idx: int, history: list[str], q: Query, excl: np.ndarray,
                  allowed: np.ndarray | None, kind: str | None, k: int) -> Recommendations:
        """Models without vectors: their own `recommend`, with filters as extra exclusions."""
        if allowed is not None:
            excl = np.union1d(excl, np.flatnonzero(~allowed))
        ids = self.model.item_map_.ids[excl].tolist() if len(excl) else None
        if kind is None:
            recs = self.model.recommend([q.user_id], k=k, exclude_seen=q.exclude_seen, exclude_items=ids)
            return Recommendations(uid, recs.item_idx, recs.scores, recs.item_map, [None])
        recs = self.model.recommend(history=history, k=k, exclude_seen=q.exclude_seen, exclude_items=ids)
        return Recommendations(uid, recs.item_idx, recs.scores, recs.item_map, recs.fallback)

    def _popularity(self, uid: np.ndarray, k: int, excl: np.ndarray, allowed: np.ndarray | None) -> Recommendations:
        scores = self.model.popularity_scores(1)[0].numpy().copy()
        if len(excl):
            scores[excl] = -np.inf
        if allowed is not None:
            scores[~allowed] = -np.inf
        idx, vals, tied = rank_row(scores, min(k, self.model.n_items), self.model.ties_)
        keep = np.isfinite(vals)
        top = TopK(np.where(keep, idx, -1)[None, :], np.where(keep, vals, np.nan).astype(np.float32)[None, :],
                   np.array([tied]))
        return Recommendations.from_top(uid, pad(top, k), self.model.item_map_, fallback=["popularity"])

    def similar(self, item_id: str, k: int) -> Recommendations:
        """Items most similar to `item_id`: the model's own `similar_items`, else its item vectors."""
        idx = self.item_indices([item_id])
        if self.model.capabilities.similar_items or self.embeddings is None:
            return self.model.similar_items([item_id], k=k)
        query = self.embeddings.items[idx]
        exclude = _csr_rows([idx], self.model.n_items)
        top, scores = self.index.search(query, min(k, self.model.n_items), exclude=exclude, allowed=self.active)
        return Recommendations(np.array([item_id], dtype=object), top, scores, self.model.item_map_, [None])

    def allowed(self, filters: dict | None) -> np.ndarray | None:
        """bool [n_items]: items passing `filters` and not retired (None: all of them)."""
        mask = self.catalogue.mask(filters)
        if self.active is None:
            return mask
        return self.active if mask is None else mask & self.active

    def is_retired(self, item_idx: int) -> bool:
        return self.active is not None and not bool(self.active[item_idx])

    # ---- a catalogue that changes (copy-on-write: the result is a new service) ---------------
    def with_items(self, frame: "pd.DataFrame") -> "RecommenderService":  # noqa: F821
        """A new service whose model and index also hold the items of `frame` (an `item_id` column
        plus the item features/text the model was fitted with), embedded from their content; this
        one is left as it is. Models that cannot embed items raise NotImplementedError."""
        if not self.model.capabilities.add_items:
            raise NotImplementedError(f"{self.model.name} cannot embed new items from their features: "
                                      "publish an updated artifact instead (towerrec update)")
        model = self.model.snapshot().add_items(frame)
        catalogue = self.catalogue.extended(model.item_map_, model.item_popularity_, frame)
        index = None
        if self.index is not None:
            index = self.index.with_items(embeddings_of(model).items, model.ties_)
        return self._derive(model, catalogue, index)

    def without_items(self, item_ids: Sequence[str]) -> "RecommenderService":
        """A new service in which `item_ids` are retired (never listed again); this one is left as it is."""
        idx = self.item_indices(list(item_ids))
        model = self.model.snapshot().retire_items(list(item_ids))
        index = self.index.without(idx) if self.index is not None else None
        return self._derive(model, self.catalogue, index)

    def _derive(self, model: Recommender, catalogue: Catalogue, index) -> "RecommenderService":
        return RecommenderService(model, catalogue, index_kind=self.index_kind, faiss_config=self.faiss_config,
                                  artifact=self.artifact, meta=self.meta, _derived=self, _index=index)

    def index_of(self, item_id: str) -> int | None:
        """The index of one item id, None when unknown."""
        return self._item_pos.get(item_id)

    def item_indices(self, item_ids: Sequence[str]) -> np.ndarray:
        """Indices of `item_ids`; UnknownIdError names the unknown ones (the API turns it into a 4xx)."""
        idx = np.fromiter((self._item_pos.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))
        if (idx < 0).any():
            bad = [i for i, j in zip(item_ids, idx) if j < 0][:5]
            raise UnknownIdError(f"unknown item(s): {', '.join(map(str, bad))}")
        return idx

    # ---- description -------------------------------------------------------------------------
    def info(self) -> dict:
        """What `/info` shows (`schemas.Info`): built from the loaded model and index, so only
        checked values reach a client (the dataset info was validated by `towerrec.artifact`)."""
        import dataclasses
        import json

        from towerrec import __version__

        model = self.model
        index = self.index.describe() if self.index is not None else {
            "kind": "model", "note": f"{model.name} has no embeddings: exact scores from the model itself"}
        # tuples -> lists, nested configs (train) -> objects: plain JSON, as model.json holds it
        config = (json.loads(json.dumps(dataclasses.asdict(model.config), default=str))
                  if dataclasses.is_dataclass(model.config) else {})
        return {
            "model": model.name, "config": config,
            "artifact": Path(self.artifact).name if self.artifact else None,   # not the server's own path
            "artifact_towerrec_version": self.meta.get("towerrec"), "towerrec_version": __version__,
            "data": {"users": len(model.user_map_), "items": model.n_items, "interactions": model.n_interactions,
                     "dataset": self.meta.get("dataset")},
            "catalogue": {"items": len(self.catalogue), "titles": self.catalogue.titles is not None,
                          "attributes": self.catalogue.attribute_names},
            "supports_history": model.capabilities.histories,
            "index": {**index, "recall_at_10_vs_exact": self.recall_at_10},
            "uptime_seconds": round(time.time() - self.started, 1),
            "version": self.version_info(),
        }

    def version_info(self) -> dict:
        """The model's version and lineage (`towerrec.lineage`), what the catalogue lost and gained here."""
        lineage = self.model.lineage_ if getattr(self.model, "lineage_", None) else []
        return {"model_version": self.model.version, "artifact_version": self.meta.get("artifact_version"),
                "loaded_at": self.meta.get("loaded_at"), "supports_add_items": self.model.capabilities.add_items,
                "retired_items": int((~self.active).sum()) if self.active is not None else 0,
                "lineage": lineage[-5:]}


def set_threads(n: int) -> None:
    """torch and faiss threads of this process (serving: 1, requests run concurrently instead)."""
    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass


def _feature_frame(features: dict, user_id: str) -> "pd.DataFrame":  # noqa: F821
    """One new user's request features as the one-row frame `feature_vectors` reads, indexed by
    the user id (a list value is a multi-valued attribute, stored `|`-separated as in the training CSV)."""
    import pandas as pd

    row = {k: ("|".join(v) if isinstance(v, list) else v) for k, v in features.items()}
    return pd.DataFrame([row], index=pd.Index([user_id], name="user_id"))


def _csr_rows(rows: list[np.ndarray], n_cols: int) -> sp.csr_matrix:
    """CSR [len(rows), n_cols] of ones at each row's column indices."""
    cols = np.concatenate(rows).astype(np.int64) if rows else np.array([], np.int64)
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    return sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr), shape=(len(rows), n_cols))


__all__ = ["Embeddings", "Query", "RecommenderService", "embeddings_of", "set_threads"]
