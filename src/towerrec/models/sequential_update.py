"""The sequence models' `update`: longer sequences, a grown item table, a warm-start fine-tune.

- Every user's new rows are appended to their sequence in time order (ties by row); new users get
  new sequences. Old tokens never change (item indices never move).
- The item table grows by one zero row per new item: with item content attached the new item's
  vector is then exactly its content vector (from the `items` table); without, it scores 0 for
  every state (no evidence either way; a mean item row, tried first, scored above the unseen items
  of block-structured users and pushed their right item off the top) until the fine-tune moves
  it. Special rows after the items (BERT4Rec's [MASK]) move to the end.
- The fine-tune trains the windows whose targets are new rows (older positions of the same window
  give context and no loss), plus replay windows drawn from the old sequences until they hold the
  `replay` share of the targets (`towerrec.models.update`).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from towerrec.data.delta import Delta
from towerrec.data.sequences import Sequences, Windows
from towerrec.errors import TowerrecError
from towerrec.models.base import FitOptions
from towerrec.models.sequence_batches import LengthBatches
from towerrec.models.train import TrainResult, train
from towerrec.towers.content import ContentSpec, new_item_arrays
from towerrec.towers.features import TableSpec


def append(old: Sequences, new: Sequences) -> Sequences:
    """Each user's `new` tokens after their `old` ones ([n_users] of `new` >= those of `old`)."""
    n = new.n_users
    old_len = np.concatenate([old.lengths(), np.zeros(n - old.n_users, dtype=np.int64)])
    new_len = new.lengths()
    indptr = np.concatenate([[0], np.cumsum(old_len + new_len)]).astype(np.int64)
    old_pos = np.repeat(indptr[:-1], old_len) + _ranks(old_len)
    new_pos = np.repeat(indptr[:-1] + old_len, new_len) + _ranks(new_len)
    tokens = np.zeros(indptr[-1], dtype=np.int64)
    tokens[old_pos], tokens[new_pos] = old.tokens, new.tokens
    times = None
    if old.times is not None and new.times is not None:
        times = np.zeros(indptr[-1], dtype=np.float64)
        times[old_pos], times[new_pos] = old.times, new.times
    return Sequences(tokens, indptr, times)


def _ranks(lengths: np.ndarray) -> np.ndarray:
    """0..len-1 for each length, concatenated."""
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def grow_module(model, n_items: int, new_rows: dict[str, np.ndarray] | None) -> None:
    """Rebuild the module for `n_items` items and copy every trained weight into it."""
    old = model.module_
    n_old = old.n_items
    module = model._build(n_items)
    if old.content is not None:
        from towerrec.towers.content import ItemContent

        rows = old.content.rows
        if new_rows is not None:
            rows.extend(new_rows)
        module.attach_content(ItemContent(TableSpec.from_json(model.content_spec_), rows.arrays(),
                                          model.config.embedding_dim))
    state, target = old.state_dict(), module.state_dict()
    for key, value in target.items():
        have = state[key]
        if key.startswith("content.rows."):                            # already the grown rows
            continue
        if key == "item_embedding.weight":
            extra = have.shape[0] - (n_old + 1)                        # special tokens after the items
            grown = torch.zeros_like(value)
            grown[:n_old + 1] = have[:n_old + 1]
            if extra:
                grown[value.shape[0] - extra:] = have[n_old + 1:]
            target[key] = grown
        elif have.shape == value.shape:
            target[key] = have
        else:
            raise TowerrecError(f"{model.name}: cannot grow weight {key!r} ({list(have.shape)} -> {list(value.shape)})")
    module.load_state_dict(target)
    model.module_ = module.eval()


def new_content_rows(model, delta: Delta, items: pd.DataFrame | None) -> dict[str, np.ndarray] | None:
    """Content rows of the new items when the model reads item content (else None)."""
    if not getattr(model, "content_spec_", None) or not len(delta.new_items):
        return None
    spec = ContentSpec(TableSpec.from_json(model.content_spec_), dict(getattr(model, "content_text_", None) or {}))
    ids = delta.item_map.ids[delta.n_items_before:]
    frame = pd.DataFrame({"item_id": ids})
    if items is not None:
        if "item_id" not in items.columns:
            raise TowerrecError(f"items: needs an item_id column; found {list(items.columns)}")
        frame = items[items["item_id"].astype(str).isin(set(ids))].drop_duplicates("item_id")
    return new_item_arrays(frame, spec, np.asarray(ids, dtype=object))


