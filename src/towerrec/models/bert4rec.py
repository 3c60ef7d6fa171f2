"""BERT4Rec: sequential recommendation with a bidirectional Transformer (masked-item training).

Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations from
Transformer", CIKM 2019. Training hides a random `mask_ratio` of each chunk's items behind a
[MASK] token and predicts them from both sides (cross-entropy over all items); serving appends
[MASK] after the user's newest items and reads the prediction there.

Defaults follow RecBole 1.2.1's BERT4Rec (2 blocks, 2 heads, hidden 64, inner 256, dropout 0.2,
mask ratio 0.2, CE, max length 50). Each training chunk also gets its last item masked with
probability `last_mask_prob`, which matches training to the serving task (as RecBole's `ft_ratio`
and most reproductions do).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from towerrec.data.sequences import Sequences, Windows
from towerrec.models.sequential import (
    NextItemModule,
    SequenceModelConfig,
    SequentialRecommender,
    init_normal,
)
from towerrec.towers.sequence import TransformerEncoder


@dataclass(frozen=True)
class BERT4RecConfig(SequenceModelConfig):
    blocks: int = 2
    heads: int = 2
    inner_dim: int = 256
    dropout: float = 0.2
    attn_dropout: float = 0.2
    mask_ratio: float = 0.2         # share of a chunk's items hidden per step
    last_mask_prob: float = 0.1     # also hide the newest item: the serving task


class BERT4RecModule(NextItemModule):
    """inputs [B, L] tokens (item + 1, 0 = padding, n_items + 1 = [MASK]) -> states [B, L, dim]."""

    def __init__(self, n_items: int, config: BERT4RecConfig) -> None:
        super().__init__(n_items, config)
        self.mask_token = n_items + 1
        self.max_len = config.max_len
        self.item_embedding = nn.Embedding(n_items + 2, config.embedding_dim, padding_idx=0)
        self.encoder = TransformerEncoder(config.embedding_dim, config.max_len, blocks=config.blocks,
                                          heads=config.heads, inner=config.inner_dim, dropout=config.dropout,
                                          attn_dropout=config.attn_dropout, causal=False)
        init_normal(self)

    def encode(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.embed(inputs), inputs > 0)

    def score(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """Append [MASK] after the newest item (dropping the oldest when full) and score it."""
        masked = torch.cat([inputs, torch.full_like(inputs[:, :1], self.mask_token)], dim=1)[:, -self.max_len:]
        return super().score(masked)


class BERT4Rec(SequentialRecommender):
    """Bidirectional masked-item model; a common strong baseline, slower to converge than SASRec.

    >>> model = BERT4Rec(epochs=100).fit(split.train, valid=split.valid)
    >>> model.recommend(history=["242", "302", "377"], k=10)   # oldest first
    """

    name = "bert4rec"
    Config = BERT4RecConfig
    Module = BERT4RecModule

    def _training_windows(self, sequences: Sequences) -> Windows:
        return sequences.chunks(self.config.max_len, self.config.train.window_stride)

    def _corrupt(self, inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Hide `mask_ratio` of the items (at least one per chunk, the newest with probability
        `last_mask_prob` too); only hidden items are targets."""
        real = inputs > 0
        hide = real & (rng.random(inputs.shape) < self.config.mask_ratio)
        hide[:, -1] |= rng.random(len(inputs)) < self.config.last_mask_prob
        hide[~hide.any(axis=1), -1] = True                   # the newest column is never padding
        masked = np.where(hide, len(self.item_map_) + 1, inputs)
        return masked, np.where(hide, targets, 0)
