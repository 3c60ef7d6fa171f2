"""Training options of the two-tower model added for accuracy: SimpleX's cosine contrastive loss,
cross-batch negatives, smoothed popularity negatives, per-batch id L2, and their config errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from towerrec.errors import TowerrecError
from towerrec.models.losses import ccl, negative_probabilities
from towerrec.models.two_tower import TwoTowerConfig, TwoTowerModule
from towerrec.splits import random_split
from towerrec.towers.features import TableSpec

from test_two_tower import ITEMS_PER_GENRE, _fit


@pytest.mark.parametrize("preset,kw", [("cf", {"loss": "ccl", "negatives": 32, "margin": 0.3, "negative_weight": 2.0, "epochs": 25}),
                                       ("cf", {"negative_memory": 64}),
                                       ("cf", {"negatives": 32, "negative_sampler": "popularity",
                                               "popularity_alpha": 0.75}),
                                       ("cf", {"id_l2": 1e-3}),
                                       ("hybrid", {"id_residual": True, "hidden": (), "history": "none", "text": "none"}),
                                       ("lightgcn", {"id_l2": 1e-3, "negatives": 16})])
def test_learns_the_genres(data, preset, kw):
    inter, users, items, uf, itf = data
    split = random_split(inter, seed=0)
    model = _fit(preset, split.train, uf, itf, valid=split.valid, **kw)
    recs = model.recommend(["u0", "u7"], k=5)
    genre = lambda i: int(str(i)[1:]) // ITEMS_PER_GENRE                       # noqa: E731
    share = np.mean([genre(i) == 0 for i in recs.item_ids[0]] + [genre(i) == 2 for i in recs.item_ids[1]])
    assert share >= 0.8, (kw, recs.item_ids)


def test_ccl_by_hand():
    positive = torch.tensor([0.9, 0.2])
    negative = torch.tensor([[0.9, 0.5, 0.1], [0.6, 0.3, 0.45]])
    weight = torch.tensor([[0.0, 1.0, 1.0], [2.0, 1.0, 0.0]])       # own item out; multiplicities
    # row 0: 0.1 + 2 * (max(0, .5-.4) * 1 + 0) / 2 = 0.2; row 1: 0.8 + 2 * (0.2 * 2 + 0) / 3
    expected = ((0.1 + 2 * 0.1 / 2) + (0.8 + 2 * 0.4 / 3)) / 2
    assert abs(float(ccl(positive, negative, weight, margin=0.4, negative_weight=2.0)) - expected) < 1e-6


def test_negative_probabilities():
    counts = np.array([4.0, 1.0, 0.0, 9.0])
    assert np.allclose(negative_probabilities(counts, "uniform"), [1 / 3, 1 / 3, 0, 1 / 3])
    assert np.allclose(negative_probabilities(counts, "popularity", 1.0), counts / 14)
    p = negative_probabilities(counts, "popularity", 0.5)
    assert np.allclose(p, np.array([2, 1, 0, 3]) / 6)


def _module(**kw) -> TwoTowerModule:
    c = TwoTowerConfig.for_preset("cf", embedding_dim=4, id_dim=4, **kw)
    return TwoTowerModule(c, n_user_ids=4, n_item_ids=6, user_code=np.arange(1, 5), item_code=np.arange(1, 7),
                          user_spec=TableSpec(), item_spec=TableSpec(), user_arrays=None, item_arrays=None)


def test_memory_ring_and_masking():
    m = _module(negative_memory=3)
    m.train()
    batch = {"user_idx": torch.tensor([0, 1]), "item_idx": torch.tensor([2, 5])}
    m.compute_loss(batch)
    assert sorted(m.memory_items.tolist()) == [-1, 2, 5]
    logits = m._memory_logits(m.user_vectors(torch.tensor([0, 1])), torch.tensor([2, 1]))
    items = m.memory_items
    assert torch.isinf(logits[0][items == 2]).all() and torch.isinf(logits[:, items == -1]).all()
    assert torch.isfinite(logits[1][items >= 0]).all()
    m.compute_loss({"user_idx": torch.tensor([2, 3]), "item_idx": torch.tensor([0, 1])})
    assert sorted(m.memory_items.tolist()) == [0, 1, 5]              # the oldest (2) went out first


def test_id_l2_adds_the_mean_squared_norm():
    torch.manual_seed(0)
    plain, reg = _module(), _module(id_l2=0.5)
    reg.load_state_dict(plain.state_dict())
    batch = {"user_idx": torch.tensor([0, 1, 3]), "item_idx": torch.tensor([2, 5, 0])}
    plain.eval(), reg.eval()
    u = plain.user_tower.inputs["id"](plain.user_code[batch["user_idx"]])
    i = plain.item_tower.inputs["id"](plain.item_code[batch["item_idx"]])
    penalty = u.pow(2).sum(-1).mean() + i.pow(2).sum(-1).mean()
    diff = reg.compute_loss(batch) - plain.compute_loss(batch)
    assert abs(diff.item() - 0.5 * penalty.item()) < 1e-5


def test_id_residual_towers_are_the_id_row_plus_the_features(data):
    """hybrid's towers under id_residual: the free id row + one linear layer of the other inputs;
    with that layer at zero the towers are cf's free rows exactly."""
    inter, users, items, uf, itf = data
    model = _fit("hybrid", inter, uf, itf, epochs=1, hidden=(), history="none", text="none", id_residual=True)
    m = model.module_.eval()
    for tower in (m.user_tower, m.item_tower):
        assert tower.residual == "id" and list(tower.inputs) == ["id", "features"]
        torch.nn.init.zeros_(tower.mlp.net[0].weight), torch.nn.init.zeros_(tower.mlp.net[0].bias)
    idx = torch.arange(5)
    with torch.no_grad():
        assert torch.equal(m.user_vectors(idx), m.user_tower.inputs["id"](m.user_code[idx]))
        assert torch.equal(m.item_vectors(idx), m.item_tower.inputs["id"](m.item_code[idx]))


