"""BERT4Rec: the shared contract, and the next item of a periodic sequence ranks first (order matters)."""
from __future__ import annotations

from sequence_checks import SequenceModelTests

from towerrec.models.bert4rec import BERT4Rec


class TestBERT4Rec(SequenceModelTests):
    model_class = BERT4Rec
    # 80 epochs: at 40, 1-2 of the 40 block users still had a wrong top-1 (with both the plain and the fused
    # AdamW); at 60 one still did on an Intel Xeon, where the AMD EPYC machine passed. Marginal on this toy
    # log: with model seeds 0-3 the top-1 and similar-items checks fail on one seed of four at 80 (seed 2),
    # at 120 (seed 0) and at 60 epochs of 16-row batches (seed 1); masked-item training learns it slowly.
    contract_config = dict(embedding_dim=32, blocks=1, heads=2, inner_dim=32, max_len=8, dropout=0.0,
                           attn_dropout=0.0, mask_ratio=0.4, last_mask_prob=1.0, epochs=80, batch_size=32,
                           learning_rate=1e-2)
    periodic_config = dict(embedding_dim=32, blocks=1, heads=2, inner_dim=32, max_len=10, dropout=0.0,
                           attn_dropout=0.0, mask_ratio=0.2, last_mask_prob=1.0, epochs=40, batch_size=32,
                           learning_rate=3e-3)
    # masked-item training learns the toy cycle more slowly than next-item training; a lone item
    # followed by [MASK] is too far from its training chunks for similar_items to be checked
    next_item_checks = dict(served_k=3, check_similar=False)
