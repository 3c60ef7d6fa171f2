"""Reading an interaction log larger than memory: Parquet fragments, sharded, through a shuffle buffer.

A log is one Parquet file or a folder of them (`*.parquet` / `*.pq`, searched recursively; names
starting with `_` or `.` are skipped). The unit of work is a *fragment*: one row group of one file.
`manifest` lists them from the Parquet footers without reading any data.

Sharding rule (`shard_fragments`): every epoch the fragments are permuted with (seed, epoch), the
same on every process, and the fragment at position p goes to global worker p mod G, where
G = world x max(workers, 1) and global worker = rank x max(workers, 1) + DataLoader worker. So
every row is read exactly once per epoch by exactly one worker of one rank, whatever the world
size, and the order changes every epoch while the coverage does not. Fragments, not rows, are
dealt out: write many row groups (>= 8 x world x workers; 64K-256K rows each) so that the shares
are even.

Inside a worker, the record batches of its fragments (read `read_rows` at a time, only the two id
columns) pass through a shuffle buffer of `shuffle_buffer` rows: with each incoming batch, the
rows above its capacity leave in full batches of `batch_size`, drawn uniformly from the held and
the incoming rows. A worker therefore holds at most shuffle_buffer + batch_size + read_rows rows
(16 bytes each), whatever the size of the log; rows leave in an order mixed across
~shuffle_buffer neighbouring rows and across fragments. The tail smaller than one batch is dropped
(fewer than batch_size rows per worker and epoch; different rows every epoch, since the fragment
order changes).

Ids are mapped to indices with a vocabulary built beforehand (`towerrec.data.stream_vocab`), and
rows of the held-out sample are filtered out here (`HoldoutFilter`).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from towerrec.data.idmap import IdMap
from towerrec.data.tables import exists, is_dir, list_dir
from towerrec.errors import DataError, TowerrecError

PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class StreamOptions:
    """How a log is streamed: memory and sampling settings, none of them a model hyperparameter.

    Peak memory of the reader is set here, not by the log: per DataLoader worker at most
    `shuffle_buffer + batch + read_rows` rows of two int64 ids, plus the id vocabularies.
    """

    shuffle_buffer: int = 1 << 20     # rows mixed before batching (16 MB of id pairs)
    read_rows: int = 1 << 16          # rows per record batch read from a row group
    workers: int = 0                  # DataLoader worker processes per rank (0: read in the training process)
    holdout_users: int = 2_000        # users sampled (by id hash) for valid/test: last item test, previous valid
    keep_seen: bool = True            # keep every user's items (4 bytes per interaction) so served lists mask them
    user_col: str | None = None       # None: found by name as for in-memory logs (user_id, user, ...)
    item_col: str | None = None
    time_col: str | None = None       # orders each sampled user's items for the held-out split; None: by name, else file order

    def validate(self) -> None:
        for name in ("shuffle_buffer", "read_rows", "holdout_users"):
            if getattr(self, name) < (1 if name != "holdout_users" else 0):
                raise TowerrecError(f"stream option {name} must be positive, got {getattr(self, name)}")
        if self.workers < 0:
            raise TowerrecError(f"stream option workers must be >= 0, got {self.workers}")


@dataclass(frozen=True)
class Fragment:
    """One row group of one Parquet file."""

    path: str
    row_group: int
    rows: int


def parquet_files(source: str | Path) -> list[Path]:
    """The Parquet files of `source` (a file, or a folder searched recursively), sorted by path."""
    path = Path(source)
    if not exists(path):
        raise DataError("not found", source=str(path), expected="a Parquet file or a folder of Parquet files")
    if not is_dir(path):
        if not path.name.lower().endswith(PARQUET_SUFFIXES):
            raise DataError("streaming reads Parquet only", source=str(path),
                            expected="a .parquet file or a folder of them (convert a CSV once with pyarrow or "
                                     "polars), or load the log into memory without --stream")
        return [path]
    for name in ("interactions", "interactions.parquet", "interactions.pq"):   # a dataset folder's convention
        if exists(path / name):
            return parquet_files(path / name)
    files: list[Path] = []
    for entry in list_dir(path):
        if entry.name.startswith(("_", ".")):
            continue
        if is_dir(entry):
            files.extend(parquet_files(entry))
        elif entry.name.lower().endswith(PARQUET_SUFFIXES):
            files.append(entry)
    if not files:
        raise DataError("no Parquet files in this folder", source=str(path),
                        expected="*.parquet files (or an interactions.parquet / interactions/ inside)")
    return sorted(files)


def manifest(source: str | Path) -> list[Fragment]:
    """Every non-empty row group of every file, from the footers (no data is read)."""
    out = []
    for f in parquet_files(source):
        try:
            meta = pq.ParquetFile(f).metadata
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"cannot be read as Parquet: {str(exc).splitlines()[0]}", source=str(f)) from None
        out.extend(Fragment(str(f), g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)
                   if meta.row_group(g).num_rows > 0)
    if not out:
        raise DataError("the log has no rows", source=str(source))
    return out


def shard_fragments(n_fragments: int, *, epoch: int, seed: int, rank: int = 0, world: int = 1, worker: int = 0,
                    workers: int = 0) -> np.ndarray:
    """Fragment indices read by one DataLoader worker (`workers=0`: the rank itself) in one epoch."""
    per_rank = max(workers, 1)
    perm = np.random.default_rng([seed, epoch, 7919]).permutation(n_fragments)
    return perm[rank * per_rank + worker::world * per_rank]


class IdLookup:
    """External ids (an arrow column of any type) -> indices of an `IdMap`; -1 for unknown ids.

    Dictionary-encoded columns map their dictionary once (reused while it stays the same, as it
    does across the batches of a row group) and take by the codes."""

    def __init__(self, id_map: IdMap) -> None:
        self.id_map = id_map
        self._dictionary: pa.Array | None = None
        self._codes: np.ndarray | None = None

    def _plain(self, values: pa.Array) -> np.ndarray:
        if not pa.types.is_string(values.type):
            values = values.cast(pa.string())
        return self.id_map.get_index(values.to_numpy(zero_copy_only=False))

    def __call__(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_dictionary(column.type):
            if self._dictionary is None or not column.dictionary.equals(self._dictionary):
                self._dictionary, self._codes = column.dictionary, self._plain(column.dictionary)
            return self._codes[column.indices.to_numpy(zero_copy_only=False)]
        return self._plain(column)


@dataclass(frozen=True)
class HoldoutFilter:
    """Drops the held-out (user, item) pairs from training: `users` [n_users] bool marks the
    sampled users, `keys` the sorted user * n_items + item of their held-out pairs."""

    users: np.ndarray
    keys: np.ndarray
    n_items: int

    def keep(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        keep = np.ones(len(user), dtype=bool)
        if len(self.keys) == 0:
            return keep
        at = np.flatnonzero(self.users[user])
        key = user[at] * self.n_items + item[at]
        pos = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        keep[at[self.keys[pos] == key]] = False
        return keep


class ShuffleBuffer:
    """Bounded shuffling: `add` rows, get back full batches once more than `capacity` are held.

    The rows that leave are drawn uniformly, without replacement, from the held rows and the
    incoming ones, and the incoming rows that stay fill the holes they leave. That is the
    selection a permutation of the whole buffer gives, at O(rows added) per call instead of
    O(capacity): permuting the default 1M-row buffer for every 64K-row read made the reader cost
    1.75-1.99 ms a 1,024-row batch on the 20M log, against 0.53 ms now (benchmarks/README.md).
    """

    def __init__(self, capacity: int, batch_size: int, rng: np.random.Generator) -> None:
        self.capacity, self.batch_size, self.rng = capacity, batch_size, rng
        self._user = np.zeros(0, dtype=np.int64)   # allocated at the first add: capacity + batch_size rows
        self._item = np.zeros(0, dtype=np.int64)
        self.size = 0        # rows held
        self.peak = 0        # most rows ever held, the incoming ones included (tests check the bound)

    @property
    def user(self) -> np.ndarray:
        return self._user[:self.size]

    @property
    def item(self) -> np.ndarray:
        return self._item[:self.size]

    def add(self, user: np.ndarray, item: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if len(self._user) < self.capacity + self.batch_size:
            self._user = np.concatenate([self.user, np.empty(self.capacity + self.batch_size - self.size, user.dtype)])
            self._item = np.concatenate([self.item, np.empty(self.capacity + self.batch_size - self.size, item.dtype)])
        size, pool = self.size, self.size + len(user)
        self.peak = max(self.peak, pool)
        over = (pool - self.capacity) // self.batch_size * self.batch_size
        keep = pool - over                          # < capacity + batch_size: fits the arrays
        if over <= 0:
            self._user[size:pool], self._item[size:pool] = user, item
            self.size = pool
            return

        def take(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Rows at positions of the pool = held rows, then the incoming ones."""
            held = pos < size
            u, i = np.empty(len(pos), user.dtype), np.empty(len(pos), item.dtype)
            u[held], i[held] = self._user[pos[held]], self._item[pos[held]]
            u[~held], i[~held] = user[pos[~held] - size], item[pos[~held] - size]
            return u, i

        leave = self.rng.choice(pool, over, replace=False)          # uniform, in random order
        out_user, out_item = take(leave)
        # rows that stay at positions >= keep move into the holes below keep (as many of each)
        stays = np.ones(over, dtype=bool)
        stays[leave[leave >= keep] - keep] = False
        movers = take(keep + np.flatnonzero(stays))
        if keep > size:                                             # incoming rows below keep stay in place
            self._user[size:keep], self._item[size:keep] = user[:keep - size], item[:keep - size]
        holes = leave[leave < keep]
        self._user[holes], self._item[holes] = movers
        self.size = keep
        for s in range(0, over, self.batch_size):
            yield out_user[s:s + self.batch_size], out_item[s:s + self.batch_size]

    def flush(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The rest in full batches; the tail smaller than a batch is dropped."""
        n = self.size // self.batch_size * self.batch_size
        perm = self.rng.permutation(self.size)[:n]
        user, item = self._user[perm], self._item[perm]
        self.size = 0
        for s in range(0, n, self.batch_size):
            yield user[s:s + self.batch_size], item[s:s + self.batch_size]


class StreamReader(torch.utils.data.IterableDataset):
    """One rank's training rows for an epoch, as batches {"user_idx", "item_idx"} of int64 tensors.

    Give it to a `torch.utils.data.DataLoader(reader, batch_size=None, num_workers=workers)`:
    each DataLoader worker reads its own fragments (`shard_fragments`). Call `set_epoch` before
    iterating. `steps()` is the exact number of full batches this rank yields in the epoch,
    known from the manifest and the held-out counts without reading.
    """

    def __init__(self, fragments: list[Fragment], columns: tuple[str, str], users: IdMap, items: IdMap, *,
                 batch_size: int, options: StreamOptions, seed: int = 0, rank: int = 0, world: int = 1,
                 holdout: HoldoutFilter | None = None, dropped: np.ndarray | None = None) -> None:
        super().__init__()
        self.fragments, self.columns = fragments, columns
        self.users, self.items = users, items
        self.batch_size, self.options, self.seed = batch_size, options, seed
        self.rank, self.world = rank, world
        self.holdout = holdout
        rows = np.array([f.rows for f in fragments], dtype=np.int64)
        self.train_rows = rows - (dropped if dropped is not None else 0)   # rows each fragment yields
        self.epoch = 0
        self.peak_buffered = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def my_fragments(self, worker: int = 0) -> np.ndarray:
        return shard_fragments(len(self.fragments), epoch=self.epoch, seed=self.seed, rank=self.rank,
                               world=self.world, worker=worker, workers=self.options.workers)

    def steps(self) -> int:
        """Full batches this rank yields this epoch (each worker drops its tail)."""
        return int(sum(self.train_rows[self.my_fragments(w)].sum() // self.batch_size
                       for w in range(max(self.options.workers, 1))))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        if info is not None and info.num_workers != max(self.options.workers, 1):
            raise TowerrecError(f"StreamReader built for {self.options.workers} workers runs under "
                                f"{info.num_workers}: pass num_workers=options.workers to the DataLoader")
        for user, item in self.rows(worker):
            yield {"user_idx": torch.from_numpy(user), "item_idx": torch.from_numpy(item)}

    def rows(self, worker: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(user_idx, item_idx) batches of `batch_size` of one worker, shuffled."""
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, 3])
        buffer = ShuffleBuffer(self.options.shuffle_buffer, self.batch_size, rng)
        try:
            for u, i in read_ids([self.fragments[f] for f in self.my_fragments(worker)], self.columns,
                                 self.users, self.items, read_rows=self.options.read_rows, holdout=self.holdout):
                yield from buffer.add(u, i)
            yield from buffer.flush()
        finally:
            self.peak_buffered = max(self.peak_buffered, buffer.peak)


