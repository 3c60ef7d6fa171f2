"""The `multvae` preset: Mult-VAE as a variational user tower over the history bag."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from towerrec.models import MODELS
from towerrec.models.two_tower import TwoTowerConfig, TwoTowerModule
from towerrec.splits import random_split

from test_two_tower import ITEMS_PER_GENRE, _fit, _TwoTowerContract


class TestMultVAEContract(_TwoTowerContract):
    preset = "multvae"


def test_preset():
    c = MODELS["multvae"](epochs=2).config
    assert c.variational and c.history == "norm" and c.user_targets == "all" and c.sampling == "users"
    assert not c.user_ids and c.scorer == "dot" and c.loss == "full_softmax"


def test_learns_the_genres(data):
    inter, users, items, uf, itf = data
    split = random_split(inter, seed=0)
    model = _fit("multvae", split.train, uf, itf, valid=split.valid, epochs=30, users_per_batch=16,
                 kl_anneal_steps=50)
    recs = model.recommend(["u0", "u7"], k=5)
    genre = lambda i: int(str(i)[1:]) // ITEMS_PER_GENRE                       # noqa: E731
    share = np.mean([genre(i) == 0 for i in recs.item_ids[0]] + [genre(i) == 2 for i in recs.item_ids[1]])
    assert share >= 0.8, recs.item_ids


def _module(**overrides):
    from towerrec.towers.features import TableSpec

    # the earlier shape (projected rows, an MLP) unless `overrides` say otherwise
    c = TwoTowerConfig.for_preset("multvae", **{"embedding_dim": 6, "id_dim": 6, "hidden": (8,), "id_projection": True,
                                                "input_activation": False, "item_bias": False, "latent_dim": 0,
                                                **overrides})
    return TwoTowerModule(c, n_user_ids=3, n_item_ids=5, user_code=np.arange(1, 4), item_code=np.array([1, 2, 3, 4, 0]),
                          user_spec=TableSpec(), item_spec=TableSpec(), user_arrays=None, item_arrays=None)


_HISTORY = {"items": torch.tensor([0, 1, 3]), "inverse": torch.tensor([0, 1, 2]), "offsets": torch.tensor([0, 2]),
            "weights": torch.ones(3)}


def test_sampling_only_in_training_and_kl_annealed():
    """Training draws z around mu and records the KL; eval returns mu (deterministic); the KL
    weight grows linearly to kl_weight over kl_anneal_steps."""
    m = _module(embedding_dim=4, id_dim=4, kl_weight=0.2, kl_anneal_steps=10)
    users = torch.tensor([0, 1])
    m.eval()
    a, b = m.user_vectors(users, _HISTORY), m.user_vectors(users, _HISTORY)
    assert torch.equal(a, b) and a.shape == (2, 4)
    m.train()
    torch.manual_seed(0)
    z = m.user_vectors(users, _HISTORY)
    assert not torch.allclose(z, a) and m._kl is not None and (m._kl >= 0).all()
    m.steps.fill_(5)
    kl_sum = float(m._kl.detach().sum())
    assert abs(float(m._kl_term(2).detach()) - 0.2 * 0.5 * kl_sum / 2) < 1e-6
    assert m._kl is None        # used once


def test_decoder_layer_and_item_offsets_keep_scores_inner_products():
    """latent_dim: z [2 x latent] from the user tower, a decoder layer to the embedding; item_bias: a 1
    column on users and each item's offset on items, so u . v is the decoder's output with its bias."""
    m = _module(latent_dim=3, item_bias=True).eval()
    assert m.user_tower.mlp.out_dim == 2 * 3
    with torch.no_grad():
        m.item_bias.embedding.weight[1:, 0] = torch.tensor([0.5, -1.0, 2.0, 3.0, 4.0])
        u = m.user_vectors(torch.tensor([0, 1]), _HISTORY)
        v = m.item_vectors(torch.arange(5))
        mu = m.user_tower({"history": m.pool(m.history_tower(m._item_input(m.history_tower, _HISTORY["items"])),
                                             _HISTORY["inverse"], _HISTORY["offsets"], _HISTORY["weights"])})[:, :3]
        decoded = m.user_decoder(mu)
    assert u.shape == (2, 7) and v.shape == (5, 7)
    assert torch.equal(u[:, -1], torch.ones(2)) and torch.allclose(u[:, :6], decoded)
    # the last item has no trained id (code 0): no offset
    assert torch.allclose(v[:, -1], torch.tensor([0.5, -1.0, 2.0, 3.0, 0.0]))
    scores = m.scorer(u, v)
    assert torch.allclose(scores, decoded @ v[:, :6].T + v[:, -1])


def test_history_projection_without_bias_under_norm_pooling():
    assert _history_projection_bias(_module(history_bias=False)) is None
    assert _history_projection_bias(_module(history_bias=True)) is not None


def _history_projection_bias(m):
    return m.history_tower.mlp.net[-1].bias


@pytest.mark.parametrize("overrides, message", [
    ({"latent_dim": 4, "variational": False}, "latent_dim must be >= 0, and > 0 needs variational=True"),
    ({"latent_dim": -1}, "latent_dim must be >= 0"),
    ({"item_bias": True, "scorer": "cosine"}, "item_bias=True needs scorer='dot'"),
    ({"item_bias": True, "item_ids": False, "item_features": True}, "item_bias=True needs"),
])
def test_settings_that_do_not_go_together(overrides, message):
    from towerrec.errors import TowerrecError

    with pytest.raises(TowerrecError, match=message):
        TwoTowerConfig.for_preset("multvae", **overrides).validate()


def test_item_linear_makes_the_item_tower_one_linear_layer():
    """Mult-VAE's output layer is a free row per item: `item_linear` drops the item tower's hidden
    layers while the user tower keeps `hidden`."""
    layers = lambda mlp: [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]   # noqa: E731
    plain, linear = _module(), _module(item_linear=True)
    assert len(layers(plain.item_tower.mlp)) == 2 and len(layers(linear.item_tower.mlp)) == 1
    assert len(layers(linear.user_tower.mlp)) == 2


@pytest.mark.parametrize("weighting", ["uniform", "activity"])
def test_user_weighting_repeats_users_by_their_training_rows(data, weighting):
    """"activity": an epoch holds each user once per training row (RecBole's Mult-VAE batches rows
    of the log); "uniform": each user once."""
    from towerrec.models.two_tower.batches import UserBatches

    inter = data[0]
    batches = UserBatches(inter, inter.to_csr(), TwoTowerConfig.for_preset("multvae", user_weighting=weighting))
    counts = inter.user_counts()
    every = np.arange(batches.n_samples)
    users = batches(every, np.random.default_rng(0))["user_idx"].numpy()
    expected = counts if weighting == "activity" else (counts > 0).astype(int)
    assert batches.n_samples == expected.sum()
    assert np.array_equal(np.bincount(users, minlength=len(counts)), expected)


def test_user_weighting_is_checked():
    from towerrec.errors import TowerrecError

    with pytest.raises(TowerrecError, match="user_weighting must be 'uniform' or 'activity'"):
        TwoTowerConfig.for_preset("multvae", user_weighting="heavy").validate()


def test_free_rows_are_the_item_vectors_and_the_history_input():
    """id_projection=False: the item tower and the history's item encoder are the id rows themselves
    (Mult-VAE's output and input layers), not a linear map of them; it needs id_dim == embedding_dim."""
    from towerrec.errors import TowerrecError

    m = _module(id_projection=False, hidden=(), item_bias=False).eval()
    assert isinstance(m.item_tower.mlp, torch.nn.Identity) and isinstance(m.history_tower.mlp, torch.nn.Identity)
    rows = m.item_tower.inputs["id"].embedding.weight
    assert torch.equal(m.item_vectors(torch.arange(4)), rows[1:5])
    with pytest.raises(TowerrecError, match="id_projection=False .* needs id_dim == embedding_dim"):
        TwoTowerConfig.for_preset("multvae", id_dim=32).validate()


def test_input_activation_is_the_first_encoder_layer():
    """input_activation: the user tower computes W2 tanh(x + b) of the pooled free rows x = sum / sqrt(n)
    of the history's rows, i.e. Mult-VAE's encoder tanh(W1 x + b) -> W2 on the normalised multi-hot."""
    from towerrec.towers.mlp import InputActivation

    m = _module(id_projection=False, input_activation=True, hidden=(), latent_dim=3).eval()
    first, out = m.user_tower.mlp.net[0], m.user_tower.mlp.net[-1]
    assert isinstance(first, InputActivation)
    with torch.no_grad():
        first.bias.copy_(torch.linspace(-1, 1, 6))
        rows = m.history_tower.inputs["id"].embedding.weight
        user0 = (rows[1] + rows[2]) / 2 ** 0.5                       # user 0's history: items 0 and 1
        expected = out(torch.tanh(user0 + first.bias))[:3]           # the mean half of [mu, log-variance]
        got = m.user_tower({"history": m.pool(m.history_tower(m._item_input(m.history_tower, _HISTORY["items"])),
                                               _HISTORY["inverse"], _HISTORY["offsets"], _HISTORY["weights"])})
    assert torch.allclose(got[0, :3], expected, atol=1e-6)


def test_input_dropout_is_inverted(data):
    """The kept history entries weigh 1 / (1 - holdout), so the norm-pooled input has, in expectation,
    the sum it has at scoring time (every entry, weight 1), as with nn.Dropout on the multi-hot."""
    from towerrec.models.two_tower.batches import UserBatches

    inter = data[0]
    batches = UserBatches(inter, inter.to_csr(), TwoTowerConfig.for_preset("multvae", holdout=0.25))
    weights = batches(np.arange(batches.n_samples), np.random.default_rng(0))["history"]["weights"].numpy()
    kept = weights > 0
    assert np.allclose(weights[kept], 1 / 0.75) and 0.65 < kept.mean() < 0.85
