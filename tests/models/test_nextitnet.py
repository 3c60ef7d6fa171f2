"""NextItNet: the shared contract, and the next item of a periodic sequence ranks first (order matters)."""
from __future__ import annotations

from sequence_checks import SequenceModelTests

from towerrec.models.nextitnet import NextItNet


class TestNextItNet(SequenceModelTests):
    model_class = NextItNet
    contract_config = dict(embedding_dim=16, blocks=1, dilations=(1,), max_len=8, dropout=0.5, epochs=40,
                           batch_size=32, learning_rate=3e-3)
    periodic_config = dict(embedding_dim=16, blocks=1, dilations=(1, 2), max_len=10, epochs=8, batch_size=64,
                           learning_rate=1e-2, patience=8)
