"""SASRec: the shared contract; the next item of a periodic sequence ranks first for every loss and
both LayerNorm placements; order matters; save/load after early stopping is exact."""
from __future__ import annotations

import pytest
import torch
from contract import block_data
from sequence_checks import OPTIONS, SequenceModelTests, assert_next_item_first, assert_save_load_same_scores

from towerrec.errors import NotFittedError, TowerrecError
from towerrec.evaluate import evaluate_scores
from towerrec.models.sasrec import SASRec

# the periodic log
TINY = dict(embedding_dim=16, max_len=10, blocks=1, heads=1, inner_dim=32, dropout=0.0, attn_dropout=0.0,
            epochs=20, batch_size=64, learning_rate=1e-2)
# the shared contract on its block data (random order within a user: order carries no signal there)
CONTRACT = dict(embedding_dim=16, max_len=8, blocks=1, heads=1, inner_dim=32, dropout=0.1, attn_dropout=0.1, epochs=30,
                batch_size=64, learning_rate=1e-2)


class TestSASRec(SequenceModelTests):
    model_class = SASRec
    contract_config = CONTRACT
    periodic_config = TINY

    def test_early_stopping_restores_the_best_epoch(self, periodic):
        split, _ = periodic
        model = SASRec(**{**TINY, "patience": 2}).fit(split.train, valid=split.valid, options=OPTIONS)
        curve = [h["valid_NDCG@10"] for h in model.history_]
        assert len(curve) < TINY["epochs"] and model.best_epoch_ == curve.index(max(curve))
        again = evaluate_scores(model.score_users, split.valid, k=(10,), metrics=("NDCG",)).summary["NDCG@10"]
        assert again == pytest.approx(max(curve), abs=1e-6)

    @pytest.mark.parametrize("loss,extra", [("sampled_softmax", {}),
                                            ("sampled_softmax", {"negative_sampler": "popularity"}),
                                            ("bce", {}), ("gbce", {})])
    def test_every_loss_learns_the_cycle(self, periodic, loss, extra):
        split, cycle = periodic
        # 8 negatives out of 12 items: a weak signal, so 80% top-1 (an order-blind model gets ~50%)
        model = SASRec(**{**TINY, "epochs": 30}, loss=loss, n_negatives=8, **extra).fit(split.train, options=OPTIONS)
        assert_next_item_first(model, split, cycle, min_hit_rate=0.8, served_k=3, check_similar=False)

    def test_pre_ln_variant_learns_too(self, periodic):
        split, cycle = periodic
        model = SASRec(**TINY, norm_first=True).fit(split.train, options=OPTIONS)
        assert_next_item_first(model, split, cycle)

    def test_save_load_after_early_stopping(self, periodic_model, tmp_path):
        assert_save_load_same_scores(periodic_model, tmp_path)

    def test_errors(self, periodic):
        split, _ = periodic
        with pytest.raises(NotFittedError):
            SASRec().recommend(["u1"])
        with pytest.raises(TowerrecError, match="unknown loss"):
            SASRec(**TINY, loss="hinge").fit(split.train, options=OPTIONS)

    def test_seen_before_marks_the_items_each_position_has_read(self):
        module = SASRec(embedding_dim=8, blocks=1, heads=1, inner_dim=16, seen_bias=True)._build(5)
        inputs = torch.tensor([[0, 2, 3, 2], [1, 4, 5, 1]])
        where = torch.tensor([[False, True, True, True], [True, True, True, False]])
        seen = module.seen_before(inputs, where)
        expected = [[2], [2, 3], [2, 3], [1], [1, 4], [1, 4, 5]]       # tokens at positions <= t
        assert seen.tolist() == [[float(tok in row) for tok in range(6)] for row in expected]

    def test_seen_bias_learns_that_items_do_not_repeat(self):
        """On the contract's block data nobody re-reads an item, so the learned offset turns negative
        and, with nothing masked, the one unread item of the user's block comes first."""
        data = block_data(4, 6, 10)
        users = sorted(data.user_block)

        def unmasked_hits(model: SASRec) -> int:
            recs = model.recommend(users, k=1, exclude_seen=False)
            return sum(recs.item_ids[row, 0] == data.missing[user] for row, user in enumerate(users))

        plain = SASRec(**CONTRACT).fit(data.train, options=OPTIONS)
        model = SASRec(**CONTRACT, seen_bias=True).fit(data.train, options=OPTIONS)
        assert model.module_.seen_logit.item() < 0 and plain.module_.seen_logit is None
        assert unmasked_hits(model) == len(users) > 2 * unmasked_hits(plain)    # 40 vs 8 when written