def read_ids(fragments: list[Fragment], columns: tuple[str, str], users: IdMap, items: IdMap, *, read_rows: int,
             holdout: HoldoutFilter | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(user_idx, item_idx) int64 arrays of the fragments in order, `read_rows` at a time, the
    held-out pairs removed; only the two id columns are read."""
    user_lookup, item_lookup = IdLookup(users), IdLookup(items)
    files: dict[str, pq.ParquetFile] = {}
    for frag in fragments:
        if frag.path not in files:
            files.clear()              # one file open at a time
            files[frag.path] = pq.ParquetFile(frag.path)
        for batch in files[frag.path].iter_batches(batch_size=read_rows, row_groups=[frag.row_group],
                                                   columns=list(columns), use_threads=False):
            u, i = user_lookup(batch.column(0)), item_lookup(batch.column(1))
            if holdout is not None:
                keep = holdout.keep(u, i)
                u, i = u[keep], i[keep]
            yield u, i


def check_shards(n_fragments: int, world: int, workers: int) -> None:
    """Every global worker needs a fragment, or some rank trains on nothing."""
    need = world * max(workers, 1)
    if n_fragments < need:
        raise TowerrecError(f"the log has {n_fragments} row groups for {need} readers ({world} rank(s) x "
                            f"{max(workers, 1)} worker(s)): write it with smaller row groups (pyarrow "
                            f"row_group_size), or use fewer workers")

