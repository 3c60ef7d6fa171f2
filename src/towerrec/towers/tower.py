"""A tower: named input encoders, concatenated, an MLP on top (plus, optionally, one input added to
its output), optional L2 normalisation."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Tower(nn.Module):
    """y = normalize(MLP(concat_k encoder_k(x[k]))), or with `residual` = r:
    y = normalize(encoder_r(x[r]) + MLP(concat_{k != r} encoder_k(x[k]))).

    `inputs` maps a key of the input dict to the module that encodes it (an `IdEmbedding` for
    "id", a `TableEncoder` for "features", `nn.Identity` for an already pooled "history", ...).
    Each encoder returns [b, d_k]; `mlp` maps [b, sum d_k] -> [b, dim] (None when `residual` is the
    only input). A residual id row makes a hybrid tower nest matrix factorisation: the features
    add to a free vector per id instead of sharing one projection with it.

    forward: {key: input} -> [b, dim]
    """

    def __init__(self, inputs: dict[str, nn.Module], mlp: nn.Module | None, *, normalize: bool = False,
                 residual: str | None = None) -> None:
        super().__init__()
        if not inputs:
            raise ValueError("a tower needs at least one input")
        if residual is not None and residual not in inputs:
            raise ValueError(f"the residual input {residual!r} is not one of the tower's inputs {list(inputs)}")
        if mlp is None and list(inputs) != [residual]:
            raise ValueError("a tower without an MLP reads its residual input alone")
        self.inputs = nn.ModuleDict(inputs)
        self.mlp = mlp
        self.normalize = normalize
        self.residual = residual

    def forward(self, x: dict) -> torch.Tensor:
        return self.head({key: enc(x[key]) for key, enc in self.inputs.items()})

    def affine(self) -> nn.Linear | None:
        """The tower's map when it is one affine layer over the concatenated inputs (no residual,
        no normalisation, an MLP without hidden layers): what `encode` then feeds."""
        net = getattr(self.mlp, "net", None)
        if self.residual is not None or self.normalize or net is None or len(net) != 1:
            return None
        return net[0] if isinstance(net[0], nn.Linear) else None

    def encode(self, x: dict) -> torch.Tensor:
        """The concatenated encoder outputs [b, sum d_k], in the order the MLP reads them."""
        parts = [enc(x[key]) for key, enc in self.inputs.items()]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def head(self, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        """The MLP (and normalisation) on already encoded inputs {key: [b, d_k]}; an input of one row
        is shared by all b rows (explanations encode what their variants have in common once)."""
        parts = [encoded[key] for key in self.inputs if key != self.residual]
        if not parts:
            y = encoded[self.residual]
        elif hasattr(self.mlp, "forward_parts"):
            y = self.mlp.forward_parts(parts)
        else:
            b = max(p.shape[0] for p in parts)
            y = self.mlp(torch.cat([p.expand(b, -1) for p in parts], dim=1))
        if parts and self.residual is not None:
            y = y + encoded[self.residual]
        return F.normalize(y, dim=-1) if self.normalize else y
