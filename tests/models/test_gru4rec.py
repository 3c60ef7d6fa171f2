"""GRU4Rec: the shared contract, and the next item of a periodic sequence ranks first (order matters)."""
from __future__ import annotations

from sequence_checks import SequenceModelTests

from towerrec.models.gru4rec import GRU4Rec


class TestGRU4Rec(SequenceModelTests):
    model_class = GRU4Rec
    contract_config = dict(embedding_dim=16, hidden_dim=32, max_len=8, dropout=0.5, epochs=30, batch_size=64,
                           learning_rate=1e-2)
    periodic_config = dict(embedding_dim=16, hidden_dim=32, max_len=10, dropout=0.0, epochs=8, batch_size=64,
                           learning_rate=1e-2, patience=8)
