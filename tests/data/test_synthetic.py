"""The synthetic generator: deterministic per seed, the promised sizes, and each planted signal
(Zipf popularity, taste clusters, sequential walk, cluster-correlated features) is measurable."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from towerrec.data.registry import load_dataset
from towerrec.data.load import LoadOptions
from towerrec.data.synthetic import DEFAULT_SIZE, generate, synthetic, write_synthetic
from towerrec.errors import DataError

N_CLUSTERS = 10


@pytest.fixture(scope="module")
def log() -> dict:
    # sparse like real logs (density 1%): 1,000 users x 5,000 items
    return generate(1_000, 5_000, 50_000, n_clusters=N_CLUSTERS, seed=3)


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = (synthetic(300, 200, 4_000, seed=s) for s in (7, 7, 8))
    for key in ("user_idx", "item_idx", "time", "rating"):
        assert np.array_equal(getattr(a.interactions, key), getattr(b.interactions, key))
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.users, b.users)
    assert a.data_sha256 == b.data_sha256 != c.data_sha256
    assert not np.array_equal(a.interactions.item_idx[:500], c.interactions.item_idx[:500])


def test_sizes_unique_pairs_and_every_user_active(log):
    n = len(log["user"])
    assert 0.99 * 50_000 <= n <= 50_000 and n + log["n_unfilled"] == 50_000
    key = log["user"].astype(np.int64) * 5_000 + log["item"]
    assert len(np.unique(key)) == n
    assert np.bincount(log["user"], minlength=1_000).min() >= 1
    assert log["item"].min() >= 0 and log["item"].max() < 5_000
    ds = synthetic(200, 100, 2_000, seed=1)
    inter = ds.interactions
    assert (len(inter), inter.n_users, inter.n_items) == (2_000, 200, 100)
    assert inter.user_map.ids[0] == "u0" and inter.item_map.ids[99] == "i99" and inter.time_kind == "timestamp"
    assert ds.report.steps[-1]["rows_removed"] == 0 and ds.report.steps[-1]["policy"] == "first"


def test_timestamps_increase_within_each_user(log):
    same = log["user"][1:] == log["user"][:-1]
    assert np.all(np.diff(log["user"]) >= 0)  # grouped by user
    assert np.all(log["time"][1:][same] > log["time"][:-1][same])
    assert log["time"].min() >= 1_420_070_400


def test_zipf_popularity(log):
    counts = np.sort(np.bincount(log["item"], minlength=5_000))[::-1]
    top = counts[:50].sum() / counts.sum()   # top 1% of items
    assert top > 0.10                         # 10x their uniform share (real logs: 7-30%)
    assert counts[:500].sum() / counts.sum() > 0.4
    flat = generate(1_000, 5_000, 50_000, n_clusters=N_CLUSTERS, seed=3, zipf=0.0, with_features=False)
    flat_counts = np.sort(np.bincount(flat["item"], minlength=5_000))[::-1]
    assert flat_counts[:50].sum() / flat_counts.sum() < top / 2


def test_users_prefer_their_cluster(log):
    home_share = np.mean(log["item_cluster"][log["item"]] == log["user_cluster"][log["user"]])
    assert home_share > 4 / N_CLUSTERS
    rating = log["rating"].astype(float)
    match = log["item_cluster"][log["item"]] == log["user_cluster"][log["user"]]
    assert rating[match].mean() > rating[~match].mean() + 0.8


def test_next_item_depends_on_the_previous_one(log):
    user, item = log["user"], log["item"]
    same = user[1:] == user[:-1]
    prev, nxt = item[:-1][same], item[1:][same]
    cluster = log["item_cluster"]
    assert np.mean(cluster[prev] == cluster[nxt]) > 0.5  # chance: 1 / N_CLUSTERS

    def top_successor_share(prev: np.ndarray, nxt: np.ndarray) -> float:
        pairs = pd.DataFrame({"p": prev, "n": nxt}).value_counts()
        best = pairs.groupby(level="p").max()
        return best.sum() / len(prev)

    rng = np.random.default_rng(0)
    shuffled = nxt[rng.permutation(len(nxt))]
    assert top_successor_share(prev, nxt) > 2 * top_successor_share(prev, shuffled)


def test_features_follow_the_clusters():
    ds = synthetic(1_000, 600, 20_000, n_clusters=N_CLUSTERS, seed=2)
    log = generate(1_000, 600, 20_000, n_clusters=N_CLUSTERS, seed=2)
    items, users = ds.items, ds.users
    assert items.columns.tolist() == ["item_id", "title", "category", "tags"]
    assert users.columns.tolist() == ["user_id", "age", "country"]
    by_cluster = pd.crosstab(log["item_cluster"], items["category"])
    assert (by_cluster.max(axis=1) / by_cluster.sum(axis=1)).mean() > 0.7   # one category dominates a cluster
    first_word = items["title"].str.split().str[0]
    assert pd.crosstab(first_word, log["item_cluster"]).gt(0).sum(axis=1).max() == 1  # cluster-specific words
    n_tags = items["tags"].str.count(r"\|") + 1
    assert n_tags.min() == 1 and n_tags.max() == 3
    assert all(len(set(t.split("|"))) == len(t.split("|")) for t in items["tags"])
    country = pd.crosstab(log["user_cluster"], users["country"])
    assert (country.max(axis=1) / country.sum(axis=1)).mean() > 0.6
    kinds = {c.name: c.kind for c in ds.item_features.columns.values()}
    assert kinds == {"title": "text", "category": "categorical", "tags": "multi"}
    assert {c.name: c.kind for c in ds.user_features.columns.values()} == {"age": "numeric", "country": "categorical"}
    assert ds.titles([0]) == [items["title"][0]]


def test_options_are_applied_like_a_file_load():
    ds = synthetic(300, 200, 4_000, options=LoadOptions(min_rating=4, user_kcore=3))
    assert np.all(ds.interactions.weight == 1) and ds.interactions.user_counts().min() >= 3
    assert [s["step"] for s in ds.report.steps] == ["min_rating", "duplicates", "kcore"]
    with pytest.raises(DataError, match="unknown duplicate policy"):
        synthetic(10, 10, 20, options=LoadOptions(duplicates="avg"))


def test_write_and_load_round_trip(tmp_path):
    log = generate(300, 200, 4_000, seed=5)
    expected = set(zip("u" + pd.Series(log["user"]).astype(str), "i" + pd.Series(log["item"]).astype(str)))
    for parquet, name in ((False, "interactions.csv"), (True, "interactions.parquet")):
        path = write_synthetic(tmp_path / str(parquet), 300, 200, 4_000, seed=5, parquet=parquet)
        assert sorted(p.name for p in path.iterdir()) == ["PROVENANCE.md", name, "items.csv", "users.csv"]
        ds = load_dataset(path)
        frame = ds.interactions.to_frame()
        assert set(zip(frame.user_id, frame.item_id)) == expected
        assert ds.interactions.n_items == 200 and ds.item_features is not None and ds.user_features is not None
        assert ds.report.steps[-1]["rows_removed"] == 0


def test_default_size_and_bad_sizes():
    assert DEFAULT_SIZE == {"n_users": 2_000, "n_items": 1_000, "n_interactions": 100_000}
    with pytest.raises(ValueError, match="n_interactions"):
        generate(100, 50, 99)
    with pytest.raises(ValueError, match="at most half the catalogue"):
        generate(10, 10, 51)
    with pytest.raises(ValueError):
        generate(10, 1, 100)
    assert len(generate(10, 10, 50, with_features=False)["user"]) == 50  # exactly at the limit


def test_parquet_is_written_block_by_block_with_the_rows_of_generate(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import sys

    monkeypatch.setattr(sys.modules["towerrec.data.synthetic"], "BLOCK", 1_000)        # several generation blocks
    log = generate(300, 200, 4_000, seed=5)
    path = write_synthetic(tmp_path, 300, 200, 4_000, seed=5, parquet=True, row_group_size=512)
    meta = pq.ParquetFile(path / "interactions.parquet").metadata
    assert meta.num_row_groups >= 8 and max(meta.row_group(g).num_rows for g in range(meta.num_row_groups)) <= 512
    table = pq.read_table(path / "interactions.parquet")
    assert table.column("user_id").to_pylist() == ["u" + str(u) for u in log["user"]]
    assert table.column("item_id").to_pylist() == ["i" + str(i) for i in log["item"]]
    assert np.array_equal(table.column("timestamp").to_numpy(), log["time"])
    pd.testing.assert_frame_equal(pd.read_csv(path / "items.csv"), log["items"].reset_index(drop=True),
                                  check_dtype=False)
    # each row group's dictionaries hold only the ids it uses (not all 300 users / 200 items)
    parquet = pq.ParquetFile(path / "interactions.parquet")
    for g in range(meta.num_row_groups):
        group = parquet.read_row_group(g)
        for name in ("user_id", "item_id"):
            column = group.column(name).combine_chunks()
            assert len(column.dictionary) == len(set(column.to_pylist())) <= len(group)
