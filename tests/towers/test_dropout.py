import pytest
import torch

from towerrec.towers.dropout import Dropout


def test_dropout_zeroes_p_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(400, 500, requires_grad=True)
    drop = Dropout(0.3).train()
    y = drop(x)
    zero = (y == 0).float().mean().item()
    assert zero == pytest.approx(0.3, abs=0.005)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)                   # scaled by 1 / (1 - p)
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / 0.7)]
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)                                   # gradient through kept entries only


def test_dropout_is_identity_in_eval_and_at_zero():
    x = torch.randn(8, 4)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)
