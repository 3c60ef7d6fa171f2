"""Sequence encoders: causal (output t ignores later items), blind to left padding, and the
causal mask never leaves a row empty."""
from __future__ import annotations

import pytest
import torch

from towerrec.towers.sequence import (CausalConvEncoder, GRUEncoder, HSTUEncoder, TransformerEncoder,
                                      causal_mask)

DIM, L = 16, 8


def _encoders() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "gru": GRUEncoder(DIM, hidden=24),
        "cnn": CausalConvEncoder(DIM, kernel=3, dilations=(1, 2), blocks=2),
        "transformer-post": TransformerEncoder(DIM, L, blocks=2, heads=2, inner=32, norm_first=False),
        "transformer-pre": TransformerEncoder(DIM, L, blocks=2, heads=2, inner=32, norm_first=True),
        "hstu": HSTUEncoder(DIM, L, blocks=2, heads=2, time_buckets=8),
    }


def _run(enc: torch.nn.Module, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    if isinstance(enc, HSTUEncoder):
        times = torch.cumsum(torch.full(valid.shape, 3.0, dtype=torch.float64), dim=1)
        return enc(x, valid, times)
    return enc(x, valid)


@pytest.mark.parametrize("name", list(_encoders()))
def test_causal_and_shape(name):
    enc = _encoders()[name].eval()
    x = torch.randn(3, L, DIM)
    valid = torch.ones(3, L, dtype=torch.bool)
    valid[1, :3] = False
    x = x * valid[..., None]
    out = _run(enc, x, valid)
    assert out.shape == (3, L, DIM) and torch.isfinite(out).all()
    changed = x.clone()
    changed[:, 5:] = torch.randn(3, L - 5, DIM)
    out2 = _run(enc, changed, valid)
    assert torch.allclose(out[:, :5], out2[:, :5], atol=1e-5)      # the future does not leak
    assert not torch.allclose(out[:, 5:], out2[:, 5:], atol=1e-3)  # ... but it is read


@pytest.mark.parametrize("name", list(_encoders()))
def test_left_padding_does_not_change_the_state(name):
    enc = _encoders()[name].eval()
    items = torch.randn(2, 5, DIM)
    short = _run(enc, items, torch.ones(2, 5, dtype=torch.bool))
    padded_x = torch.cat([torch.zeros(2, L - 5, DIM), items], dim=1)
    valid = torch.cat([torch.zeros(2, L - 5, dtype=torch.bool), torch.ones(2, 5, dtype=torch.bool)], dim=1)
    padded = _run(enc, padded_x, valid)
    assert torch.allclose(short, padded[:, L - 5:], atol=1e-5)


def test_causal_mask_never_leaves_a_row_empty():
    valid = torch.tensor([[False, False, True, True]])
    mask = causal_mask(valid)[0, 0]
    assert mask.shape == (4, 4) and mask.any(dim=1).all()
    assert mask[3].tolist() == [False, False, True, True]
    assert mask[2].tolist() == [False, False, True, False]


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("causal", [True, False])
def test_transformer_last_state_alone_equals_the_full_pass(norm_first, causal):
    """`last=True` (what scoring reads) skips the last block's other queries: the same newest state."""
    torch.manual_seed(0)
    enc = TransformerEncoder(DIM, L, blocks=2, heads=2, inner=32, norm_first=norm_first, causal=causal).eval()
    x = torch.randn(3, L, DIM)
    valid = torch.ones(3, L, dtype=torch.bool)
    valid[1, :3] = False
    x = x * valid[..., None]
    with torch.no_grad():
        full, last = enc(x, valid), enc(x, valid, last=True)
    assert last.shape == (3, 1, DIM)
    assert torch.allclose(full[:, -1:], last, atol=1e-5)


def test_gru_last_state_alone_equals_the_full_pass():
    torch.manual_seed(0)
    enc = GRUEncoder(DIM, hidden=24).eval()
    x = torch.randn(3, L, DIM)
    valid = torch.ones(3, L, dtype=torch.bool)
    valid[1, :3] = False
    x = x * valid[..., None]
    with torch.no_grad():
        assert torch.allclose(enc(x, valid)[:, -1:], enc(x, valid, last=True), atol=1e-6)
