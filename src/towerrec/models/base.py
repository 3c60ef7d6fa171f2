"""The contract every towerrec recommender follows (checked by tests/models/contract.py).

Public methods take the user's own ids. Below them is a small index-level protocol that serving,
evaluation and the experiment runner use, and nothing else:

- `capabilities`: what the fitted model can do beyond scoring its training users (`Capabilities`);
- `score_users(user_idx)` -> [b, n_items] for users seen in training;
- `score_histories(histories)` -> [b, n_items] for users given only an item history
  (`towerrec.data.sequences.Sequences`, oldest item first), when `capabilities.histories`;
- `item_similarities(item_idx)` -> [b, n_items], when `capabilities.similar_items`;
- `user_vectors` / `history_vectors` / `feature_vectors` / `item_vectors`, when
  `capabilities.vectors == "ip"`: query vectors whose inner product with the item vectors is the
  model's score, so an exact or ANN index reproduces its ranking;
- `rank_users(user_idx, k, ...)`: the batched top-k every list comes from.

Subclasses implement `_fit`, `_score_users`, optionally `_score_histories` / `_item_scores` /
the vector methods, `_state`/`_load_state` for artifacts, and `_update` for `update` (continual
learning: new rows, new ids; see `towerrec.data.delta` for how ids are admitted).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from towerrec import lineage
from towerrec.artifact import load_recommender, save_recommender
from towerrec.config import apply_overrides, config_diff
from towerrec.data.delta import Delta, admit
from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.data.sequences import Sequences
from towerrec.errors import NotFittedError, TowerrecError
from towerrec.ranking import TieOrder, check_finite, rank, rank_batches
from towerrec.recommendations import Recommendations
from towerrec.splits import Split

if TYPE_CHECKING:
    from towerrec.data.stream import StreamOptions
    from towerrec.data.stream_log import StreamLog

__all__ = ["Capabilities", "FitOptions", "Recommendations", "Recommender"]


@dataclass(frozen=True)
class FitOptions:
    """Settings that are not hyperparameters: they never change what a model means."""

    seed: int = 0
    device: str = "auto"          # "auto" picks cuda when present
    progress: bool | None = None  # None: a bar only on a terminal
    threads: int | None = None    # torch intra-op threads; None keeps torch's default (logging: towerrec.progress)
    # early stopping ranks the valid users as the reported metric will: training items masked
    # (towerrec's default), or nothing masked (RecBole's sequential protocol, `--no-exclude-seen`)
    exclude_seen: bool = True
    # under torchrun: seconds before a collective that some rank never joins fails (torch's default
    # is 30 minutes; tests use seconds, so a hang fails the test instead of stalling it)
    dist_timeout: float = 1800.0

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass(frozen=True)
class Capabilities:
    """What a model can do besides ranking the catalogue for its training users.

    Serving, evaluation and the experiment runner decide everything from this; the contract
    suite checks that every declared capability works.
    """

    histories: bool = False       # score a user from an item history alone (new users, cold-user splits)
    sequences: bool = False       # ... reading the history's order (next-item models)
    user_features: bool = False   # score users from their feature row (new users, users without interactions)
    cold_items: bool = False      # score items that had no training interactions (from their content)
    similar_items: bool = False   # item-item similarities
    vectors: str | None = None    # "ip": user/history/feature/item vectors reproduce the scores by inner product
    add_items: bool = False       # add catalogue items from features without refitting


class Recommender:
    """Base class: config in, `fit` returns self, batch `recommend` over the full catalogue."""

    name: ClassVar[str] = "base"
    Config: ClassVar[type] = object

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        base = config if config is not None else self.Config()
        self.config = apply_overrides(base, overrides, source=type(self).__name__)

    def __repr__(self) -> str:
        """`SASRec(train.epochs=50, fitted)`: the settings that differ from the defaults, and the state."""
        changed = [f"{path}={value!r}" for path, value in config_diff(self._reference_config(), self.config)] \
            if dataclasses.is_dataclass(self.config) else []
        fitted = f"fitted on {len(self.user_map_):,} users x {len(self.item_map_):,} items" \
            if hasattr(self, "seen_") else "not fitted"
        return f"{type(self).__name__}({', '.join([*changed, fitted])})"

    def _reference_config(self) -> Any:
        """What `repr` compares the config with (the class defaults)."""
        return self.Config()

    # ---- lifecycle -------------------------------------------------------------------------
    def fit(self, interactions: Interactions | Split, *, user_features: FeatureTable | None = None,
            item_features: FeatureTable | None = None, valid: Interactions | None = None,
            options: FitOptions | None = None) -> "Recommender":
        """Fit on `interactions` (early stopping on `valid` for models that train for epochs).

        Given a `Split`, fits on its train part with its valid part and the feature tables it
        carries (a split made from a Dataset), unless given explicitly."""
        if isinstance(interactions, Split):
            split = interactions
            interactions = split.train
            valid = valid if valid is not None or split.method == "cold-user" else split.valid
            user_features = user_features if user_features is not None else split.user_features
            item_features = item_features if item_features is not None else split.item_features
        options = options or FitOptions()
        if options.threads:
            torch.set_num_threads(options.threads)
        start = time.perf_counter()
        for stale in ("user_counts_", "stream_log_"):   # left by an earlier fit_stream
            self.__dict__.pop(stale, None)
        self.user_map_ = interactions.user_map
        self.item_map_ = interactions.item_map
        self.seen_ = interactions.to_csr()
        counts = interactions.item_counts().astype(np.float32)
        self.item_popularity_ = counts / max(counts.sum(), 1.0)
        self.ties_ = TieOrder.seeded(interactions.n_items, options.seed)
        self.retired_ = np.zeros(interactions.n_items, dtype=bool)
        self._fit(interactions, user_features=user_features, item_features=item_features,
                  valid=valid, options=options)
        self.fit_seconds_ = time.perf_counter() - start
        self.lineage_ = [lineage.entry("fit", 1, users=interactions.n_users, items=interactions.n_items,
                                       seconds=self.fit_seconds_, rows=interactions)]
        return self

    # ---- continual learning ----------------------------------------------------------------
    def update(self, new_interactions: Interactions | pd.DataFrame | None, *, items: pd.DataFrame | None = None,
               users: pd.DataFrame | None = None, options: FitOptions | None = None) -> "Recommender":
        """Learn from new rows without a refit; returns self.

        `new_interactions`: Interactions over any id maps, or a DataFrame read like a log file.
        New user and item ids are admitted (appended to the maps; existing indices never move, see
        `towerrec.data.delta`), the training matrix, popularity and tie order grow, and the model
        folds the rows in its own way: ALS solves the touched users and items exactly, EASE and
        ItemKNN update their item-item statistics and re-solve, torch models fine-tune on the new
        rows plus a replay sample of the old log (`config.update`). `items` (an `item_id` column and
        the fit-time feature/text columns) gives content for new items, which content models embed
        from it, and also admits catalogue items without rows there; `users` gives features of new
        users. The model's lineage gets an entry (its version + 1 and the data seen).
        """
        self._check_fitted()
        options = options or FitOptions(seed=self.ties_.seed or 0, progress=False)
        if options.threads:
            torch.set_num_threads(options.threads)
        start = time.perf_counter()
        extra = []
        if items is not None and self.capabilities.add_items:
            extra = self._content_ids(items)
        old_rows = lineage.rows_seen(self._lineage()) or self.n_interactions
        delta = admit(self.user_map_, self.item_map_, new_interactions, extra_items=extra)
        old_seen = self._grow(delta, old_rows)
        self._update(delta, old_seen=old_seen, items=items, users=users, options=options)
        self.update_seconds_ = time.perf_counter() - start
        counts = {k: v for k, v in delta.summary().items() if k != "rows"}
        self._record("update", rows=delta.rows, seconds=self.update_seconds_, **counts, **self._update_counts())
        return self

    def _update_counts(self) -> dict[str, int]:
        """Model-specific counts of the last `_update` for its lineage entry (ALS: its sweeps)."""
        return {}

    def _update(self, delta: Delta, *, old_seen: sp.csr_matrix, items: pd.DataFrame | None,
                users: pd.DataFrame | None, options: FitOptions) -> None:
        """Fold `delta` into the model. The base state (maps, `seen_`, popularity, ties) has already
        grown; `old_seen` is the training matrix before, padded to the new shape."""
        raise NotImplementedError(f"{self.name} cannot be updated; refit it")

    def _content_ids(self, items: pd.DataFrame) -> list[str]:
        """Item ids of a content frame (its `item_id` column), as strings."""
        if "item_id" not in items.columns:
            raise TowerrecError(f"items: needs an item_id column; found {list(items.columns)}")
        return items["item_id"].astype(str).tolist()

    def _grow(self, delta: Delta, old_rows: int) -> sp.csr_matrix:
        """Grow the state every model has to the delta's maps; returns the old `seen_`, padded."""
        n_users, n_items = len(delta.user_map), len(delta.item_map)
        old = self.seen_
        indptr = np.concatenate([old.indptr, np.full(n_users - old.shape[0], old.indptr[-1])]).astype(np.int64)
        padded = sp.csr_matrix((old.data, old.indices, indptr), shape=(n_users, n_items))
        seen = (padded + delta.rows.to_csr()).tocsr()
        seen.data[:] = 1
        self.seen_ = seen.astype(np.float32)
        counts = np.round(self.item_popularity_.astype(np.float64) * old_rows)
        counts = np.concatenate([counts, np.zeros(n_items - len(counts))]) + delta.rows.item_counts()
        self.item_popularity_ = (counts / max(counts.sum(), 1.0)).astype(np.float32)
        self.ties_ = self.ties_.extended(n_items)
        self.retired_ = np.concatenate([self._retired(), np.zeros(n_items - len(self._retired()), dtype=bool)])
        self.user_map_, self.item_map_ = delta.user_map, delta.item_map
        return padded

    def retire_items(self, item_ids: Sequence[str] | str) -> "Recommender":
        """Take items out of the catalogue: never recommended or listed as similar again (their index,
        embeddings and history entries stay, so nothing else moves). Returns self."""
        self._check_fitted()
        idx = self.item_map_.index(_as_list(item_ids))
        retired = self._retired().copy()
        retired[idx] = True
        self.retired_ = retired
        self._record("retire_items", retired=len(idx))
        return self

    def snapshot(self) -> "Recommender":
        """A copy that `add_items` / `retire_items` can change while this one keeps serving: both
        replace attributes rather than change arrays in place, so a shallow copy suffices here;
        models whose `add_items` changes a module override this."""
        import copy

        return copy.copy(self)

    def _retired(self) -> np.ndarray:
        retired = getattr(self, "retired_", None)
        return retired if retired is not None else np.zeros(self.n_items, dtype=bool)

    def _active(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """`allowed` [n_items] with retired items removed (None: everything allowed)."""
        retired = self._retired()
        if not retired.any():
            return allowed
        return ~retired if allowed is None else np.asarray(allowed, dtype=bool) & ~retired

    def _lineage(self) -> list[dict]:
        return list(getattr(self, "lineage_", None) or [])

    @property
    def version(self) -> int:
        """1 after fit, + 1 per update, add_items or retire_items (0: fitted before lineage existed)."""
        return lineage.version(self._lineage())

    def _record(self, kind: str, *, seconds: float = 0.0, rows: Interactions | None = None, **counts: int) -> None:
        self.lineage_ = [*self._lineage(), lineage.entry(kind, self.version + 1, users=len(self.user_map_),
                                                         items=self.n_items, seconds=seconds, rows=rows, **counts)]

    def _fit(self, interactions: Interactions, *, user_features: FeatureTable | None,
             item_features: FeatureTable | None, valid: Interactions | None, options: FitOptions) -> None:
        raise NotImplementedError

    def stream_refusal(self) -> str | None:
        """Why this model cannot train from a streamed log (None: it can; see `fit_stream`)."""
        return ("it is fitted from the whole interaction matrix in memory; load the log without --stream "
                "(streaming trains pop and the two-tower models without a history encoder, e.g. preset cf)")

    def fit_stream(self, log: "str | Path | StreamLog", *, options: FitOptions | None = None,
                   stream: "StreamOptions | None" = None) -> "Recommender":
        """Fit from a Parquet log read from disk in shards (`towerrec.data.stream`): for logs larger
        than memory. `log` is a path (a Parquet file or a folder of them) or a prepared `StreamLog`.

        Validation and test use the held-out user sample of the preparatory pass
        (`towerrec.data.stream_log`), kept in `self.stream_log_`; the fitted model saves, loads and
        serves like any other. Only models whose training reads one (user, item) row at a time can
        stream: others raise a one-line TowerrecError (`stream_refusal`)."""
        from towerrec.data.stream import StreamOptions
        from towerrec.data.stream_log import StreamLog, scan_log

        reason = self.stream_refusal()
        if reason:
            raise TowerrecError(f"{self.name} cannot train from a stream: {reason}")
        options = options or FitOptions()
        if options.threads:
            torch.set_num_threads(options.threads)
        start = time.perf_counter()
        if not isinstance(log, StreamLog):
            log = scan_log(str(log), stream or StreamOptions(), seed=options.seed)
        self.stream_log_ = log
        self.__dict__.pop("user_counts_", None)
        self.user_map_, self.item_map_ = log.user_map, log.item_map
        counts = log.item_counts.astype(np.float32)
        self.item_popularity_ = counts / max(counts.sum(), 1.0)
        self.ties_ = TieOrder.seeded(log.n_items, options.seed)
        self.seen_ = log.holdout.train_seen          # the sampled users' items, for validation
        self._fit_stream(log, options=options)
        from towerrec.distributed import is_main

        if log.options.keep_seen and is_main():   # other ranks never save or serve
            self.seen_ = log.seen_matrix()
        else:   # only the sampled users' items are known: who is a known user comes from the counts
            self.user_counts_ = log.user_counts
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _fit_stream(self, log: "StreamLog", *, options: FitOptions) -> None:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "seen_"):
            raise NotFittedError(f"{self.name}: call fit() before querying the model")

    @property
    def n_items(self) -> int:
        return len(self.item_map_)

    @property
    def n_interactions(self) -> int:
        """Distinct (user, item) pairs the model was fitted on (rows, for a stream fitted without
        keeping every user's items)."""
        counts = getattr(self, "user_counts_", None)
        return int(counts.sum()) if counts is not None else int(self.seen_.nnz)

    def seen_items(self, user_idx: int) -> np.ndarray:
        """Item indices of one user's training interactions."""
        self._check_fitted()
        return self.seen_.indices[self.seen_.indptr[user_idx]:self.seen_.indptr[user_idx + 1]].astype(np.int64)

    def user_feature_columns(self) -> list[dict]:
        """The user features a model embeds ({"name", "kind"} each), for request schemas; [] if none."""
        return []

    # ---- index-level protocol (subclasses implement the underscored hooks) ------------------
    def _score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def _score_histories(self, histories: Sequences) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} cannot score users it was not trained on")

    def _item_scores(self, item_idx: np.ndarray) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no item-item similarity")

    def score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        """Scores [len(user_idx), n_items] of users by their training interactions (or features)."""
        self._check_fitted()
        return self._score_users(np.asarray(user_idx, dtype=np.int64)).float()

    def score_histories(self, histories: Sequences) -> torch.Tensor:
        """Scores [n, n_items] of users given only their item histories (oldest first)."""
        self._check_fitted()
        if not self.capabilities.histories:
            raise NotImplementedError(f"{self.name} cannot score users it was not trained on")
        return self._score_histories(histories).float()

    def item_similarities(self, item_idx: np.ndarray) -> torch.Tensor:
        """Similarity of each query item to every item, [len(item_idx), n_items]; -inf = never similar."""
        self._check_fitted()
        return self._item_scores(np.asarray(item_idx, dtype=np.int64)).float()

    def user_vectors(self, user_idx: np.ndarray) -> torch.Tensor:
        """Query vectors [n, d] of training users (`capabilities.vectors`)."""
        raise NotImplementedError(f"{self.name} has no query vectors")

    def history_vectors(self, histories: Sequences) -> torch.Tensor:
        """Query vectors [n, d] of new users from their histories (`vectors` and `histories`)."""
        raise NotImplementedError(f"{self.name} has no history vectors")

    def feature_vectors(self, frame: pd.DataFrame, histories: Sequences | None = None) -> torch.Tensor:
        """Query vectors [n, d] of new users from a feature frame (`vectors` and `user_features`)."""
        raise NotImplementedError(f"{self.name} does not embed user features")

    def item_vectors(self) -> torch.Tensor:
        """Item vectors [n_items, d] (`capabilities.vectors`)."""
        raise NotImplementedError(f"{self.name} has no item vectors")

    def item_space(self) -> torch.Tensor | sp.csr_matrix | None:
        """The model's own item representation [n_items, d], rows compared by cosine: what "alike"
        means to this model, for embedding diversity (EmbILD) and "because you liked X" explanations.
        Default: the item vectors of models that declare them; None for a model without one (popularity)."""
        self._check_fitted()
        return self.item_vectors() if self.capabilities.vectors == "ip" else None

    def n_parameters(self) -> int:
        """The learned numbers: the floating-point arrays of the saved state (EASE's weights, ALS's
        factors, ...); torch models count their module's parameters instead."""
        self._check_fitted()
        return int(sum(a.size for a in map(np.asarray, self._state().values()) if a.dtype.kind == "f"))

    def training_history(self) -> list[dict] | None:
        """The fit's per-epoch (or per-iteration) log: epoch, loss, valid metric, seconds; None if none."""
        history = getattr(self, "history_", None)
        return list(history) if history else None

    def scores_cold_users(self) -> bool:
        """Whether `score_users` is meaningful for users with no training interactions (a user
        tower over features); otherwise such users get the popularity fallback."""
        return self.capabilities.user_features

    def known_users(self, user_idx: np.ndarray) -> np.ndarray:
        """[n] bool: the user has training interactions (in range of the user map and a non-empty row)."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        inside = (user_idx >= 0) & (user_idx < len(self.user_map_))
        out = np.zeros(len(user_idx), dtype=bool)
        counts = getattr(self, "user_counts_", None)    # streamed without every user's items
        out[inside] = (counts if counts is not None else np.diff(self.seen_.indptr))[user_idx[inside]] > 0
        return out

    def popularity_scores(self, n: int) -> torch.Tensor:
        """[n, n_items] training popularity: the fallback for users the model cannot score."""
        return torch.from_numpy(self.item_popularity_.astype(np.float32)).repeat(n, 1)

    # ---- the one batched ranking path ----------------------------------------------------------
    def rank_users(self, user_idx: np.ndarray, k: int, *, histories: Sequences | None = None,
                   exclude: sp.csr_matrix | None = None, exclude_seen: bool = False,
                   allowed: np.ndarray | None = None, ties: TieOrder | None = None, batch_size: int = 1024,
                   desc: str | None = None, user_ids: np.ndarray | None = None,
                   distributed: bool = False) -> Recommendations:
        """Top-k for user indices of the model's user map, in batches of `batch_size` users.

        A user is scored from row u of `histories` (users x their item sequences) when given and
        non-empty, else by `score_users` when the model knows them (`known_users`, or any user of
        the map for models that score users from features), else by popularity (fallback
        "popularity"; "features" for users without interactions scored from features).
        `exclude` [n_users, n_items] rows are masked (by user index), and so are the user's training
        items when `exclude_seen`; `allowed` [n_items] keeps only those items; ties follow `ties`
        (default: the model's own seeded order). `distributed`: a collective under torchrun, each
        rank scoring a contiguous slice of the users (`ranking.rank_batches`).
        """
        self._check_fitted()
        user_idx = np.asarray(user_idx, dtype=np.int64)
        ties = ties or self.ties_
        allowed = self._active(allowed)
        n = len(user_idx)
        if k <= 0:
            raise TowerrecError(f"k must be positive, got {k}")
        known = self.known_users(user_idx)
        has_history = np.zeros(n, dtype=bool)
        if histories is not None:
            if not self.capabilities.histories:
                raise NotImplementedError(f"{self.name} cannot score users from histories")
            inside = (user_idx >= 0) & (user_idx < histories.n_users)
            has_history[inside] = histories.lengths()[user_idx[inside]] > 0
        by_features = ~known & ~has_history & (user_idx >= 0) & self.scores_cold_users()
        fallback = np.full(n, None, dtype=object)
        fallback[~known & ~has_history] = "popularity"
        fallback[by_features] = "features"
        by_model = (known | by_features) & ~has_history

        def scores_of(pos: np.ndarray) -> torch.Tensor:
            u, scores = user_idx[pos], torch.empty(len(pos), self.n_items)
            for rows, score in ((has_history[pos], lambda r: self.score_histories(histories.take(r))),
                                (by_model[pos], self.score_users),
                                (~has_history[pos] & ~by_model[pos], lambda r: self.popularity_scores(len(r)))):
                if rows.any():
                    scores[torch.from_numpy(np.flatnonzero(rows))] = score(u[rows]).float().cpu()
            return scores

        masks = [m for m in (exclude, self.seen_ if exclude_seen else None) if m is not None]
        top = rank_batches(scores_of, user_idx, k, ties, exclude=masks, allowed=allowed, batch_size=batch_size,
                           who=f"model {self.name!r}", desc=desc or "rank", show=None if desc else False,
                           distributed=distributed)
        if user_ids is None:
            names = np.append(self.user_map_.ids, None)
            user_ids = names[np.where((user_idx >= 0) & (user_idx < len(self.user_map_)), user_idx, -1)]
        return Recommendations.from_top(user_ids, top, self.item_map_, fallback=fallback.tolist(), user_idx=user_idx)

    # ---- public queries --------------------------------------------------------------------
    def score(self, user_ids: Sequence[str] | str, item_ids: Sequence[str] | str) -> np.ndarray:
        """Pairwise scores for (user_ids[j], item_ids[j]), shape [n]."""
        self._check_fitted()
        u = self.user_map_.index(_as_list(user_ids))
        i = self.item_map_.index(_as_list(item_ids))
        uniq, inv = np.unique(u, return_inverse=True)
        scores = self.score_users(uniq)
        return scores[torch.from_numpy(inv), torch.from_numpy(i)].cpu().numpy()

    def recommend(self, user_ids: Sequence[str] | str | None = None, k: int = 10, *,
                  exclude_seen: bool = True, history: Sequence[str] | None = None,
                  exclude_items: Sequence[str] | str | None = None, batch_size: int = 1024) -> Recommendations:
        """Top-k for known users, or for one new user given `history` (external item ids, oldest first).

        Users the model cannot score fall back to popularity (or their features, for models with a
        user-feature tower); `Recommendations.fallback` says which. Ties follow the model's seeded
        tie order (see `towerrec.ranking`).
        """
        self._check_fitted()
        if k <= 0:
            raise TowerrecError(f"k must be positive, got {k}")
        allowed = self._active(self._allowed(exclude_items))
        if history is not None:
            label = "<history>" if user_ids is None else str(user_ids)
            return self._recommend_history(_as_list(history), label, k, exclude_seen, allowed)
        if user_ids is None:
            raise TowerrecError("recommend needs user_ids or history")
        ids = np.asarray(_as_list(user_ids), dtype=object)
        idx = self.user_map_.get_index(ids)
        return self.rank_users(idx, k, exclude_seen=exclude_seen, allowed=allowed, batch_size=batch_size,
                               user_ids=ids)

    def _recommend_history(self, history: list, label: str, k: int, exclude_seen: bool,
                           allowed: np.ndarray | None) -> Recommendations:
        items = self.item_map_.index(history)
        seqs = Sequences.from_lists([items])
        if self.capabilities.histories:
            scores, kind = self.score_histories(seqs).cpu(), "history"
        else:
            scores, kind = self.popularity_scores(1), "popularity"
        who = f"model {self.name!r}"
        if exclude_seen:
            check_finite(scores, who)
            scores[0, torch.from_numpy(items)] = -torch.inf
            who = None
        top = rank(scores, min(k, self.n_items), self.ties_, allowed=allowed, who=who)
        return Recommendations.from_top(np.array([label], dtype=object), top, self.item_map_, fallback=[kind])

    def _allowed(self, exclude_items: Sequence[str] | str | None) -> np.ndarray | None:
        if exclude_items is None or (not isinstance(exclude_items, str) and len(exclude_items) == 0):
            return None
        allowed = np.ones(self.n_items, dtype=bool)
        allowed[self.item_map_.index(_as_list(exclude_items))] = False
        return allowed

    def similar_items(self, item_ids: Sequence[str] | str, k: int = 10) -> Recommendations:
        """Items most similar to each of `item_ids` (the query item itself excluded)."""
        self._check_fitted()
        if k <= 0:
            raise TowerrecError(f"k must be positive, got {k}")
        ids = np.asarray(_as_list(item_ids), dtype=object)
        q = self.item_map_.index(ids)
        scores = self.item_similarities(q).clone()
        if bool(torch.isnan(scores).any() | torch.isposinf(scores).any()):   # -inf: "never similar"
            check_finite(scores, f"model {self.name!r} (item similarities)")
        scores[torch.arange(len(q)), torch.from_numpy(q)] = -torch.inf
        top = rank(scores, min(k, self.n_items), self.ties_, allowed=self._active(None), who=None)
        return Recommendations.from_top(ids, top, self.item_map_)

    # ---- explanations (towerrec.explain) -------------------------------------------------------
    def explain(self, user_id: str | None = None, item_ids: Sequence[str] | str | None = None, *,
                history: Sequence[str] | None = None, k: int = 3, n: int = 10):
        """Why `item_ids` are recommended to `user_id` (or to a new user given `history`): the history
        items that raise each score most (`because`), the history items nearest in the model's item
        space (`nearest`), feature attributions where the model has features. One id gives one
        `towerrec.explain.Explanation`, several a list; none explains the user's top `n`."""
        from towerrec.explain import explain

        return explain(self, user_id, item_ids, history=history, k=k, n=n)

    def history_of(self, user_idx: int) -> Sequences:
        """A training user's history as one ordered row (what explanations perturb)."""
        self._check_fitted()
        return Sequences.from_lists([self.seen_items(user_idx)])

    def score_history_variants(self, user_idx: int, variants: Sequences, item_idx: np.ndarray) -> torch.Tensor:
        """Scores [variants.n_users, len(item_idx)] of one user (index; -1: a new user) given each row of
        `variants` as the history: what explanations and the deletion test perturb. Default: the model
        scores histories alone; a model that cannot, scores the user as it is (history ignored)."""
        self._check_fitted()
        n = variants.n_users
        if self.capabilities.histories:
            scores = self.score_histories(variants)
        elif user_idx >= 0 and bool(self.known_users(np.array([user_idx]))[0]):
            scores = self.score_users(np.full(n, user_idx))
        else:
            scores = self.popularity_scores(n)
        return scores[:, torch.from_numpy(np.asarray(item_idx, dtype=np.int64))]

    def history_effects(self, user_idx: int, history: Sequences, item_idx: np.ndarray) -> np.ndarray:
        """[len(history), len(item_idx)]: how much each history entry adds to each item's score.
        Default: leave one out (the score minus the score without that entry); exact models override."""
        from towerrec.explain import leave_one_out

        return leave_one_out(self, user_idx, history, item_idx)

    def feature_effects(self, user_idx: int, history: Sequences, item_idx: np.ndarray) -> list[list]:
        """Per item, `towerrec.explain.FeatureEffect`s of the user's and item's features ([] without features)."""
        return [[] for _ in range(len(item_idx))]

    def explanation_method(self) -> str:
        """How `history_effects` is computed, in words (shown with every explanation)."""
        return "leave one out: the score minus the score without that history item"

    # ---- artifacts -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _load_state(self, tensors: dict[str, np.ndarray], extra: dict) -> None:
        raise NotImplementedError

    def _extra(self) -> dict:
        return {}

    def save(self, path: str | Path, **catalogue) -> Path:
        """Write a folder loadable by `towerrec.load_model` (no pickle anywhere; see towerrec.artifact);
        `catalogue`: titles, item_table, dataset for `save_recommender`. Under torchrun rank 0 writes
        (every rank holds the same weights) while the others wait."""
        self._check_fitted()
        from towerrec.distributed import barrier, is_main

        if not is_main():
            barrier()
            return Path(path)
        try:
            return save_recommender(self, path, **catalogue)
        finally:
            barrier()

    @classmethod
    def load(cls, path: str | Path) -> "Recommender":
        """The model saved at `path`; a damaged or mismatched folder is a TowerrecError naming the file."""
        return load_recommender(cls, path)


class ItemRowRecommender(Recommender):
    """A model whose scores depend on the user's item row alone (EASE, ItemKNN): training users and
    new users given a history go through the same `_score_rows(seen [n, n_items] CSR) -> [n, n_items]`.

    Both are functions of the item-item co-occurrence counts G = X^T X of the binary training
    matrix X (`gram_`). `update` changes G incrementally, from the touched users' rows only
    (G += X_new[t]^T X_new[t] - X_old[t]^T X_old[t]), then re-solves (`_solve`): the result equals
    a refit on all rows. G is kept in memory after fit and after an update, never in the artifact
    (a loaded model recomputes it from `seen_`, which is X, at its first update)."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(histories=True, similar_items=True)

    def _solve(self, gram: sp.csr_matrix) -> None:
        """Set the model's solution from co-occurrence counts [n_items, n_items]."""
        raise NotImplementedError

    def _fit(self, interactions: Interactions, *, user_features: FeatureTable | None,
             item_features: FeatureTable | None, valid: Interactions | None, options: FitOptions) -> None:
        self.gram_ = cooccurrence(interactions.to_csr())
        self._solve(self.gram_)

    def _update(self, delta: Delta, *, old_seen: sp.csr_matrix, items: pd.DataFrame | None,
                users: pd.DataFrame | None, options: FitOptions) -> None:
        n_items = self.n_items
        gram = getattr(self, "gram_", None)
        if gram is None:                                       # loaded from an artifact
            gram = cooccurrence(old_seen)
        else:
            gram = sp.csr_matrix((gram.data, gram.indices, np.concatenate(
                [gram.indptr, np.full(n_items - gram.shape[0], gram.indptr[-1])])), shape=(n_items, n_items))
        touched = delta.changed_users                          # new users had no old row
        new_rows = self.seen_[delta.touched_users]
        old_rows = old_seen[touched]
        self.gram_ = (gram + cooccurrence(new_rows) - cooccurrence(old_rows)).tocsr()
        self.gram_.eliminate_zeros()
        self._solve(self.gram_)

    def _score_rows(self, seen: sp.csr_matrix) -> torch.Tensor:
        raise NotImplementedError

    def item_weights(self) -> torch.Tensor | sp.csr_matrix:
        """W [n_items, n_items] with score(u, j) = sum over the user's items h of W[h, j]."""
        raise NotImplementedError

    def item_space(self) -> torch.Tensor | sp.csr_matrix:
        """Row h of W: what item h recommends; two items are alike when they recommend alike."""
        self._check_fitted()
        return self.item_weights()

    def history_effects(self, user_idx: int, history: Sequences, item_idx: np.ndarray) -> np.ndarray:
        """Exact: W[h, i]. The score reads a binary row, so a repeated history item counts once (its
        first entry carries the weight)."""
        hist = history.tokens - 1
        w = self.item_weights()
        item_idx = np.asarray(item_idx, dtype=np.int64)
        if sp.issparse(w):
            rows = np.asarray(w[hist][:, item_idx].todense(), dtype=np.float64)
        else:   # gather the L x m weights only, not L full rows
            rows = w[torch.from_numpy(hist)[:, None], torch.from_numpy(item_idx)[None, :]].double().numpy()
        first = np.zeros(len(hist), dtype=bool)
        first[np.unique(hist, return_index=True)[1]] = True
        rows[~first] = 0.0
        return rows

    def explanation_method(self) -> str:
        return "exact: the score is the sum over the history of the item-item weights W[h, i]"

    def _score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        return self._score_rows(self.seen_[user_idx])

    def _score_histories(self, histories: Sequences) -> torch.Tensor:
        return self._score_rows(histories.to_csr(self.n_items))


def cooccurrence(seen: sp.csr_matrix) -> sp.csr_matrix:
    """X^T X [n_items, n_items] float32 of a binary user x item matrix: users sharing each pair of
    items (exact integers up to 2^24), sorted indices."""
    x = seen.astype(np.float32)
    gram = (x.T @ x).tocsr()
    gram.sort_indices()
    return gram


def _as_list(ids: Sequence[str] | str | int) -> list:
    """A single id (a string or a number) is one id, never a sequence of characters."""
    if isinstance(ids, (str, bytes, int, np.integer)):
        return [ids]
    return list(ids)
