"""A configurable multilayer perceptron, the top of every tower."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from towerrec.towers.dropout import Dropout

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
NORMS = ("none", "layer", "batch")


class MLP(nn.Module):
    """Linear -> norm -> activation -> dropout per hidden width, then a linear output layer.

    forward: [b, in_dim] -> [b, out_dim]. With no hidden widths it is a single linear map.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, *, activation: str = "gelu",
                 dropout: float = 0.0, norm: str = "none") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if norm == "layer":
                layers.append(nn.LayerNorm(h))
            elif norm == "batch":
                layers.append(nn.BatchNorm1d(h))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
