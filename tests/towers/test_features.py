import pandas as pd
import pytest
import torch

from towerrec.data.features import FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.towers.features import (BagEncoder, CategoricalEncoder, FeatureRows, IdEmbedding, NumericEncoder,
                                      TableEncoder, TableSpec, encode_frame, gather_bag, table_arrays)


@pytest.fixture
def table() -> FeatureTable:
    frame = pd.DataFrame({"item_id": ["a", "b", "c"], "color": ["red", "blue", None],
                          "tags": ["x|y", "", "y"], "size": [1.0, 3.0, None], "title": ["A one", "B two", "C"]})
    return FeatureTable.from_frame(frame, IdMap(["a", "b", "c", "d"]), id_col="item_id",
                                   kinds={"title": "text"})


def test_id_embedding_unknown_is_zero_and_hashing_bounds_rows():
    emb = IdEmbedding(10, 4)
    out = emb(torch.tensor([0, 1, 10]))
    assert out.shape == (3, 4)
    assert torch.all(out[0] == 0) and out[1].abs().sum() > 0
    hashed = IdEmbedding(10**6, 4, hash_buckets=7)
    assert hashed.embedding.num_embeddings == 8
    codes = torch.tensor([0, 5, 999_999])
    assert hashed(codes).shape == (3, 4) and torch.all(hashed(codes)[0] == 0)


def test_id_embedding_hands_row_optimisers_one_gradient_row_per_id_in_order():
    """In training with sparse gradients each id is looked up once: the same vectors and the same
    (coalesced) gradient as a plain lookup, with the gradient's rows already distinct and sorted."""
    emb = IdEmbedding(10, 4)
    emb.embedding.sparse = True
    codes = torch.tensor([7, 2, 7, 0, 5, 2])
    weights = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    (emb(codes) * weights).sum().backward()
    ours = emb.embedding.weight.grad
    emb.embedding.weight.grad = None
    plain = emb.embedding(codes)
    (plain * weights).sum().backward()
    assert torch.equal(emb(codes), plain)
    rows = ours._indices()[0]
    assert bool((rows.diff() > 0).all()) and rows.tolist() == [2, 5, 7]   # padding row 0 has no gradient
    assert torch.allclose(ours.to_dense(), emb.embedding.weight.grad.to_dense())


def test_categorical_and_bag_pooling():
    cat = CategoricalEncoder(5, 3)
    assert torch.all(cat(torch.tensor([0]))[0] == 0)
    bag = BagEncoder(5, 3, mode="mean")
    flat, offsets = torch.tensor([1, 2, 3]), torch.tensor([0, 2, 2])   # bags {1,2}, {}, {3}
    out = bag(flat, offsets)
    w = bag.bag.weight
    assert torch.allclose(out[0], (w[1] + w[2]) / 2)
    assert torch.all(out[1] == 0)
    assert torch.allclose(out[2], w[3])
    summed = BagEncoder(5, 3, mode="sum")
    assert torch.allclose(summed(flat, offsets)[0], summed.bag.weight[1] + summed.bag.weight[2])
    with pytest.raises(ValueError):
        BagEncoder(5, 3, mode="max")


def test_numeric_encoder_buckets_change_output():
    enc = NumericEncoder(2, 4, buckets=4)
    x = torch.tensor([[-2.0, 0.1], [2.0, 0.1]])
    out = enc(x)
    assert out.shape == (2, 4)
    assert enc.boundaries.shape == (3,)
    assert not torch.allclose(out[0], out[1])


def test_gather_bag_matches_python():
    codes = torch.tensor([5, 6, 7, 8, 9])
    offsets = torch.tensor([0, 2, 2, 5])            # rows: [5,6], [], [7,8,9]
    flat, off = gather_bag(codes, offsets, torch.tensor([2, 0, 1, 2]))
    assert flat.tolist() == [7, 8, 9, 5, 6, 7, 8, 9]
    assert off.tolist() == [0, 3, 5, 5]


def test_table_rows_blank_row_and_encoder(table):
    spec = TableSpec.from_table(table, "item_id")
    assert [c["kind"] for c in spec.columns] == ["categorical", "multi", "numeric"]
    arrays = table_arrays(table, spec, len(table))
    rows = FeatureRows(arrays)
    assert rows.n_rows == 5                      # blank + 4 ids ("d" has no feature row)
    feats = rows.take(torch.tensor([0, 1, 4]))
    assert feats["cat"][:, 0].tolist() == [0, table.columns["color"].codes[0], 0]
    flat, off = feats["bags"][0]
    assert len(flat) == 2 and off.tolist() == [0, 0, 2]   # blank row and "d" have empty bags
    enc = TableEncoder(spec, 8)
    assert enc(feats).shape == (3, enc.out_dim) and enc.out_dim == 24


def test_encode_frame_reuses_vocab_and_statistics(table):
    spec = TableSpec.from_table(table, "item_id")
    new = pd.DataFrame({"item_id": ["z", "w"], "color": ["blue", "purple"], "tags": ["y|new", None], "size": [3.0, None]})
    t = encode_frame(new, spec, IdMap(["z", "w"]))
    vocab = spec.columns[0]["vocab"]
    assert t.columns["color"].codes.tolist() == [vocab.index("blue") + 1, 0]   # unseen -> missing
    assert t.columns["tags"].codes.tolist() == [spec.columns[1]["vocab"].index("y") + 1]
    size = table.columns["size"]
    assert t.columns["size"].values[0] == pytest.approx((3.0 - size.mean) / size.std)
    assert t.columns["size"].values[1] == 0.0


def test_feature_rows_extend(table):
    spec = TableSpec.from_table(table, "item_id")
    rows = FeatureRows(table_arrays(table, spec, 4))
    new = table_arrays(table, spec, 4)
    rows.extend(new)
    assert rows.n_rows == 9
    a, b = rows.take(torch.tensor([1])), rows.take(torch.tensor([5]))
    assert torch.equal(a["cat"], b["cat"]) and torch.equal(a["bags"][0][0], b["bags"][0][0])
