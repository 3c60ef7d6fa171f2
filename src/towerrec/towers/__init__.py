"""Building blocks of user and item models: feature encoders, text encoders, history pooling,
sequence encoders, MLPs and scorers f(y, z). Plain `nn.Module`s, usable by any model.

Public surface: `Tower`, `MLP`, `IdEmbedding`, `TableEncoder`, `FeatureRows`, `HistoryPooling`,
`GraphPropagation` / `GraphIdEncoder` (LightGCN), `PretrainedTextEncoder`, `CNNTextEncoder`, `GRUEncoder`, `CausalConvEncoder`, `TransformerEncoder`,
`HSTUEncoder`, `make_scorer`, and the declarations `item_encoders` / `user_encoders`.
"""
from __future__ import annotations

from towerrec.towers.features import FeatureRows, IdEmbedding, TableEncoder
from towerrec.towers.graph import GraphIdEncoder, GraphPropagation
from towerrec.towers.history import HistoryPooling
from towerrec.towers.inputs import item_encoders, user_encoders
from towerrec.towers.mlp import MLP
from towerrec.towers.scorers import make_scorer
from towerrec.towers.sequence import CausalConvEncoder, GRUEncoder, HSTUEncoder, TransformerEncoder
from towerrec.towers.text import CNNTextEncoder, PretrainedTextEncoder
from towerrec.towers.tower import Tower

__all__ = ["CNNTextEncoder", "CausalConvEncoder", "FeatureRows", "GRUEncoder", "GraphIdEncoder", "GraphPropagation", "HSTUEncoder", "HistoryPooling",
           "IdEmbedding", "MLP", "PretrainedTextEncoder", "TableEncoder", "Tower", "TransformerEncoder",
           "item_encoders", "make_scorer", "user_encoders"]
