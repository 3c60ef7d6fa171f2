"""A tower: named input encoders, concatenated, an MLP on top, optional L2 normalisation."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Tower(nn.Module):
    """y = normalize(MLP(concat_k encoder_k(x[k]))).

    `inputs` maps a key of the input dict to the module that encodes it (an `IdEmbedding` for
    "id", a `TableEncoder` for "features", `nn.Identity` for an already pooled "history", ...).
    Each encoder returns [b, d_k]; `mlp` maps [b, sum d_k] -> [b, dim].

    forward: {key: input} -> [b, dim]
    """

    def __init__(self, inputs: dict[str, nn.Module], mlp: nn.Module, *, normalize: bool = False) -> None:
        super().__init__()
        if not inputs:
            raise ValueError("a tower needs at least one input")
        self.inputs = nn.ModuleDict(inputs)
        self.mlp = mlp
        self.normalize = normalize

    def forward(self, x: dict) -> torch.Tensor:
        return self.head({key: enc(x[key]) for key, enc in self.inputs.items()})

    def head(self, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        """The MLP (and normalisation) on already encoded inputs {key: [b, d_k]}; an input of one row
        is shared by all b rows (explanations encode what their variants have in common once)."""
        parts = [encoded[key] for key in self.inputs]
        if hasattr(self.mlp, "forward_parts"):
            y = self.mlp.forward_parts(parts)
        else:
            b = max(p.shape[0] for p in parts)
            y = self.mlp(torch.cat([p.expand(b, -1) for p in parts], dim=1))
        return F.normalize(y, dim=-1) if self.normalize else y
