"""A configurable multilayer perceptron, the top of every tower."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from towerrec.towers.dropout import Dropout

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
NORMS = ("none", "layer", "batch")


class MLP(nn.Module):
    """Linear -> norm -> activation -> dropout per hidden width, then a linear output layer.

    forward: [b, in_dim] -> [b, out_dim]. With no hidden widths it is a single linear map; `out_bias`
    False leaves the output layer without a bias, `zero_output` starts it at zero; `input_activation`
    first adds a bias to the input
    and applies the activation (the input is then a linear layer's output computed elsewhere, as a
    pooled history of free item rows: Mult-VAE's first encoder layer).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, *, activation: str = "gelu",
                 dropout: float = 0.0, norm: str = "none", out_bias: bool = True,
                 input_activation: bool = False, zero_output: bool = False) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        layers: list[nn.Module] = [InputActivation(in_dim, ACTIVATIONS[activation]())] if input_activation else []
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
        layers.append(nn.Linear(width, out_dim, bias=out_bias))
        if zero_output:       # a residual branch that adds nothing until training moves it
            nn.init.zeros_(layers[-1].weight)
            if out_bias:
                nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """`forward` of the concatenation of `parts` ([b_k, d_k] each, b_k = 1 or b: a one-row part is
        shared by every row) -> [b, out_dim]. The first layer is linear, so a shared part goes through
        it once, not b times: explanations score hundreds of variants that differ in one input."""
        b = max(p.shape[0] for p in parts)
        if len(parts) == 1:   # nothing to concatenate (a copy of the input and its backward saved)
            return self.net(parts[0])
        first = self.net[0]
        if b == 1 or all(p.shape[0] == b for p in parts) or not isinstance(first, nn.Linear):
            return self.net(torch.cat([p.expand(b, -1) for p in parts], dim=1))
        shared, per_row, start = first.bias, None, 0
        for p in parts:
            z = F.linear(p, first.weight[:, start:start + p.shape[1]].contiguous())
            start += p.shape[1]
            if p.shape[0] == b:
                per_row = z if per_row is None else per_row + z
            else:
                shared = z if shared is None else shared + z
        h = per_row if shared is None else per_row + shared
        return self.net[1:](h)


class InputActivation(nn.Module):
    """act(x + b): the bias and activation of a linear layer whose product was computed upstream."""

    def __init__(self, dim: int, activation: nn.Module) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x + self.bias)
