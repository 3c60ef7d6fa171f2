"""Two-tower explanations (`towerrec.explain`): how the user's history and each feature of the user and
of the item move a score.

- History: the user vector recomputed with each history item left out, the user's id and feature
  row kept (`history_scores`, what `Recommender.history_effects`' leave-one-out reads).
- Features: leave one feature out. A feature is blanked the way a missing value is encoded (category
  code 0, an empty bag, numeric 0 = the training mean after standardising, a zero text vector, id
  code 0 for "no trained id"), on the user tower or the item tower, and the score drop is its effect.

Everything is batched: one tower pass over all variants of a request (features x items), no loop
per variant.
"""
from __future__ import annotations

import numpy as np
import torch

from towerrec.data.sequences import Sequences


def _trained_history(model, user_idx: int, history: Sequences) -> bool:
    """The history is the user's own training history: their cached user vector is the full one."""
    if user_idx < 0 or user_idx >= len(model.user_map_):
        return False
    seen = model.seen_items(user_idx)
    return len(seen) == history.tokens.size and np.array_equal(np.sort(history.tokens - 1), seen)


def _full_user(model, user_idx: int, history: Sequences) -> torch.Tensor:
    """The user's vector [1, d] with this history (cached for a training user's own history)."""
    if _trained_history(model, user_idx, history):
        return model.user_embeddings_[user_idx:user_idx + 1]
    m = model.module_
    with m.shared_graph():      # `_user_vectors`' computation, the history tower's vectors read from the cache
        parts = _user_parts(m, user_idx)
        if "history" in m.user_tower.inputs:
            parts["history"] = _pooled_history(model, history)
        return _user_head(m, parts)


@torch.no_grad()
def history_scores(model, user_idx: int, variants: Sequences, item_idx: np.ndarray) -> torch.Tensor:
    """Scores [variants.n_users, len(item_idx)] of user `user_idx` (-1: no id, no feature row) with each
    row of `variants` as the history."""
    seen = variants.to_csr(model.n_items)
    n = seen.shape[0]
    users = model._user_vectors(np.full(n, user_idx), seen, np.arange(n))
    items = model.item_embeddings_[torch.from_numpy(np.asarray(item_idx, dtype=np.int64))]
    return model.module_.scorer(users, items)


@torch.no_grad()
def history_effects(model, user_idx: int, history: Sequences, item_idx: np.ndarray) -> np.ndarray:
    """Leave one history item out, [len(history), m]. With mean pooling every variant comes from one pass
    over the history (the pooled sum minus the item, `HistoryPooling.mean_leaving_out`, as in training)
    instead of one pooling per variant: O(L) rather than O(L^2) for a history of L items."""
    from towerrec.explain import leave_one_out

    m = model.module_
    hist = history.tokens - 1
    if model.config.history != "mean" or m.history_tower is None or len(hist) == 0 \
            or len(np.unique(hist)) != len(hist):        # repeated items: the generic route handles them
        return leave_one_out(model, user_idx, history, item_idx)
    n = len(hist)
    items, inverse = np.unique(hist, return_inverse=True)
    inverse = torch.from_numpy(inverse.astype(np.int64))
    reps = _history_reps(model)[torch.from_numpy(items)]
    pooled = m.pool.mean_leaving_out(reps, inverse, torch.zeros(1, dtype=torch.int64),
                                     torch.zeros(n, dtype=torch.int64), inverse)          # [L, d]
    # the id and the feature row are the same in every variant: encoded once, not L times
    users = _user_head(m, {**_user_parts(m, user_idx), "history": m.user_tower.inputs["history"](pooled)})
    target = model.item_embeddings_[torch.from_numpy(np.asarray(item_idx, dtype=np.int64))]
    without = m.scorer(users, target)                                                    # [L, m]
    full = m.scorer(_full_user(model, user_idx, history), target)
    return (full - without).double().numpy()


