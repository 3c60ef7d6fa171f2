"""The `lightgcn` preset: cf whose ids are a LightGCN propagation (towers/graph.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from towerrec.errors import TowerrecError
from towerrec.models import MODELS
from towerrec.models.two_tower import TwoTower, TwoTowerConfig
from towerrec.splits import random_split

from test_two_tower import ITEMS_PER_GENRE, OPTIONS, _fit, _TwoTowerContract


class TestLightGCNContract(_TwoTowerContract):
    preset = "lightgcn"


def test_preset_is_graph_cf():
    model = MODELS["lightgcn"](epochs=2)
    assert model.config.id_encoder == "lightgcn" and model.config.history == "none"
    with pytest.raises(TowerrecError, match="lightgcn"):
        TwoTower(TwoTowerConfig.for_preset("lightgcn", hash_buckets=64)).fit(
            random_split(_tiny(), seed=0).train, options=OPTIONS)


def _tiny():
    from contract import block_data

    return block_data(3, 6, 5).train


def test_learns_the_genres_and_layers_matter(data):
    """Fitted on the genre log it ranks the user's genre first; the propagated table is the mean
    of the layers, so with 0 layers the user vector is the ego embedding itself."""
    inter, users, items, uf, itf = data
    split = random_split(inter, seed=0)
    model = _fit("lightgcn", split.train, uf, itf, valid=split.valid)
    recs = model.recommend(["u0"], k=5)
    assert np.mean([int(str(i)[1:]) // ITEMS_PER_GENRE == 0 for i in recs.item_ids[0]]) >= 0.8, recs.item_ids
    flat = _fit("lightgcn", split.train, uf, itf, graph_layers=0, epochs=1)
    g = flat.module_.graph
    assert torch.allclose(g.final, g.ego.detach())
    deep = model.module_.graph
    assert not torch.allclose(deep.final, deep.ego.detach())


def test_loaded_model_needs_no_graph(tmp_path, data):
    inter, users, items, uf, itf = data
    model = _fit("lightgcn", inter, uf, itf, epochs=2)
    assert model.module_.graph.adjacency is None         # the fitted model keeps `final`, not the graph
    path = model.save(tmp_path / "m")
    loaded = TwoTower.load(path)
    users_ = inter.user_map.ids[:5]
    assert np.allclose(loaded.score(users_, inter.item_map.ids[:5]), model.score(users_, inter.item_map.ids[:5]),
                       atol=1e-6)