@pytest.mark.parametrize("hidden", [(), (16,)])
def test_id_residual_towers_start_as_cf_free_rows(data, hidden):
    """`residual_zero_init` (the default): before any step the features' MLP adds nothing, so each
    tower is its id row; with PyTorch's init (`residual_zero_init=False`) the features move it."""
    inter, users, items, uf, itf = data
    idx = torch.arange(5)
    for zero in (True, False):   # one step at a negligible learning rate: the towers as initialised
        model = _fit("hybrid", inter, uf, itf, epochs=1, steps_per_epoch=1, learning_rate=1e-12, hidden=hidden,
                     history="none", text="none", id_residual=True, residual_zero_init=zero, dropout=0.0)
        m = model.module_.eval()
        with torch.no_grad():
            for vectors, rows in ((m.item_vectors(idx), m.item_tower.inputs["id"](m.item_code[idx])),
                                  (m.user_vectors(idx), m.user_tower.inputs["id"](m.user_code[idx]))):
                assert torch.allclose(vectors, rows, atol=1e-6) == zero, (zero, hidden)


@pytest.mark.parametrize("kw,match", [({"loss": "ccl", "scorer": "dot"}, "ccl"),
                                      ({"negative_memory": 16, "loss": "bpr"}, "negative_memory"),
                                      ({"id_encoder": "gcn"}, "id_encoder"),
                                      ({"negative_sampler": "zipf"}, "negative_sampler"),
                                      ({"user_targets": "some"}, "user_targets"),
                                      ({"id_residual": True, "id_dim": 32}, "id_residual"),
                                      ({"id_residual": True, "user_ids": False, "item_ids": False}, "neither tower")])
def test_bad_configs_are_one_line_errors(kw, match):
    with pytest.raises(TowerrecError, match=match):
        TwoTowerConfig.for_preset("cf", **kw).validate()
