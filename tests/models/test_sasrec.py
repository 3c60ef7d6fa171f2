"""SASRec: the shared contract; the next item of a periodic sequence ranks first for every loss and
both LayerNorm placements; order matters; save/load after early stopping is exact."""
from __future__ import annotations

import dataclasses

import numpy as np

import pytest
import torch
from contract import block_data
from sequence_checks import OPTIONS, SequenceModelTests, assert_next_item_first, assert_save_load_same_scores

from towerrec.errors import NotFittedError, TowerrecError
from towerrec.evaluation import evaluate
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
        # the same ranking as early stopping: train items masked, ties from seed 0
        again = evaluate(model, split, part="valid", k=(10,), metrics=("NDCG",)).summary["NDCG@10"]
        assert again == pytest.approx(max(curve), abs=1e-6)

    @pytest.mark.parametrize("loss,extra", [("sampled_softmax", {}),
                                            ("sampled_softmax", {"negative_sampler": "popularity"}),
                                            ("bce", {}), ("gbce", {})])
    def test_every_loss_learns_the_cycle(self, periodic, loss, extra):
        split, cycle = periodic
        # 8 negatives out of 12 items: a weak signal, so 80% top-1 (an order-blind model gets ~50%)
        model = SASRec(**{**TINY, "epochs": 30}, loss=loss, negatives=8, **extra).fit(split.train, options=OPTIONS)
        assert_next_item_first(model, split, cycle, min_hit_rate=0.8, served_k=3, check_similar=False)

    @pytest.mark.parametrize("sampled_above,expected", [(0, "sampled_softmax"), (1_000, "ce")])
    def test_auto_loss_picks_by_catalogue_size(self, periodic, sampled_above, expected, tmp_path):
        split, cycle = periodic                     # 12 items
        model = SASRec(**{**TINY, "epochs": 30}, loss="auto", sampled_above=sampled_above, negatives=8).fit(
            split.train, options=OPTIONS)
        assert model.module_.loss_name == expected and model.config.train.loss == "auto"
        assert_next_item_first(model, split, cycle, min_hit_rate=0.8, served_k=3, check_similar=False)
        assert_save_load_same_scores(model, tmp_path)

    def test_defaults_sample_the_softmax_only_on_large_catalogues(self):
        """The defaults chosen on valid (benchmarks/README.md, "Sequence models at their defaults"): a
        full softmax up to 4,096 items (ml-100k, lastfm-s3rec), 4,096 sampled negatives above
        (amazon-beauty, amazon-sports); RecBole's architecture and patience."""
        train = SASRec().config.train
        assert [train.resolved_loss(n) for n in (1_682, 3_646, 4_096, 12_101)] == ["ce"] * 3 + ["sampled_softmax"]
        assert (train.negatives, train.epochs, train.patience) == (4_096, 100, 10)
        assert SASRec(loss="ce").config.train.resolved_loss(12_101) == "ce"

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


# ---- item content (features and text added to the id embeddings) ---------------------------------
@pytest.fixture(scope="module")
def periodic_log():
    from sequence_checks import periodic_split

    return periodic_split()


def _item_table(train, with_text: bool = False):
    import pandas as pd

    from towerrec.data.features import FeatureTable

    ids = train.item_map.ids
    frame = pd.DataFrame({"item_id": ids, "parity": [f"p{int(str(i)[1:]) % 2}" for i in ids]})
    kinds = {"parity": "categorical"}
    if with_text:
        frame["title"] = [f"title of {i}" for i in ids]
        kinds["title"] = "text"
    return FeatureTable.from_frame(frame, train.item_map, id_col="item_id", kinds=kinds)


