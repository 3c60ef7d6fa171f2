"""NextItNet: a simple convolutional generative network for next-item recommendation.

Yuan et al., WSDM 2019. Stacked residual blocks of dilated causal 1-D convolutions over the item
embeddings (dilations 1, 4 repeated, each block's second convolution doubling the dilation) give
an exponentially growing receptive field; the state after item t scores item t + 1 against the
tied item embeddings. Defaults follow RecBole 1.2.1's NextItNet (embedding 64, kernel 3,
5 blocks of dilations (1, 4)), trained with CE over all items.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from towerrec.models.sequential import (
    NextItemModule,
    SequenceModelConfig,
    SequentialRecommender,
)
from towerrec.towers.sequence import CausalConvEncoder


@dataclass(frozen=True)
class NextItNetConfig(SequenceModelConfig):
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 4)
    blocks: int = 5                 # repeats of `dilations`: 10 residual blocks
    dropout: float = 0.0            # on the input embeddings (the paper uses none)
    seen_bias: bool = False         # learn one offset for items already in the window (off: vanilla)


class NextItNetModule(NextItemModule):
    """inputs [B, L] tokens -> states [B, L, embedding_dim]."""

    def __init__(self, n_items: int, config: NextItNetConfig) -> None:
        super().__init__(n_items, config)
        self.encoder = CausalConvEncoder(config.embedding_dim, config.kernel, tuple(config.dilations),
                                         config.blocks, config.dropout)
        self.final = torch.nn.Linear(config.embedding_dim, config.embedding_dim)   # RecBole's final_layer
        stdv = (1.0 / n_items) ** 0.5                        # the paper's code initialises items U(-stdv, stdv)
        torch.nn.init.uniform_(self.item_embedding.weight, -stdv, stdv)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def encode(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.final(self.encoder(self.embed(inputs), inputs > 0))


class NextItNet(SequentialRecommender):
    """Causal CNN next-item model: parallel over positions like SASRec, no attention.

    >>> model = NextItNet(epochs=50).fit(split.train, valid=split.valid)
    >>> model.recommend(history=["242", "302", "377"], k=10)   # oldest first
    """

    name = "nextitnet"
    Config = NextItNetConfig
    Module = NextItNetModule