def new_windows(model, sequences: Sequences, old_lengths: np.ndarray, touched: np.ndarray) -> Windows:
    """Training windows of the touched users whose targets are new positions (older targets masked)."""
    seqs = sequences.take(touched)
    windows = model._training_windows(seqs)
    if windows.inputs is windows.targets:       # masked-item chunks (BERT4Rec): the model masks itself
        return windows
    old = np.concatenate([old_lengths, np.zeros(sequences.n_users - len(old_lengths), dtype=np.int64)])[touched]
    marks = Sequences(np.where(_ranks(seqs.lengths()) < np.repeat(old, seqs.lengths()), 1, 2), seqs.indptr)
    is_new = model._training_windows(marks).targets == 2       # same layout: lengths decide the windows
    targets = np.where(is_new, windows.targets, 0)
    keep = targets.any(axis=1)
    return Windows(windows.inputs[keep], targets[keep], windows.user_idx[keep],
                   None if windows.times is None else windows.times[keep])


def replay_windows(model, old: Sequences, n_targets: int, rng: np.random.Generator) -> Windows | None:
    """Windows of the old sequences, drawn at random until they hold about `n_targets` targets."""
    if n_targets <= 0 or old.n_users == 0:
        return None
    windows = model._training_windows(old)
    order = rng.permutation(len(windows))
    counts = np.count_nonzero(windows.targets[order], axis=1)
    take = order[:int(np.searchsorted(np.cumsum(counts), n_targets)) + 1]
    return Windows(windows.inputs[take], windows.targets[take], windows.user_idx[take],
                   None if windows.times is None else windows.times[take])


def concat(a: Windows, b: Windows | None) -> Windows:
    if b is None or len(b) == 0:
        return a
    width = max(a.inputs.shape[1], b.inputs.shape[1])

    def left_pad(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else np.pad(x, ((0, 0), (width - x.shape[1], 0)))

    times = None if a.times is None or b.times is None else np.concatenate([left_pad(a.times), left_pad(b.times)])
    return Windows(np.concatenate([left_pad(a.inputs), left_pad(b.inputs)]),
                   np.concatenate([left_pad(a.targets), left_pad(b.targets)]),
                   np.concatenate([a.user_idx, b.user_idx]), times)


def fine_tune(model, windows: Windows, options: FitOptions, seed: int) -> TrainResult | None:
    """A few passes over `windows` through the shared loop, from the current weights."""

    cfg = model.config
    if cfg.update.passes == 0 or len(windows) == 0:
        return None
    counts = np.bincount(model.seen_.indices, minlength=model.n_items).astype(np.float64)
    prob = np.concatenate([[0.0], counts / max(counts.sum(), 1.0)])
    batches = LengthBatches(windows, cfg.train.batch_size, seed)
    use_times = model.uses_time and windows.times is not None
    config = dataclasses.replace(cfg.update.train_config(cfg.train, batches.n_batches), batch_size=1)
    result = train(model.module_, n_samples=batches.n_batches,
                   make_batch=model._batcher(windows, batches, prob, use_times), config=config,
                   options=dataclasses.replace(options, seed=seed), desc=f"{model.name} update")
    model.module_.cpu().eval()
    return result


def update(model, delta: Delta, items: pd.DataFrame | None, options: FitOptions) -> TrainResult | None:
    """`SequentialRecommender._update`: sequences, item table, fine-tune."""
    cfg = model.config
    cfg.update.validate()
    old = model.sequences_
    if delta.rows.time is None and old.times is not None and len(delta.rows):
        raise TowerrecError(f"{model.name}: the model's sequences have times; the new rows need a time column too")
    model.sequences_ = append(old, Sequences.from_interactions(delta.rows))
    grow_module(model, model.n_items, new_content_rows(model, delta, items))
    touched = np.sort(delta.touched_users)
    windows = new_windows(model, model.sequences_, old.lengths(), touched)
    seed = options.seed + 7919 * (model.version + 1)
    n_new = int(np.count_nonzero(windows.targets))
    replay = replay_windows(model, old, cfg.update.n_replay(n_new, len(old.tokens), cfg.train.batch_size),
                            np.random.default_rng([seed, 0x5EED]))
    return fine_tune(model, concat(windows, replay), options, seed)
