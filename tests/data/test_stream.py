"""Streaming a Parquet log: fragments dealt to ranks and workers exactly once, shuffling that changes
with the epoch, bounded reader memory, the vocabulary pass and its held-out user sample."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from towerrec.data.stream import (
    HoldoutFilter,
    IdLookup,
    ShuffleBuffer,
    StreamOptions,
    StreamReader,
    check_shards,
    manifest,
    parquet_files,
    shard_fragments,
)
from towerrec.data.stream_log import scan_log
from towerrec.errors import DataError, TowerrecError


def write_log(folder: Path, frame: pd.DataFrame, row_groups: list[list[int]], *, dictionary: bool = False) -> Path:
    """frame's rows, in order, into one file per entry of `row_groups` (the row group sizes of that file)."""
    folder.mkdir(parents=True, exist_ok=True)
    at = 0
    for f, sizes in enumerate(row_groups):
        part = frame.iloc[at:at + sum(sizes)]
        table = pa.Table.from_pandas(part, preserve_index=False)
        if dictionary:
            table = table.set_column(0, "user_id", table.column(0).dictionary_encode())
        with pq.ParquetWriter(folder / f"part-{f}.parquet", table.schema) as writer:
            start = 0
            for size in sizes:
                writer.write_table(table.slice(start, size))
                start += size
        at += sum(sizes)
    assert at == len(frame)
    return folder


