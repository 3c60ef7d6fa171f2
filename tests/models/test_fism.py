"""The `fism` preset: the user vector is the pooled free rows of the user's items (FISM), no user ids."""
from __future__ import annotations

import numpy as np

from towerrec.models import MODELS
from towerrec.splits import random_split

from test_two_tower import ITEMS_PER_GENRE, _fit, _TwoTowerContract


class TestFISMContract(_TwoTowerContract):
    preset = "fism"


def test_preset_reads_item_ids_only():
    c = MODELS["fism"](epochs=2).config
    assert not c.user_ids and not c.user_features and c.history == "norm" and c.history_ids
    assert not c.history_features and not c.item_features and c.text == "none" and not c.id_projection
    assert c.history_dropout > 0 and c.sampling == "pairs"


def _genre(item: object) -> int:
    return int(str(item)[1:]) // ITEMS_PER_GENRE


def test_learns_the_genres_and_serves_a_new_user_from_items(data):
    """Fitted on the genre log it ranks a user's own genre first; a user who is not in the log is
    served from three items of genre 2 alone, with no refit, and gets genre 2."""
    inter, users, items, uf, itf = data
    split = random_split(inter, seed=0)
    model = _fit("fism", split.train, uf, itf, valid=split.valid, epochs=20)
    recs = model.recommend(["u0", "u7"], k=5)
    share = np.mean([_genre(i) == 0 for i in recs.item_ids[0]] + [_genre(i) == 2 for i in recs.item_ids[1]])
    assert share >= 0.8, recs.item_ids
    history = [f"i{2 * ITEMS_PER_GENRE + j}" for j in range(3)]
    new = model.recommend(history=history, k=5)
    assert new.fallback == ["history"]
    assert np.mean([_genre(i) == 2 for i in new.item_ids[0]]) >= 0.8, new.item_ids


def test_no_user_table(data):
    """No parameter grows with the number of users: the tables are the item rows (targets and
    history) and the user side is one linear layer."""
    inter, users, items, uf, itf = data
    model = _fit("fism", inter, uf, itf, epochs=1)
    n_users, n_items = len(inter.user_map.ids), len(inter.item_map.ids)
    assert n_users != n_items
    shapes = {name: tuple(p.shape) for name, p in model.module_.named_parameters()}
    assert all(s[0] not in (n_users, n_users + 1) for s in shapes.values()), shapes
    assert sum(s[0] == n_items + 1 for s in shapes.values()) == 2, shapes     # + the unknown row
