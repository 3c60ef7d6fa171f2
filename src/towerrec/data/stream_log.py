"""The one preparatory pass over a streamed log: id vocabularies, counts and a held-out user sample.

Vocabulary, not hashing. One pass over the two id columns (and the time column, for the sample)
collects every distinct user and item id with its count; the vocabularies are sorted, so they do
not depend on the order of files or row groups, and every rank of a DDP run builds the same ones
from the same pass. Memory grows with the number of distinct ids (an `IdMap` of Python strings,
~100 bytes an id), never with the number of rows. Hashing ids into a fixed table would avoid even
that, but collisions merge users or items, and the artifact must still map the user's own ids for
serving; `TwoTowerConfig.hash_buckets` stays available on top of the exact vocabulary.

Held-out sample, written in the same pass (streamed logs have no split): users are sampled by a
seeded hash of their id, keeping the `holdout_users` smallest hashes (a bottom-k sample, uniform
over distinct users, with memory bounded by those users' rows whatever the log size). Each sampled
user with at least 3 interactions gives their last one (by the time column, else file order) to
test and the one before to valid, leave-one-out style; those pairs never reach training. Valid
drives early stopping; both are evaluated with full ranking and the user's training items masked,
as `towerrec evaluate` does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from towerrec.data.columns import detect_columns
from towerrec.data.idmap import HasIdMaps, IdMap
from towerrec.data.interactions import Interactions
from towerrec.data.stream import (
    Fragment,
    HoldoutFilter,
    StreamOptions,
    StreamReader,
    manifest,
    read_ids,
)
from towerrec.data.validate import Where
from towerrec.errors import DataError

_NO_HASH = np.iinfo(np.uint64).max


@dataclass
class Holdout:
    """The held-out sample on the stream's id maps."""

    valid: Interactions
    test: Interactions
    train_seen: sp.csr_matrix        # [n_users, n_items]: the sampled users' training items (others empty)
    filter: HoldoutFilter
    dropped: np.ndarray              # [n_fragments] rows each fragment loses to the sample

    @property
    def n_users(self) -> int:
        return int(self.filter.users.sum())

    def test_exclusion(self) -> sp.csr_matrix:
        """Train + valid items of the sampled users (masked when ranking for test)."""
        out = (self.train_seen + self.valid.to_csr()).tocsr()
        out.data[:] = 1
        return out


@dataclass
class StreamLog(HasIdMaps):
    """A Parquet log prepared for streaming: fragments, columns, vocabularies, counts, held-out sample."""

    source: str
    fragments: list[Fragment]
    columns: tuple[str, str]
    time_col: str | None
    user_map: IdMap
    item_map: IdMap
    user_counts: np.ndarray          # training rows per user (held-out rows removed)
    item_counts: np.ndarray
    n_rows: int                      # every row of the log
    holdout: Holdout
    options: StreamOptions
    seed: int
    scan_seconds: float

    @property
    def n_train_rows(self) -> int:
        return int(self.user_counts.sum())

    def reader(self, batch_size: int, *, rank: int = 0, world: int = 1) -> StreamReader:
        """This rank's training rows in batches of `batch_size` (the local batch)."""
        return StreamReader(self.fragments, self.columns, self.user_map, self.item_map, batch_size=batch_size,
                            options=self.options, seed=self.seed, rank=rank, world=world,
                            holdout=self.holdout.filter, dropped=self.holdout.dropped)

    def seen_matrix(self) -> sp.csr_matrix:
        """Every user's training items as a CSR [n_users, n_items] (one more pass, no sort of the log):
        rows are placed by a counting sort on the vocabulary's user counts, 4 bytes an interaction
        (plus float32 ones, the artifact's format)."""
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(self.user_counts, out=indptr[1:])
        indices = np.empty(int(indptr[-1]), dtype=np.int32)
        cursor = indptr[:-1].copy()
        for u, i in read_ids(self.fragments, self.columns, self.user_map, self.item_map,
                             read_rows=self.options.read_rows, holdout=self.holdout.filter):
            order = np.argsort(u, kind="stable")
            us = u[order]
            first = np.flatnonzero(np.r_[True, us[1:] != us[:-1]])
            sizes = np.diff(np.r_[first, len(us)])
            rank = np.arange(len(us)) - np.repeat(first, sizes)
            indices[cursor[us] + rank] = i[order]
            cursor[us[first]] += sizes
        m = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                          shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        m.data[:] = 1
        return m

    def summary(self) -> dict:
        return {"source": self.source, "fragments": len(self.fragments), "rows": self.n_rows,
                "train_rows": self.n_train_rows, "users": self.n_users, "items": self.n_items,
                "holdout_users": self.holdout.n_users, "valid_rows": len(self.holdout.valid),
                "test_rows": len(self.holdout.test), "columns": list(self.columns), "time_col": self.time_col,
                "scan_seconds": round(self.scan_seconds, 2)}


