"""HSTU: the shared contract, the next item of a periodic sequence ranks first (order matters), and
timestamps survive save/load."""
from __future__ import annotations

from sequence_checks import SequenceModelTests, assert_save_load_same_scores

from towerrec.models.hstu import HSTU


class TestHSTU(SequenceModelTests):
    model_class = HSTU
    contract_config = dict(embedding_dim=16, blocks=1, heads=1, max_len=8, dropout=0.3, epochs=30, batch_size=64,
                           learning_rate=1e-2)
    periodic_config = dict(embedding_dim=16, blocks=1, heads=1, max_len=10, dropout=0.1, epochs=8, batch_size=64,
                           learning_rate=1e-2, patience=8)

    def test_save_load_keeps_times(self, periodic_model, tmp_path):
        assert periodic_model.sequences_.times is not None           # the time bias reads them
        assert_save_load_same_scores(periodic_model, tmp_path)