def unique_log(n_users: int = 150, per_user: int = 20, n_items: int = 400, seed: int = 0) -> pd.DataFrame:
    """Unique (user, item) pairs, so a pair names a row; each user's rows in time order."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    return pd.DataFrame({"user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in items],
                         "timestamp": np.tile(np.arange(per_user), n_users) * 10 + users % 7})


# 3 files, 32 row groups of uneven sizes (3,000 rows)
GROUPS = [[37, 200, 91, 5, 120, 64, 300, 83, 100, 100], [250, 1, 99, 150, 150, 75, 75, 75, 75, 50, 25],
          [110, 90, 80, 70, 60, 50, 40, 30, 20, 10, 315]]


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory) -> Path:
    return write_log(tmp_path_factory.mktemp("log"), unique_log(), GROUPS)


def read_all(log, *, world: int, workers: int, epoch: int, batch_size: int = 1, buffer: int = 64) -> list[list]:
    """Per (rank, worker): the (user, item) pairs read, in order."""
    out = []
    options = StreamOptions(shuffle_buffer=buffer, read_rows=32, workers=workers, holdout_users=0)
    for rank in range(world):
        reader = StreamReader(log.fragments, log.columns, log.user_map, log.item_map, batch_size=batch_size,
                              options=options, seed=5, rank=rank, world=world)
        reader.set_epoch(epoch)
        for worker in range(max(workers, 1)):
            out.append([(int(u), int(i)) for us, is_ in reader.rows(worker) for u, i in zip(us, is_)])
    return out


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("workers", [0, 2, 3])
def test_every_row_is_read_exactly_once_by_one_worker_of_one_rank(log_dir, world, workers):
    log = scan_log(str(log_dir), StreamOptions(holdout_users=0))
    expected = sorted(zip(log.user_map.get_index(unique_log().user_id), log.item_map.get_index(unique_log().item_id)))
    orders = []
    for epoch in (0, 1):
        parts = read_all(log, world=world, workers=workers, epoch=epoch)
        rows = [row for part in parts for row in part]
        assert len(rows) == len(expected) == 3_000                     # nothing read twice ...
        assert sorted(rows) == sorted((int(u), int(i)) for u, i in expected)   # ... nothing lost
        orders.append(parts)
    assert orders[0] != orders[1]                                      # each reader's order changes with the epoch
    for first, second in zip(*orders):
        assert len(first) == 0 or first != second


def test_fragment_shares_partition_the_permutation():
    for world, workers in [(1, 0), (2, 3), (4, 2), (3, 3)]:
        for epoch in range(3):
            got = np.concatenate([shard_fragments(31, epoch=epoch, seed=1, rank=r, world=world, worker=w,
                                                  workers=workers) for r in range(world) for w in range(max(workers, 1))])
            assert sorted(got.tolist()) == list(range(31))
    a = shard_fragments(31, epoch=0, seed=1, rank=0, world=2)
    assert not np.array_equal(a, shard_fragments(31, epoch=1, seed=1, rank=0, world=2))
    assert np.array_equal(a, shard_fragments(31, epoch=0, seed=1, rank=0, world=2))        # same on every process


def test_steps_count_the_full_batches_each_worker_yields(log_dir):
    log = scan_log(str(log_dir), StreamOptions(holdout_users=40, read_rows=32, workers=3, shuffle_buffer=50))
    for rank in range(2):
        reader = log.reader(16, rank=rank, world=2)
        reader.set_epoch(3)
        batches = [b for w in range(3) for b in reader.rows(w)]
        assert reader.steps() == len(batches) and all(len(u) == 16 for u, _ in batches)
        dropped = reader.train_rows[np.concatenate([reader.my_fragments(w) for w in range(3)])].sum() - 16 * len(batches)
        assert 0 <= dropped < 3 * 16                                   # only each worker's tail


def test_dataloader_workers_split_the_fragments(log_dir):
    log = scan_log(str(log_dir), StreamOptions(holdout_users=0, workers=2, shuffle_buffer=64, read_rows=32))
    reader = log.reader(1)
    reader.set_epoch(0)
    loader = torch.utils.data.DataLoader(reader, batch_size=None, num_workers=2)
    rows = sorted((int(b["user_idx"][0]), int(b["item_idx"][0])) for b in loader)
    assert len(rows) == len(set(rows)) == 3_000 == reader.steps()
    with pytest.raises(Exception, match="runs under 1"):
        list(torch.utils.data.DataLoader(reader, batch_size=None, num_workers=1))


def test_shuffle_buffer_holds_at_most_its_capacity_and_mixes():
    rng = np.random.default_rng(0)
    buffer = ShuffleBuffer(100, 10, rng)
    out = []
    for s in range(0, 1_000, 37):
        chunk = np.arange(s, min(s + 37, 1_000))
        out += [u for u, _ in buffer.add(chunk, chunk)]
        assert len(buffer.user) <= 100 + 10
    out += [u for u, _ in buffer.flush()]
    got = np.concatenate(out)
    assert len(got) == 1_000 and sorted(got.tolist()) == list(range(1_000))
    assert buffer.peak <= 100 + 10 + 37
    assert np.abs(np.diff(got)).mean() > 10                            # not the input order


def test_shuffle_buffer_draws_the_rows_that_leave_uniformly():
    """The rows that leave are a uniform draw from the held and the incoming rows (what a permutation
    of the whole buffer gives): over 200 buffers, the incoming share of the first 100 rows out of a
    1,100-row pool is 100 / 1,100, and the rows that stay are exactly the rest."""
    from_incoming = 0
    for seed in range(200):
        buffer = ShuffleBuffer(1_000, 100, np.random.default_rng(seed))
        assert list(buffer.add(np.arange(1_000), np.arange(1_000))) == []          # still filling
        (user, item), = list(buffer.add(np.arange(1_000, 1_100), np.arange(1_000, 1_100)))
        assert (user == item).all() and len(set(user.tolist())) == 100
        assert sorted(user.tolist() + buffer.user.tolist()) == list(range(1_100))
        assert (buffer.user == buffer.item).all() and len(buffer.user) == 1_000
        from_incoming += int((user >= 1_000).sum())
    expected, sd = 20_000 * 100 / 1_100, np.sqrt(20_000 * (1 / 11) * (10 / 11))
    assert abs(from_incoming - expected) < 4 * sd, (from_incoming, expected)


def test_reader_memory_is_bounded_by_the_buffer_not_the_log(tmp_path):
    n = 400_000                                                         # 6.4 MB of int64 pairs once mapped
    frame = pd.DataFrame({"user_id": np.char.add("u", (np.arange(n) % 5_000).astype(str)),
                          "item_id": np.char.add("i", (np.arange(n) * 7 % 3_000).astype(str))})
    folder = write_log(tmp_path, frame, [[20_000] * 10, [20_000] * 10], dictionary=True)
    log = scan_log(str(folder), StreamOptions(holdout_users=0, shuffle_buffer=4_096, read_rows=2_048))
    reader = log.reader(256)
    reader.set_epoch(0)
    tracemalloc.start()
    rows = sum(len(u) for u, _ in reader.rows())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rows == n // 256 * 256                                      # the tail under one batch is dropped
    assert reader.peak_buffered <= 4_096 + 256 + 2_048
    # numpy buffers of a few x (buffer + batch + read) rows x 16 bytes (~100 KB each): far below the log
    assert peak < 2_000_000, peak


def test_vocabulary_counts_and_held_out_sample(log_dir, tmp_path):
    frame = unique_log()
    log = scan_log(str(log_dir), StreamOptions(holdout_users=40), seed=3)
    assert list(log.user_map.ids) == sorted(frame.user_id.unique())
    assert list(log.item_map.ids) == sorted(frame.item_id.unique())
    assert log.n_rows == 3_000 and log.time_col == "timestamp" and log.columns == ("user_id", "item_id")
    hold = log.holdout
    assert hold.n_users == 40 and len(hold.valid) == len(hold.test) == 40
    for truth, position in ((hold.test, -1), (hold.valid, -2)):   # the last and second-to-last by time
        got = truth.to_frame().sort_values("user_id").reset_index(drop=True)
        expected = (frame[frame.user_id.isin(got.user_id)].sort_values(["user_id", "timestamp"])
                    .groupby("user_id").nth(position).reset_index(drop=True))
        assert got.item_id.tolist() == expected.sort_values("user_id").item_id.tolist()
    # held-out pairs never reach training; counts and per-fragment drops are exact
    counts = frame.user_id.value_counts()
    assert log.user_counts.sum() == 3_000 - 80 == log.n_train_rows
    assert np.array_equal(log.user_counts + np.bincount(np.r_[hold.valid.user_idx, hold.test.user_idx],
                                                        minlength=log.n_users),
                          counts.reindex(log.user_map.ids).to_numpy())
    reader = log.reader(1)
    reader.set_epoch(0)
    read = {(int(u[0]), int(i[0])) for u, i in reader.rows()}
    held = set(zip(hold.valid.user_idx.tolist(), hold.valid.item_idx.tolist())) | \
        set(zip(hold.test.user_idx.tolist(), hold.test.item_idx.tolist()))
    assert len(read) == 2_920 and not read & held
    assert hold.dropped.sum() == 80 and reader.steps() == 2_920
    # the sample is a property of the ids and the seed, not of the file layout
    other = scan_log(str(write_log(tmp_path / "flat", frame, [[3_000]])), StreamOptions(holdout_users=40), seed=3)
    assert set(other.holdout.test.to_frame().itertuples(index=False)) == set(hold.test.to_frame().itertuples(index=False))
    assert scan_log(str(log_dir), StreamOptions(holdout_users=40), seed=4).holdout.test.user_idx.tolist() != \
        hold.test.user_idx.tolist()


def test_seen_matrix_holds_every_training_row(log_dir):
    log = scan_log(str(log_dir), StreamOptions(holdout_users=40, read_rows=64))
    seen = log.seen_matrix()
    assert seen.nnz == 2_920 and np.array_equal(np.diff(seen.indptr), log.user_counts)
    frame = unique_log()
    u, i = log.user_map.get_index(frame.user_id), log.item_map.get_index(frame.item_id)
    held = ~log.holdout.filter.keep(u, i)
    assert held.sum() == 80
    assert np.all(seen[u[~held], i[~held]] == 1) and np.all(seen[u[held], i[held]] == 0)


def test_id_columns_of_any_type(tmp_path):
    rng = np.random.default_rng(1)
    ints = pd.DataFrame({"user": rng.integers(0, 50, 500), "item": rng.integers(1000, 1100, 500)})
    log = scan_log(str(write_log(tmp_path / "ints", ints, [[250, 250]])), StreamOptions(holdout_users=5))
    assert log.columns == ("user", "item") and log.time_col is None
    assert set(log.user_map.ids) == {str(x) for x in ints.user}
    lookup = IdLookup(log.item_map)
    assert np.array_equal(log.item_map.ids[lookup(pa.array(ints.item))], ints.item.astype(str).to_numpy())
    dictionary = pa.array(["i1001", "nope", "i1001"]).dictionary_encode()
    assert IdLookup(log.item_map)(dictionary).tolist() == [-1, -1, -1]   # unknown ids are -1 (string vs int ids)


def test_bad_logs_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        manifest(tmp_path / "missing")
    (tmp_path / "log.csv").write_text("user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match="Parquet only"):
        parquet_files(tmp_path / "log.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Parquet files"):
        manifest(tmp_path / "empty")
    nulls = pd.DataFrame({"user_id": ["a", None, "b"], "item_id": ["x", "y", "z"]})
    with pytest.raises(DataError, match="missing ids"):
        scan_log(str(write_log(tmp_path / "nulls", nulls, [[3]])))
    with pytest.raises(DataError, match="no user column"):
        scan_log(str(write_log(tmp_path / "cols", pd.DataFrame({"who": ["a"], "item_id": ["x"]}), [[1]])))
    with pytest.raises(TowerrecError, match="smaller row groups"):
        check_shards(3, world=2, workers=2)
    with pytest.raises(TowerrecError, match="must be positive"):
        scan_log(str(tmp_path / "nulls"), StreamOptions(shuffle_buffer=0))


def test_holdout_filter_drops_only_the_listed_pairs():
    f = HoldoutFilter(np.array([False, True, True]), np.array([1 * 10 + 4, 2 * 10 + 0]), 10)
    keep = f.keep(np.array([0, 1, 1, 2, 2, 0]), np.array([4, 4, 5, 0, 4, 0]))
    assert keep.tolist() == [True, False, True, False, True, True]
