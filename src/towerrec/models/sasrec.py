"""SASRec: self-attentive sequential recommendation.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018. A causal Transformer reads
the user's last `max_len` items (item embedding + learned position) and its state after item t
scores item t + 1 by a dot product with the (tied) item embeddings.

The architecture is RecBole 1.2.1's SASRec (2 blocks, 2 heads, hidden 64, inner 256, dropout 0.5,
post-LN, GELU, N(0, 0.02) init, max length 50), so per-epoch cost and accuracy compare with RecBole
on the same architecture. Training differs in two ways:
- windows of `max_len` items with a target at every position (each target once per epoch, with at
  least half a window of context) instead of one sample per prefix (`towerrec.data.sequences`):
  the same targets for a fraction of the work;
- the loss is chosen for users, not for parity (on valid, benchmarks/README.md "Sequence models at
  their defaults"): a full softmax up to 4,096 items and a sampled softmax with 4,096 uniform
  negatives above (RecBole: a full softmax always, which ran past 30 minutes on amazon-beauty's
  12,101 items), at most 100 epochs (RecBole 200), patience 10 (RecBole's; patience 3 stopped
  ml-100k at a worse epoch). Benchmarks that compare with RecBole pin RecBole's settings
  (benchmarks/sequential.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from towerrec.models.sequential import (
    NextItemModule,
    SequenceModelConfig,
    SequenceTraining,
    SequentialRecommender,
    init_normal,
)
from towerrec.towers.sequence import TransformerEncoder


@dataclass(frozen=True)
class SASRecConfig(SequenceModelConfig):
    train: SequenceTraining = SequenceTraining(epochs=100, loss="auto", sampled_above=4096, negatives=4096)
    blocks: int = 2
    heads: int = 2
    inner_dim: int = 256            # feed-forward width (RecBole inner_size)
    dropout: float = 0.5            # RecBole hidden_dropout_prob; the paper uses 0.2 on dense data
    attn_dropout: float = 0.5
    norm_first: bool = False        # post-LN as RecBole; True = pre-LN as the paper's code
    activation: str = "gelu"
    seen_bias: bool = False         # learn one offset for items already in the window (off: vanilla)


class SASRecModule(NextItemModule):
    """inputs [B, L] tokens -> states [B, L, embedding_dim]."""

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__(n_items, config)
        self.encoder = TransformerEncoder(config.embedding_dim, config.max_len, blocks=config.blocks,
                                          heads=config.heads, inner=config.inner_dim, dropout=config.dropout,
                                          attn_dropout=config.attn_dropout, norm_first=config.norm_first,
                                          activation=config.activation)
        init_normal(self)

    def encode(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.embed(inputs), inputs > 0)

    def encode_last(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.embed(inputs), inputs > 0, last=True)[:, -1]

    def states_without_each(self, full: torch.Tensor, shifted: torch.Tensor, first: int) -> torch.Tensor:
        """Causal attention: a variant's states before the left-out position are the shifted window's."""
        return self.encoder.states_without_each(self.embed(full), self.embed(shifted), full > 0, shifted > 0,
                                                first=first)


class SASRec(SequentialRecommender):
    """Causal Transformer over each user's item sequence; the strongest of the classic sequence models.

    Use it when order matters (next purchase, next song). Scores known users from their training
    sequence and new users from an ordered `history`.

    >>> model = SASRec(epochs=50).fit(split.train, valid=split.valid)
    >>> model.recommend(["196"], k=10, exclude_seen=False)
    >>> model.recommend(history=["242", "302", "377"], k=10)   # oldest first
    """

    name = "sasrec"
    Config = SASRecConfig
    Module = SASRecModule