class _Counts:
    """Distinct ids with counts, merged in bulk from per-batch counts (amortised: a merge when the
    pending values outgrow twice the merged ones)."""

    def __init__(self) -> None:
        self.values: list[pa.Array] = []
        self.counts: list[np.ndarray] = []
        self.pending = 0
        self.size = 0

    def add(self, values: pa.Array, counts: np.ndarray) -> None:
        self.values.append(values)
        self.counts.append(counts)
        self.pending += len(values)
        if self.pending > max(2 * self.size, 1 << 18):
            self._merge()

    def _merge(self) -> None:
        table = pa.table({"id": pa.concat_arrays(self.values), "n": pa.array(np.concatenate(self.counts))})
        grouped = table.group_by("id").aggregate([("n", "sum")])
        self.values = [grouped.column("id").combine_chunks()]
        self.counts = [grouped.column("n_sum").to_numpy()]
        self.size, self.pending = len(grouped), 0

    def result(self, name: str) -> tuple[IdMap, np.ndarray]:
        self._merge()
        values, counts = self.values[0], self.counts[0]
        order = pc.sort_indices(values).to_numpy()
        ids = values.take(pa.array(order)).to_numpy(zero_copy_only=False)
        return IdMap(ids, name=name), counts[order].astype(np.int64)