def test_item_content_is_trained_saved_and_keeps_the_order_signal(periodic_log, tmp_path):
    split, cycle = periodic_log
    table = _item_table(split.train)
    # early stopping ranks as the check below does: nothing masked (walks revisit items)
    model = SASRec(**{**TINY, "item_features": True}).fit(split.train, item_features=table, valid=split.valid,
                                                          options=dataclasses.replace(OPTIONS, exclude_seen=False))
    module = model.module_
    table_rows = module.item_table()
    assert module.content is not None and table_rows.shape == module.item_embedding.weight.shape
    assert torch.all(table_rows[0] == 0)                                       # padding stays zero
    content = module.content()
    assert content[1:].abs().sum() > 0                                          # the features do enter
    parity = table.columns["parity"].codes
    # items that share a parity share their content vector; different parities differ
    same = content[1:][parity == parity[0]]
    assert torch.allclose(same, same[:1].expand_as(same), atol=1e-6)
    assert not torch.allclose(content[1:][parity != parity[0]][0], same[0])
    calls = []
    hook = module.content.register_forward_hook(lambda *_: calls.append(1))
    inputs = torch.tensor([[0, 1, 2, 3]], device=table_rows.device)             # cuda when present
    module.score(inputs)
    module.train()
    module.compute_loss({"inputs": inputs, "targets": torch.tensor([[0, 2, 3, 4]], device=table_rows.device)})
    module.eval()
    hook.remove()
    assert len(calls) == 2                  # the content encoders run once per pass, not per read
    assert_next_item_first(model, split, cycle)                                 # order still learnt
    assert_save_load_same_scores(model, tmp_path)


def test_item_content_with_text(periodic_log, monkeypatch, tmp_path):
    import numpy as np

    import towerrec.towers.content as content_module
    from towerrec.towers.text import embed_texts

    monkeypatch.setenv("TOWERREC_CACHE", str(tmp_path))
    monkeypatch.setattr(content_module, "embed_texts", lambda texts, model="": embed_texts(
        texts, "fake", encode_fn=lambda t: np.array([[len(x), x.count("1")] for x in t], dtype=np.float32)))
    split, _ = periodic_log
    model = SASRec(**{**TINY, "epochs": 2, "text": "pretrained"}).fit(
        split.train, item_features=_item_table(split.train, with_text=True), options=OPTIONS)
    assert model.module_.content.rows.text.shape == (split.train.n_items + 1, 2)
    assert model.content_spec_["columns"] == []                               # text only: no feature columns
    assert_save_load_same_scores(model, tmp_path)


def test_item_content_needs_a_table(periodic_log):
    split, _ = periodic_log
    with pytest.raises(TowerrecError, match="item feature table"):
        SASRec(**{**TINY, "item_features": True}).fit(split.train, options=OPTIONS)
    with pytest.raises(TowerrecError, match="text must be .none. or .pretrained."):
        SASRec(**{**TINY, "text": "cnn"}).fit(split.train, item_features=_item_table(split.train), options=OPTIONS)


def test_cold_user_split_reads_histories_in_time_order():
    """Held-out users are scored from their input histories oldest first (newest `max_len` items):
    in index order the walk's direction is lost (on this log top-1 is 1.0 in time order, 0.13 in index order)."""
    from towerrec.data.sequences import Sequences, periodic_interactions
    from towerrec.evaluation import evaluate_split
    from towerrec.splits import cold_user_split

    inter = periodic_interactions(n_users=200, period=12, seed=1, backward_share=0.5)
    split = cold_user_split(inter, fraction=0.3, seed=0)
    model = SASRec(**TINY).fit(split.train, options=dataclasses.replace(OPTIONS, exclude_seen=False))
    in_time = evaluate_split(model, split, k=(1,), exclude_seen=False)["test"].summary["HitRate@1"]
    assert in_time >= 0.8
    # the same users read in item-index order: the order signal is gone
    csr = split.test_history.to_csr()
    by_index = Sequences(csr.indices.astype("int64") + 1, csr.indptr.astype("int64"))
    users = split.test.active_users()
    top1 = model.score_histories(by_index.take(users)).argmax(dim=1).numpy().copy()
    truth = split.test.to_csr()[users]
    index_hits = float(np.asarray(truth[np.arange(len(users)), top1]).mean())
    assert index_hits < in_time - 0.15
