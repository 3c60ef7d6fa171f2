"""GRU4Rec: session-based recommendation with a recurrent network.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR 2016; the
cross-entropy / sampled-softmax training follows Hidasi & Karatzoglou, "Recurrent Neural Networks
with Top-k Gains for Session-based Recommendations", CIKM 2018. Item embedding -> dropout -> GRU ->
linear back to the embedding size; the state after item t scores item t + 1 against the tied item
embeddings.

Defaults are RecBole 1.2.1's GRU4Rec (embedding 64, hidden 128, 1 layer, dropout 0.3, CE over all
items, max length 50), the converged RecBole reference on ml-100k (`../shared/peers/SUMMARY.md`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from towerrec.models.sequential import (
    NextItemModule,
    SequenceModelConfig,
    SequentialRecommender,
)
from towerrec.towers.sequence import GRUEncoder


@dataclass(frozen=True)
class GRU4RecConfig(SequenceModelConfig):
    hidden_dim: int = 128           # GRU state size
    layers: int = 1
    dropout: float = 0.3            # on the input embeddings (RecBole dropout_prob)
    seen_bias: bool = False         # learn one offset for items already in the window (off: vanilla)


class GRU4RecModule(NextItemModule):
    """inputs [B, L] tokens -> states [B, L, embedding_dim]."""

    def __init__(self, n_items: int, config: GRU4RecConfig) -> None:
        super().__init__(n_items, config)
        self.encoder = GRUEncoder(config.embedding_dim, config.hidden_dim, config.layers, config.dropout)
        nn.init.xavier_normal_(self.item_embedding.weight)      # RecBole's GRU4Rec initialisation
        for w in self.encoder.gru.parameters():
            nn.init.xavier_uniform_(w)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def encode(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.embed(inputs), inputs > 0)

    def encode_last(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.embed(inputs), inputs > 0, last=True)[:, -1]

    def states_without_each(self, full: torch.Tensor, shifted: torch.Tensor, first: int) -> torch.Tensor | None:
        """The GRU's state after position p of the variant leaving out p is the shifted window's: each
        variant runs the recurrence from there over the positions after p only."""
        if self.encoder.gru.num_layers != 1:
            return None
        return self.encoder.states_without_each(self.embed(full), self.embed(shifted), shifted > 0, first=first)


class GRU4Rec(SequentialRecommender):
    """Recurrent next-item model: cheap, strong on short sessions, a standard sequential baseline.

    >>> model = GRU4Rec(epochs=50).fit(split.train, valid=split.valid)
    >>> model.recommend(history=["242", "302", "377"], k=10)   # oldest first
    """

    name = "gru4rec"
    Config = GRU4RecConfig
    Module = GRU4RecModule