def _encode(column: pa.Array | pa.ChunkedArray, where: str, name: str) -> tuple[pa.Array, np.ndarray]:
    """(dictionary of distinct string ids, codes [rows] int64) of one batch's id column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        raise DataError(f"{column.null_count:,} missing ids in a batch", source=where, column=name,
                        expected="an id on every row (drop or fill the rows first)")
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    dictionary = column.dictionary
    if not pa.types.is_string(dictionary.type):
        dictionary = dictionary.cast(pa.string())
    return dictionary, column.indices.to_numpy(zero_copy_only=False).astype(np.int64)


class _Sample:
    """Bottom-k users by seeded id hash, with all their rows (user and item ids, time, row, fragment)."""

    def __init__(self, k: int, seed: int) -> None:
        self.k, self.key = k, f"towerrec{seed:08d}"[-16:]
        self.threshold = _NO_HASH
        self.parts: list[dict] = []
        self.held = 0
        self.last_pruned = 0

    def add(self, udict: pa.Array, ucodes: np.ndarray, ucounts: np.ndarray, idict: pa.Array, icodes: np.ndarray,
            times: np.ndarray, first_row: int, fragment: int) -> None:
        if self.k == 0:
            return
        present = np.flatnonzero(ucounts)
        hashes = np.full(len(udict), _NO_HASH, dtype=np.uint64)
        hashes[present] = pd.util.hash_array(udict.take(pa.array(present)).to_numpy(zero_copy_only=False),
                                             hash_key=self.key)
        rows = np.flatnonzero(hashes[ucodes] <= self.threshold)
        if len(rows) == 0:
            return
        self.parts.append({"hash": hashes[ucodes[rows]], "user": udict.take(pa.array(ucodes[rows])),
                           "item": idict.take(pa.array(icodes[rows])), "time": times[rows],
                           "row": first_row + rows, "fragment": np.full(len(rows), fragment, dtype=np.int32)})
        self.held += len(rows)
        if self.held > max(2 * self.last_pruned, 1 << 16):
            self.prune()

    def prune(self) -> dict:
        """Keep the k smallest user hashes; returns the rows held."""
        if not self.parts:
            return {}
        cols = {key: (pa.concat_arrays([p[key] for p in self.parts]) if key in ("user", "item")
                      else np.concatenate([p[key] for p in self.parts])) for key in self.parts[0]}
        distinct = np.unique(cols["hash"])
        if len(distinct) > self.k:
            self.threshold = distinct[self.k - 1]
            keep = np.flatnonzero(cols["hash"] <= self.threshold)
            cols = {key: (v.take(pa.array(keep)) if isinstance(v, pa.Array) else v[keep]) for key, v in cols.items()}
        self.parts = [cols]
        self.held = self.last_pruned = len(cols["hash"])
        return cols


def scan_log(source: str, options: StreamOptions = StreamOptions(), *, seed: int = 0) -> StreamLog:
    """The one pass: fragments, columns, sorted id vocabularies with counts, the held-out sample."""
    options.validate()
    start = time.perf_counter()
    fragments = manifest(source)
    names = pq.read_schema(fragments[0].path).names
    cols = detect_columns(names, Where(fragments[0].path, is_file=True), user=options.user_col,
                          item=options.item_col, time=options.time_col, rating=None)
    read = [cols.user, cols.item] + ([cols.time] if cols.time else [])
    users, items, sample = _Counts(), _Counts(), _Sample(options.holdout_users, seed)
    files: dict[str, pq.ParquetFile] = {}
    row = 0
    for f, frag in enumerate(fragments):
        if frag.path not in files:
            files.clear()
            files[frag.path] = pq.ParquetFile(frag.path)
            missing = [c for c in read if c not in files[frag.path].schema_arrow.names]
            if missing:
                raise DataError(f"no column(s) {missing} (the first file has them)", source=frag.path,
                                expected="the same columns in every file of the log")
        for batch in files[frag.path].iter_batches(batch_size=options.read_rows, row_groups=[frag.row_group],
                                                   columns=read, use_threads=False):
            where = f"{frag.path} (row group {frag.row_group})"
            udict, ucodes = _encode(batch.column(0), where, cols.user)
            idict, icodes = _encode(batch.column(1), where, cols.item)
            ucounts = np.bincount(ucodes, minlength=len(udict))
            icounts = np.bincount(icodes, minlength=len(idict))
            for counter, dictionary, counts in ((users, udict, ucounts), (items, idict, icounts)):
                present = np.flatnonzero(counts)
                counter.add(dictionary.take(pa.array(present)), counts[present])
            times = _times(batch.column(2), where, cols.time) if cols.time else np.zeros(len(batch))
            sample.add(udict, ucodes, ucounts, idict, icodes, times, row, f)
            row += len(batch)
    user_map, user_counts = users.result("user")
    item_map, item_counts = items.result("item")
    holdout = _holdout(sample.prune(), user_map, item_map, len(fragments))
    held_users = np.bincount(holdout.held_user, minlength=len(user_map))
    held_items = np.bincount(holdout.held_item, minlength=len(item_map))
    return StreamLog(str(source), fragments, (cols.user, cols.item), cols.time, user_map, item_map,
                     user_counts - held_users, item_counts - held_items, row, holdout.result, options, seed,
                     time.perf_counter() - start)


def _times(column: pa.Array | pa.ChunkedArray, where: str, name: str) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        column = column.cast(pa.int64())
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise DataError(f"time values of type {column.type}", source=where, column=name,
                        expected="numbers or timestamps (or --time-col naming another column)")
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


@dataclass
class _Held:
    result: Holdout
    held_user: np.ndarray   # user index of every row removed from training
    held_item: np.ndarray


def _holdout(rows: dict, user_map: IdMap, item_map: IdMap, n_fragments: int) -> _Held:
    n_users, n_items = len(user_map), len(item_map)
    empty = np.zeros(0, dtype=np.int64)
    if not rows:
        u = i = frag = tm = row = empty
    else:
        u = user_map.get_index(rows["user"].to_numpy(zero_copy_only=False))
        i = item_map.get_index(rows["item"].to_numpy(zero_copy_only=False))
        frag, tm, row = rows["fragment"], rows["time"], rows["row"]
    order = np.lexsort([row, tm, u])                     # by user, then time, then file order
    u, i, frag = u[order], i[order], frag[order]
    first = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if len(u) else empty
    sizes = np.diff(np.r_[first, len(u)])
    from_end = np.repeat(first + sizes, sizes) - 1 - np.arange(len(u))   # 0 = the user's last row
    eligible = np.repeat(sizes >= 3, sizes)
    is_test, is_valid = eligible & (from_end == 0), eligible & (from_end == 1)
    keys = u * n_items + i
    held_keys = np.unique(keys[is_test | is_valid])
    held = np.isin(keys, held_keys)                      # every copy of a held-out pair
    sampled = np.zeros(n_users, dtype=bool)
    sampled[u] = True

    def part(mask: np.ndarray) -> Interactions:
        return Interactions(user_idx=u[mask], item_idx=i[mask], weight=np.ones(int(mask.sum()), np.float32),
                            user_map=user_map, item_map=item_map)

    train_seen = part(~held).to_csr()
    result = Holdout(valid=part(is_valid), test=part(is_test), train_seen=train_seen,
                     filter=HoldoutFilter(sampled, held_keys, n_items),
                     dropped=np.bincount(frag[held], minlength=n_fragments).astype(np.int64))
    return _Held(result, u[held], i[held])
