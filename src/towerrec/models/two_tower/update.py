"""The two-tower model's `update`: grow the towers for new ids, then a warm-start fine-tune on the new
rows plus a replay sample of the old log (`towerrec.models.update`).

How new ids start (before the fine-tune):
- a new item's or user's *id embedding* row starts at zero, which is exactly the "unknown id"
  input that id dropout trains the towers to read: a new item of a `hybrid` or `content` model
  therefore starts at its content embedding (features and text, from the `items` table), the
  vector `add_items` would give it; a new user starts from their features (the `users` table)
  and their pooled history. An id-only (`cf`) model has nothing else to read: its new ids start
  at the zero input too, and only the fine-tune moves them;
- an id gets its own trained code (index + 1) once it has training rows; catalogue items without
  rows keep code 0 (content only), as after fit.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from towerrec.data.delta import Delta
from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError
from towerrec.models.base import FitOptions
from towerrec.models.train import TrainResult, train
from towerrec.models.two_tower.batches import PairBatches, UserBatches
from towerrec.models.update import replay_pairs
from towerrec.towers.content import new_item_arrays
from towerrec.towers.features import IdEmbedding, encode_frame, encode_new_rows, table_arrays
from towerrec.towers.graph import normalized_adjacency


def grow_ids(encoder: IdEmbedding, n_ids: int) -> None:
    """Make room for codes 1..n_ids; new rows are zero (the unknown-id input). Hashed ids need none."""
    old = encoder.embedding
    if encoder.hash_buckets > 0 or old.num_embeddings >= n_ids + 1:
        return
    new = nn.Embedding(n_ids + 1, old.embedding_dim, padding_idx=0).to(old.weight.device)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:old.num_embeddings] = old.weight
    encoder.embedding = new


def new_item_rows(model, ids: np.ndarray, items: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """Feature/text row arrays of new items from `items` (rows for other ids are ignored; a new item
    without a row gets missing features and the text of an empty string, as a cold item at fit)."""
    id_col = model.content_.table.id_col
    frame = pd.DataFrame({id_col: ids})
    if items is not None:
        if id_col not in items.columns:
            raise TowerrecError(f"items: needs an {id_col} column; found {list(items.columns)}")
        frame = items[items[id_col].astype(str).isin(set(ids))].drop_duplicates(id_col)
    return new_item_arrays(frame, model.content_, np.asarray(ids, dtype=object))


def new_user_rows(model, ids: np.ndarray, users: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """Feature row arrays of new users from `users` (only the fit-time columns are read; a new user
    without a row gets missing features)."""
    spec = model.user_spec_
    if users is None:
        return table_arrays(None, spec, len(ids))
    if spec.id_col not in users.columns:
        raise TowerrecError(f"users: needs a {spec.id_col} column; found {list(users.columns)}")
    known = [c["name"] for c in spec.columns if c["name"] in users.columns]
    frame = users[users[spec.id_col].astype(str).isin(set(ids))].drop_duplicates(spec.id_col)
    encode_new_rows(frame[[spec.id_col, *known]], spec, "user")        # checks the values, names the bad ones
    table = encode_frame(frame[[spec.id_col, *known]], spec, IdMap(np.asarray(ids, dtype=object), "user"))
    return table_arrays(table, spec, len(ids))


def grow(model, delta: Delta, items: pd.DataFrame | None, users: pd.DataFrame | None) -> None:
    """Feature rows, id codes and id tables for the grown maps (before any training)."""
    m = model.module_
    n_users, n_items = model.seen_.shape
    new_items = delta.item_map.ids[delta.n_items_before:]
    new_users = delta.user_map.ids[delta.n_users_before:]
    if m.item_rows is not None and len(new_items):
        m.item_rows.extend(new_item_rows(model, new_items, items))
    if m.user_rows is not None and len(new_users):
        m.user_rows.extend(new_user_rows(model, new_users, users))
    # ids with training rows get their own code (index + 1); items of the catalogue without rows keep
    # code 0 and are embedded from content, as after fit
    user_counts = np.diff(model.seen_.indptr)
    item_counts = np.bincount(model.seen_.indices, minlength=n_items)
    m.user_code = torch.from_numpy(np.where(user_counts > 0, np.arange(1, n_users + 1), 0)).to(m.user_code.device)
    m.item_code = torch.from_numpy(np.where(item_counts > 0, np.arange(1, n_items + 1), 0)).to(m.item_code.device)
    m.trained_items = torch.from_numpy(np.flatnonzero(item_counts > 0)).to(m.item_code.device)
    for tower, n in ((m.item_tower, n_items), (m.history_tower, n_items), (m.user_tower, n_users)):
        if tower is not None and "id" in tower.inputs and isinstance(tower.inputs["id"], IdEmbedding):
            grow_ids(tower.inputs["id"], n)
    if m.item_bias is not None:                  # new items start with no offset
        grow_ids(m.item_bias, n_items)
    if m.graph is not None:   # LightGCN: the ego table grows, the propagation runs on the grown graph
        m.graph.grow(n_users, n_items, normalized_adjacency(model.seen_))
    m.log_q = torch.zeros(n_items)


def fine_tune_sample(delta: Delta, old_seen: sp.csr_matrix, replay: int, seed: int) -> Interactions:
    """The new rows plus `replay` (user, item) pairs drawn uniformly from the old training matrix."""
    rng = np.random.default_rng([seed, 0x5EED])
    old_u, old_i = replay_pairs(old_seen, replay, rng)
    rows = delta.rows
    return Interactions(user_idx=np.concatenate([rows.user_idx, old_u]), item_idx=np.concatenate([rows.item_idx, old_i]),
                        weight=np.ones(len(rows) + len(old_u), dtype=np.float32), user_map=rows.user_map,
                        item_map=rows.item_map)


def fine_tune(model, delta: Delta, old_seen: sp.csr_matrix, options: FitOptions) -> TrainResult | None:
    """A few passes over the new rows and a replay sample, from the current weights (no early stopping)."""
    c = model.config
    u = c.update
    if u.passes == 0 or len(delta.rows) == 0:
        return None
    seed = options.seed + 7919 * (model.version + 1)      # another draw per update
    batch = c.train.batch_size
    sample = fine_tune_sample(delta, old_seen, u.n_replay(len(delta.rows), int(old_seen.nnz), batch), seed)
    m = model.module_
    m.set_log_q(sample.item_counts())
    by_user = c.sampling == "users"
    batches = (UserBatches if by_user else PairBatches)(sample, model.seen_, c)
    batch_size = c.users_per_batch if by_user else c.train.batch_size
    config = dataclasses.replace(u.train_config(c.train, -(-batches.n_samples // batch_size)), batch_size=batch_size)
    result = train(m, n_samples=batches.n_samples, make_batch=batches, config=config,
                   options=dataclasses.replace(options, seed=seed), desc=f"{model.name}[{c.preset}] update")
    m.cpu().eval()
    return result
