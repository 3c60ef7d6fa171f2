"""Scoring functions f(y, z) between user vectors y and item vectors z.

Every scorer gives all pairs, forward(y [B, d], z [M, d]) -> [B, M], and matched pairs,
pair(y [B, d], z [B, d]) -> [B]. `supports_index` says whether top-k can use an inner-product
(ANN) index: true for dot and cosine (normalise, then inner product), false for the MLP scorer,
which must score every (user, item) pair and so cannot be served from an ANN index.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class DotScorer(nn.Module):
    """f(y, z) = y . z / temperature (temperature fixed; 1 gives the plain dot product)."""

    supports_index = True

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return y @ z.T / self.temperature

    def pair(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return (y * z).sum(-1) / self.temperature

    def prepare(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def query(self, y: torch.Tensor) -> torch.Tensor:
        """User vectors such that query(y) @ prepare(z).T == forward(y, z): an inner-product index
        over prepared items then returns the model's own scores."""
        return y / self.temperature


class CosineScorer(nn.Module):
    """f(y, z) = cos(y, z) / tau, tau fixed or learnt (log-parametrised, clamped to [0.01, 1])."""

    supports_index = True

    def __init__(self, temperature: float = 0.05, learnable: bool = False) -> None:
        super().__init__()
        log_t = torch.tensor(math.log(temperature))
        if learnable:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.clamp(math.log(0.01), 0.0).exp()

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(y, dim=-1) @ F.normalize(z, dim=-1).T / self.temperature

    def pair(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return (F.normalize(y, dim=-1) * F.normalize(z, dim=-1)).sum(-1) / self.temperature

    def prepare(self, z: torch.Tensor) -> torch.Tensor:
        """Item vectors ready for an inner-product index (unit norm)."""
        return F.normalize(z, dim=-1)

    def query(self, y: torch.Tensor) -> torch.Tensor:
        """Unit user vectors scaled by 1/tau: their inner product with prepared items is forward(y, z)."""
        return F.normalize(y, dim=-1) / self.temperature


class MLPScorer(nn.Module):
    """f(y, z) = MLP([y, z, y * z]). More expressive, but not servable from an ANN index: every
    pair goes through the MLP, so full ranking costs B x M MLP calls (done in item chunks)."""

    supports_index = False

    def __init__(self, dim: int, hidden: int = 64, chunk: int = 4096) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.chunk = chunk

    def pair(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([y, z, y * z], dim=-1)).squeeze(-1)

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, z.shape[0], self.chunk):
            zc = z[s:s + self.chunk]
            yy = y[:, None, :].expand(-1, zc.shape[0], -1)
            zz = zc[None, :, :].expand(y.shape[0], -1, -1)
            out.append(self.pair(yy, zz))
        return torch.cat(out, dim=1)

    def prepare(self, z: torch.Tensor) -> torch.Tensor:
        return z


def make_scorer(kind: str, dim: int, *, temperature: float = 0.05, learnable: bool = False) -> nn.Module:
    """"dot", "cosine" or "mlp"."""
    if kind == "dot":
        return DotScorer(temperature)
    if kind == "cosine":
        return CosineScorer(temperature, learnable)
    if kind == "mlp":
        return MLPScorer(dim)
    raise ValueError(f"scorer must be 'dot', 'cosine' or 'mlp', got {kind!r}")
