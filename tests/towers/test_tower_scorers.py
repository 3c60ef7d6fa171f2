import math

import pytest
import torch
from torch import nn

from towerrec.towers.mlp import MLP
from towerrec.towers.scorers import CosineScorer, DotScorer, MLPScorer, make_scorer
from towerrec.towers.tower import Tower
from towerrec.towers.features import IdEmbedding


def test_mlp_shapes_and_options():
    assert MLP(8, (), 4)(torch.randn(3, 8)).shape == (3, 4)
    mlp = MLP(8, (16, 16), 4, activation="relu", dropout=0.1, norm="layer")
    assert mlp(torch.randn(3, 8)).shape == (3, 4)
    assert any(isinstance(m, nn.LayerNorm) for m in mlp.modules())
    with pytest.raises(ValueError):
        MLP(8, (), 4, activation="nope")


def test_tower_concatenates_and_normalises():
    tower = Tower({"id": IdEmbedding(5, 3), "history": nn.Identity()}, MLP(5, (), 4), normalize=True)
    y = tower({"id": torch.tensor([1, 2]), "history": torch.randn(2, 2)})
    assert y.shape == (2, 4)
    assert torch.allclose(y.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError):
        Tower({}, MLP(1, (), 1))


def test_residual_tower_adds_the_id_row_to_the_mlp_of_the_other_inputs():
    torch.manual_seed(0)
    ids, mlp = IdEmbedding(5, 4), MLP(2, (), 4)
    tower = Tower({"id": ids, "features": nn.Identity()}, mlp, residual="id")
    idx, feats = torch.tensor([1, 3]), torch.randn(2, 2)
    want = ids(idx) + mlp(feats)
    assert torch.allclose(tower({"id": idx, "features": feats}), want, atol=1e-6)
    one = {"id": ids(idx[:1]), "features": feats}             # explanations: a shared one-row id part
    assert torch.allclose(tower.head(one), ids(idx[:1]) + mlp(feats), atol=1e-6)
    alone = Tower({"id": ids}, None, residual="id")           # the id row itself: free matrix-factorisation rows
    assert torch.equal(alone({"id": idx}), ids(idx))
    with pytest.raises(ValueError, match="residual input"):
        Tower({"id": ids}, mlp, residual="features")
    with pytest.raises(ValueError, match="without an MLP"):
        Tower({"id": ids, "features": nn.Identity()}, None, residual="id")


@pytest.mark.parametrize("hidden", [(), (16,)])
def test_head_with_shared_one_row_inputs_equals_the_expanded_concatenation(hidden):
    torch.manual_seed(0)
    tower = Tower({"id": IdEmbedding(5, 3), "features": nn.Identity(), "history": nn.Identity()},
                  MLP(3 + 2 + 4, hidden, 6, norm="layer" if hidden else "none")).eval()
    encoded = {"id": torch.randn(1, 3), "features": torch.randn(1, 2), "history": torch.randn(7, 4)}
    expanded = {key: v.expand(7, -1) for key, v in encoded.items()}
    with torch.no_grad():
        want = tower.mlp(torch.cat([expanded[k] for k in ("id", "features", "history")], dim=1))
        assert torch.allclose(tower.head(encoded), want, atol=1e-6)
        assert torch.allclose(tower.head(expanded), want, atol=1e-6)
        one = {key: v[:1] for key, v in encoded.items()}
        assert torch.allclose(tower.head(one), want[:1], atol=1e-6)


def test_dot_and_cosine_scorers_agree_with_formula():
    y, z = torch.randn(3, 4), torch.randn(5, 4)
    assert torch.allclose(DotScorer()(y, z), y @ z.T, atol=1e-5)
    cos = CosineScorer(0.1)
    expected = torch.nn.functional.cosine_similarity(y[:, None], z[None], dim=-1) / 0.1
    assert torch.allclose(cos(y, z), expected, atol=1e-4)
    assert torch.allclose(cos.pair(y, z[:3]), expected.diagonal()[:3], atol=1e-4)
    assert not any(p.requires_grad for p in cos.parameters())


def test_learnable_temperature_gets_gradient_and_is_clamped():
    cos = CosineScorer(0.05, learnable=True)
    cos(torch.randn(2, 3), torch.randn(4, 3)).sum().backward()
    assert cos.log_temperature.grad is not None
    with torch.no_grad():
        cos.log_temperature.fill_(math.log(1e-6))
    assert cos.temperature.item() == pytest.approx(0.01)


def test_mlp_scorer_all_pairs_equals_pairwise_and_has_no_index():
    s = MLPScorer(4, chunk=2)
    y, z = torch.randn(3, 4), torch.randn(5, 4)
    full = s(y, z)
    assert full.shape == (3, 5)
    assert torch.allclose(full[1, 4], s.pair(y[1:2], z[4:5])[0], atol=1e-5)
    assert not s.supports_index and CosineScorer().supports_index
    with pytest.raises(ValueError):
        make_scorer("bilinear", 4)