def _user_parts(m, user_idx: int, keys: tuple[str, ...] = ("id", "features")) -> dict[str, torch.Tensor]:
    """The user tower's encodings [1, d_k] of the user's id and feature row (index -1: neither), as
    `TwoTowerModule.user_vectors` encodes them (in eval mode); only those of `keys`."""
    tower = m.user_tower
    idx = torch.tensor([user_idx])
    known, safe = idx >= 0, idx.clamp_min(0)
    parts = {}
    if "id" in tower.inputs and "id" in keys:
        parts["id"] = tower.inputs["id"](torch.where(known, m.user_code[safe], 0))
    if "features" in tower.inputs and "features" in keys:
        parts["features"] = tower.inputs["features"](m.user_rows.take(torch.where(known, safe + 1, 0)))
    return parts


def _user_head(m, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """User vectors from encoded inputs (one-row inputs shared by every row), as `user_vectors` returns
    them in eval mode (`TwoTowerModule.user_output`: a variational tower's mean, decoded)."""
    return m.user_output(m.user_tower.head(parts))


def _keyed_on_items(model, name: str, make):
    """`make()`'s value, kept on the model under `name` until `item_embeddings_` changes: the model
    recomputes (or grows) that tensor whenever its weights or items change, so per-item work derived
    from it is done once, not per request."""
    items = model.item_embeddings_
    key = (items._version, model.n_items)          # the tensor itself is kept: its id cannot be reused
    cached = model.__dict__.get(name)
    if cached is None or cached[0] is not items or cached[1] != key:
        cached = model.__dict__[name] = (items, key, make())
    return cached[2]


def _history_reps(model) -> torch.Tensor:
    """The history tower's vector of every item [n_items, d] (a request reads rows, not the history
    tower on each history)."""
    def make() -> torch.Tensor:
        m = model.module_
        with torch.no_grad():
            return m.history_tower(m._item_input(m.history_tower, torch.arange(model.n_items)))

    return _keyed_on_items(model, "_explain_history_reps", make)


def _pooled_history(model, history: Sequences) -> torch.Tensor:
    """The history input [1, d] of a one-row history, encoded for the user tower: each distinct item
    once, as a CSR row of it reads (none is built for one row)."""
    m = model.module_
    items = torch.from_numpy(np.unique(history.tokens - 1).astype(np.int64))
    n = len(items)
    pooled = m.pool(_history_reps(model)[items], torch.arange(n), torch.zeros(1, dtype=torch.int64), torch.ones(n))
    return m.user_tower.inputs["history"](pooled)


# blanked item vectors kept per item (an item's variants do not depend on the user); past this many
# items the cache starts again (~3 MB at 64 dims and 10 features)
_BLANKED_CACHE_ITEMS = 1 << 12


def _blanked_items(model, item_idx: np.ndarray, columns: list[tuple[str, int, str]], n: int) -> torch.Tensor:
    """The scorer-ready item vectors [len(item_idx) * n, d] of each item with one of its n inputs
    missing (the features of `columns`, then the id), item j's n rows in a row. Cached per item,
    keyed on `item_embeddings_` (`_keyed_on_items`): recommended items recur across requests,
    and their variants are the same for every user."""
    m = model.module_
    known = _keyed_on_items(model, "_explain_blanked_items", dict)
    if len(known) > _BLANKED_CACHE_ITEMS:
        known.clear()
    missing = np.array([i for i in dict.fromkeys(item_idx.tolist()) if i not in known], dtype=np.int64)
    if len(missing):
        idx = torch.from_numpy(np.repeat(missing, n))
        which = torch.arange(n).repeat(len(missing))
        x: dict = {}
        if "id" in m.item_tower.inputs:
            x["id"] = m.item_code[idx].masked_fill(which == len(columns), 0)
        if "features" in m.item_tower.inputs and m.item_rows is not None:
            x["features"] = _blank(m.item_rows.take(idx + 1), columns, which)
        z = m.scorer.prepare(m.item_output(x)).view(len(missing), n, -1)
        known.update(zip(missing.tolist(), z))
    return torch.cat([known[i] for i in item_idx.tolist()])


def _columns(spec, keys) -> list[tuple[str, int, str]]:
    """(kind, position within its kind, name) of every feature a side's rows carry (`keys`: the
    names of their arrays, `FeatureRows.keys_`)."""
    out = [("cat", j, c["name"]) for j, c in enumerate(spec.of_kind("categorical"))]
    out += [("num", j, c["name"]) for j, c in enumerate(spec.of_kind("numeric"))]
    out += [("bag", j, c["name"]) for j, c in enumerate(spec.of_kind("multi"))]
    if "text" in keys or "tokens" in keys:
        out.append(("text", 0, "text"))
    return out


def _blank(feats: dict, columns: list[tuple[str, int, str]], which: torch.Tensor) -> dict:
    """A copy of the batch `feats` with, in row r, the feature `columns[which[r]]` missing (which[r] < 0:
    nothing blanked)."""
    out = {"cat": feats["cat"].clone(), "num": feats["num"].clone(), "bags": list(feats["bags"])}
    for key in ("text", "tokens"):
        if key in feats:
            out[key] = feats[key].clone()
    for f, (kind, j, _) in enumerate(columns):
        rows = which == f
        if not bool(rows.any()):
            continue
        if kind == "cat":
            out["cat"][rows, j] = 0
        elif kind == "num":
            out["num"][rows, j] = 0.0
        elif kind == "bag":
            flat, offsets = out["bags"][j]
            lens = torch.diff(offsets, append=offsets.new_tensor([len(flat)]))
            row_of = torch.repeat_interleave(torch.arange(len(offsets)), lens, output_size=len(flat))
            keep = ~rows[row_of]
            lens = lens * (~rows)
            out["bags"][j] = (flat[keep], torch.cumsum(lens, 0) - lens)
        else:
            for key in ("text", "tokens"):
                if key in out:
                    out[key][rows] = 0
    return out


@torch.no_grad()
def feature_effects(model, user_idx: int, history: Sequences, item_idx: np.ndarray) -> list[list]:
    """Per item: `FeatureEffect`s of the user's features (and id) and of the item's features (and id):
    the score minus the score with that one input missing."""
    from towerrec.explain import FeatureEffect

    m = model.module_
    scorer = m.scorer
    item_idx = np.asarray(item_idx, dtype=np.int64)
    n_items = len(item_idx)
    user = _full_user(model, user_idx, history)                                            # [1, d]
    base_items = model.item_embeddings_[torch.from_numpy(item_idx)]
    base = scorer(user, base_items)[0]                                                    # [m]
    out: list[list] = [[] for _ in range(n_items)]

    # the user tower: each feature of the user's row (and the id) left out in turn
    known = user_idx >= 0
    user_inputs = m.user_tower.inputs
    if known and ("features" in user_inputs or "id" in user_inputs):
        has_rows = "features" in user_inputs and m.user_rows is not None
        columns = _columns(model.user_spec_, m.user_rows.keys_) if has_rows else []
        names = [c[2] for c in columns] + (["user id"] if "id" in user_inputs else [])
        if names:
            n = len(names)
            which = torch.arange(n)
            # variant f blanks feature f (the last one: the id); what they share is encoded once
            parts = {}
            if "id" in user_inputs:
                ids = _user_parts(m, user_idx, ("id",))["id"].expand(n, -1).clone()
                ids[len(columns):] = _user_parts(m, -1, ("id",))["id"]       # the id row: no id code
                parts["id"] = ids
            if has_rows:
                batch = _blank(m.user_rows.take(torch.full((n,), user_idx + 1, dtype=torch.int64)), columns, which)
                parts["features"] = user_inputs["features"](batch)
            if "history" in user_inputs:
                parts["history"] = _pooled_history(model, history)
            users = _user_head(m, parts)
            drops = (base[None, :] - scorer(users, base_items)).tolist()      # [n, m]
            for f, name in enumerate(names):
                for j in range(n_items):
                    out[j].append(FeatureEffect("user", name, drops[f][j]))

    # the item tower: each feature of each item (and its id) left out in turn
    item_inputs = m.item_tower.inputs
    has_rows = "features" in item_inputs and m.item_rows is not None
    columns = _columns(model.content_.table, m.item_rows.keys_) if has_rows else []
    names = [c[2] for c in columns] + (["item id"] if "id" in item_inputs else [])
    if names:
        n = len(names)
        z = _blanked_items(model, item_idx, columns, n)                     # item j's n variants in a row
        scores = scorer(user, z)[0].view(n_items, n)
        drops = (base[:, None] - scores).tolist()
        for j in range(n_items):
            out[j] += [FeatureEffect("item", name, drops[j][f]) for f, name in enumerate(names)]
    return out
