"""HSTU: the sequential transducer of generative recommenders.

Zhai et al., "Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for
Generative Recommendations", ICML 2024. Each layer replaces softmax attention by pointwise SiLU
attention normalised by the sequence length, adds learned relative position and relative time
biases, and gates the attended values by a fourth projection U (`towers.sequence.HSTUBlock`).
Trained here as a next-item model on the same windows and losses as SASRec; item embeddings are
tied with the output, and states are L2-normalised with a temperature as in the paper's
retrieval setup.

Time: with timestamps, the relative time bias reads log2-buckets of |t_query - t_key| (seconds);
with `position` data it reads position gaps. `recommend(history=[...])` carries no times, so a
served history is scored without the time bias (the relative position bias still applies).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from towerrec.models.sequential import (
    NextItemModule,
    SequenceModelConfig,
    SequentialRecommender,
    init_normal,
)
from towerrec.towers.sequence import HSTUEncoder


@dataclass(frozen=True)
class HSTUConfig(SequenceModelConfig):
    blocks: int = 2
    heads: int = 2
    dropout: float = 0.2
    time_buckets: int = 32          # log2 buckets of the time gap; 0 disables the time bias
    temperature: float = 0.05       # scores are cosine / temperature
    seen_bias: bool = False         # learn one offset for items already in the window (off: vanilla)


class HSTUModule(NextItemModule):
    """inputs [B, L] tokens, times [B, L] -> L2-normalised states [B, L, embedding_dim] / sqrt(T)."""

    def __init__(self, n_items: int, config: HSTUConfig) -> None:
        super().__init__(n_items, config)
        self.encoder = HSTUEncoder(config.embedding_dim, config.max_len, blocks=config.blocks, heads=config.heads,
                                   dropout=config.dropout, time_buckets=config.time_buckets)
        self.scale = config.temperature ** -0.5
        init_normal(self)

    def encode(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder(self.embed(inputs), inputs > 0, times)
        return F.normalize(h, dim=-1) * self.scale

    def item_vectors(self) -> torch.Tensor:
        return F.normalize(self.item_table()[1:], dim=-1) * self.scale

    def output_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embed(tokens), dim=-1) * self.scale


class HSTU(SequentialRecommender):
    """Generative-recommender style next-item model with relative time bias.

    >>> model = HSTU(epochs=50).fit(split.train, valid=split.valid)
    >>> model.recommend(["196"], k=10, exclude_seen=False)
    """

    name = "hstu"
    Config = HSTUConfig
    Module = HSTUModule
    uses_time = True
