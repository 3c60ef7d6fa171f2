"""Top-k retrieval over item embeddings: exact (matmul + top-k) or approximate (FAISS), one interface.

Both answer `search(queries [n, d], k, exclude=, allowed=)` with item indices [n, k] (-1 pads a
row only when fewer than k items are left after exclusions) and scores [n, k] (NaN on padding).
Exclusions (seen items, `exclude_items`) are a CSR [n, n_items] aligned with the queries; filters
are one boolean mask [n_items] shared by all queries.

An ANN index returns *candidates*, so exclusions and filters would silently shorten its lists.
`FaissIndex` hands them to FAISS itself where the structure supports it (HNSW and IVF search with
an `IDSelector` in their search parameters: allowed items as a bitmap, a row's exclusions as
"not in this batch"). The 4-bit fast-scan PQ structure has no selector support, so there it
over-fetches (k + the row's exclusions, scaled up by the filter's selectivity), drops the
excluded, and refetches twice as many for rows still short. Rows still short, and filters that
keep few items, are answered exactly on the allowed subset. A row always gets k items when k
items are allowed and not excluded.

**A catalogue that changes** (`towerrec serve`'s `POST /items` and `DELETE /items/{id}`). Both
index kinds grow by `with_items(all_vectors, ties)`, a *new* index (copy-on-write: the old one keeps
answering until the server swaps them): exact search stacks the vectors; FAISS clones its index and
adds the new vectors, whose labels continue the item indices (HNSW, IVF and the fast-scan PQ under
its refinement layer all take `add`). Retired items need no structure at all for correctness: the
server passes them as excluded in `allowed`, which every path already honours (exact masking,
HNSW/IVF `IDSelector`s inside the search, PQ over-fetch). What FAISS 1.15 can physically remove
was tested (`tests/serve/test_index.py::test_faiss_removal_support`): `IndexIVFFlat.remove_ids`
removes and every other label stays put, so IVF drops retired vectors (`without(ids)`); HNSW has
no removal, and `IndexRefineFlat` over `IndexPQFastScan` refuses it (a bare `IndexPQFastScan` or
`IndexFlat` removes but renumbers every later label, which would break the item index mapping).
So on HNSW and PQ a retired vector stays as a tombstone, filtered at search time; rebuild (reload
an artifact) when tombstones pile up. Choose `--faiss ivf` for catalogues with heavy churn.

>>> index = build_index(item_embeddings, metric="ip", kind="auto")   # faiss from 50K items up
>>> idx, scores = index.search(user_embeddings, k=10, exclude=seen_rows)
>>> recall_at_k(index, ExactIndex(item_embeddings), user_embeddings, k=10)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch

from towerrec.errors import TowerrecError
from towerrec.ranking import TieOrder, TopK, check_finite, pad, rank_batches, rank_row

METRICS = ("ip", "cosine")
KINDS = ("exact", "faiss", "auto")
#: `kind="auto"` picks FAISS from this catalogue size up: below it exact top-k of one query is
#: well under 10 ms on 2 cores (100K x 64-d: ~1-2 ms), and an ANN index is only a recall cost.
AUTO_FAISS_ITEMS = 200_000
#: Exact search scores only the allowed items when a filter keeps at most 1/_SUBSET_BELOW of them
#: (1M x 64-d, half allowed: gathering the subset took 250 ms a query, masking all scores ~30 ms).
_SUBSET_BELOW = 16
#: Scores [chunk, n_items] are computed in chunks of at most this many floats (64 MiB).
_CHUNK_FLOATS = 1 << 24


class Index(Protocol):
    """What serving needs from an index (exact and FAISS both satisfy it)."""

    kind: str
    metric: str

    @property
    def n_items(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def search(self, queries: np.ndarray, k: int, *, exclude: sp.csr_matrix | None = None,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def describe(self) -> dict: ...


def _as_float32(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _check(queries: np.ndarray, dim: int, k: int, n_items: int, exclude: sp.csr_matrix | None,
           allowed: np.ndarray | None) -> np.ndarray:
    queries = _as_float32(queries)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise TowerrecError(f"queries must be [n, {dim}], got {list(queries.shape)}")
    if k <= 0:
        raise TowerrecError(f"k must be positive, got {k}")
    if exclude is not None and exclude.shape != (len(queries), n_items):
        raise TowerrecError(f"exclude must be [{len(queries)}, {n_items}] (a row per query), got {list(exclude.shape)}")
    if allowed is not None and (allowed.shape != (n_items,) or allowed.dtype != bool):
        raise TowerrecError(f"allowed must be a bool mask [{n_items}], got {allowed.dtype} {list(allowed.shape)}")
    return queries


class ExactIndex:
    """Brute force: scores = queries @ items.T in bounded chunks, ranked by `towerrec.ranking`
    (ties broken by the seeded tie order, as everywhere else).

    The reference every ANN index is measured against, and the default: it is exact and, up to a
    few hundred thousand items, fast enough for one query per request.
    """

    kind = "exact"

    def __init__(self, items: np.ndarray | torch.Tensor, metric: str = "ip", ties: TieOrder | None = None) -> None:
        if metric not in METRICS:
            raise TowerrecError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        items = _as_float32(items)
        self._items = torch.from_numpy(_normalise(items) if metric == "cosine" else items)  # [n_items, d]
        self.ties = ties if ties is not None else TieOrder.seeded(len(items), 0)
        if len(self.ties) != len(items):
            raise TowerrecError(f"the tie order covers {len(self.ties)} items, the index {len(items)}")

    @property
    def n_items(self) -> int:
        return self._items.shape[0]

    @property
    def dim(self) -> int:
        return self._items.shape[1]

    def describe(self) -> dict:
        return {"kind": self.kind, "metric": self.metric, "n_items": self.n_items, "dim": self.dim}

    def with_items(self, items: np.ndarray | torch.Tensor, ties: TieOrder) -> "ExactIndex":
        """A new index over `items` (the old vectors first, then the added ones)."""
        return ExactIndex(items, self.metric, ties)

    def without(self, item_idx: np.ndarray) -> "ExactIndex":
        """Retired items are excluded at search time (`allowed`): nothing to remove."""
        return self

    def search(self, queries: np.ndarray, k: int, *, exclude: sp.csr_matrix | None = None,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = _check(queries, self.dim, k, self.n_items, exclude, allowed)
        if self.metric == "cosine":
            queries = _normalise(queries)
        # a selective filter: score only the allowed items (gathering them costs what scoring all would)
        if allowed is not None and allowed.sum() <= self.n_items // _SUBSET_BELOW:
            return self._search_subset(queries, k, exclude, np.flatnonzero(allowed))
        if len(queries) == 1:
            return self._search_one(queries[0], k, exclude, allowed)
        q = torch.from_numpy(queries)
        top = rank_batches(lambda pos: q[pos] @ self._items.T, np.arange(len(q)), k, self.ties,
                           exclude=[exclude] if exclude is not None else [], allowed=allowed,
                           batch_size=max(1, _CHUNK_FLOATS // max(self.n_items, 1)), who="the index", show=False)
        top = pad(top, k)
        return top.item_idx, top.scores

    def _search_one(self, query: np.ndarray, k: int, exclude: sp.csr_matrix | None,
                    allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """One query (a serving request) in numpy: same result as the batched path, ~10x fewer
        microseconds of call overhead."""
        # torch for the product: it honours the serving thread count (numpy's BLAS has its own pool)
        scores = torch.mv(self._items, torch.from_numpy(query)).numpy()     # [n_items]
        if not np.isfinite(scores).all():
            check_finite(torch.from_numpy(scores)[None, :], "the index")
        if allowed is not None:
            scores[~allowed] = -np.inf
        if exclude is not None and exclude.nnz:
            scores[exclude.indices] = -np.inf
        idx, vals, tied = rank_row(scores, k, self.ties)
        keep = np.isfinite(vals)
        top = TopK(np.where(keep, idx, -1)[None, :], np.where(keep, vals, np.nan).astype(np.float32)[None, :],
                   np.array([tied]))
        top = pad(top, k)
        return top.item_idx, top.scores

    def _search_subset(self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None,
                       subset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the items in `subset` (the tie order restricted to them)."""
        n = len(queries)
        if len(subset) == 0:
            return np.full((n, k), -1, dtype=np.int64), np.full((n, k), np.nan, dtype=np.float32)
        items = self._items[torch.from_numpy(subset)]                     # [n_subset, d]
        q = torch.from_numpy(queries)
        sub_exclude = exclude[:, subset].tocsr() if exclude is not None else None
        top = rank_batches(lambda pos: q[pos] @ items.T, np.arange(n), k, TieOrder(self.ties.keys[subset]),
                           exclude=[sub_exclude] if sub_exclude is not None else [],
                           batch_size=max(1, _CHUNK_FLOATS // len(subset)), who="the index", show=False)
        top = pad(top, k)
        return np.where(top.item_idx >= 0, subset[np.maximum(top.item_idx, 0)], -1), top.scores


@dataclass(frozen=True)
class FaissConfig:
    """FAISS settings. The default, "pq", scans 4-bit product-quantised codes with SIMD (fast-scan)
    and re-scores the best `pq_rerank` candidates exactly. Measured on 1M random-normal 64-d items,
    2 loaded cores (benchmarks/serve.py): pq builds in ~10 s and reaches recall@10 ~0.99 at ~1 ms a
    query; HNSW (M=32) took 17 min to build and needed efSearch 512 for recall 0.92; IVF-Flat
    reached 0.86 only when probing a quarter of its lists. Random vectors have no cluster structure
    for IVF or a graph to use; learned embeddings do, so HNSW/IVF stay available."""

    structure: str = "pq"       # "pq" (fast-scan PQ + exact re-rank), "hnsw" or "ivf"
    pq_m: int = 0               # sub-quantizers of 4 bits; 0: dim / 2 (32 for 64-d: 16 bytes an item)
    pq_rerank: int = 1000       # candidates re-scored exactly per query (at least 2 x the fetch)
    hnsw_m: int = 32            # graph degree: more = better recall, more memory and build time
    ef_construction: int = 80
    ef_search: int = 128        # the recall/latency knob at query time (2 x the fetch at least)
    ivf_lists: int = 0          # 0: 4 * sqrt(n_items)
    ivf_probe: int = 64
    exact_below: int = 20_000   # answer exactly when a filter leaves at most this many items
    max_fetch: int = 2048       # rows still short after fetching this many go exact
    seed: int = 0


STRUCTURES = ("pq", "hnsw", "ivf")


class FaissIndex:
    """Approximate top-k with FAISS (HNSW or IVF-Flat), exact answers kept where ANN cannot give them.

    Inner product is used for both metrics (cosine normalises items and queries first). Build time
    grows with the catalogue (1M x 64-d HNSW: minutes on 2 cores); `save`/`load` keep a built index.
    """

    kind = "faiss"

    def __init__(self, items: np.ndarray | torch.Tensor, metric: str = "ip", config: FaissConfig | None = None,
                 *, ties: TieOrder | None = None, _index: object | None = None) -> None:
        import faiss

        self.config = config or FaissConfig()
        if self.config.structure not in STRUCTURES:
            raise TowerrecError(f"faiss structure must be one of {STRUCTURES}, got {self.config.structure!r}")
        self.exact = ExactIndex(items, metric, ties)   # the refill path, and normalised items for cosine
        self.metric = metric
        vectors = self.exact._items.numpy()
        start = time.perf_counter()
        self._index = _index if _index is not None else self._build(faiss, vectors)
        self.build_seconds = time.perf_counter() - start
        self.removed = 0        # vectors physically removed (IVF); elsewhere retired items are tombstones

    def _build(self, faiss, vectors: np.ndarray) -> object:
        cfg, (n, d) = self.config, vectors.shape
        rng = np.random.default_rng(cfg.seed)
        if cfg.structure == "pq":
            if n < 1024:   # too few items to train 16 centroids per sub-space (and nothing to gain)
                pq = faiss.IndexFlatIP(d)
            else:
                pq = faiss.IndexPQFastScan(d, self._pq_m(d), 4, faiss.METRIC_INNER_PRODUCT)
                pq.train(vectors if n <= 100_000 else vectors[rng.choice(n, 100_000, replace=False)])
            index = faiss.IndexRefineFlat(pq)      # keeps the float vectors for the exact re-rank
            index.add(vectors)
            return index
        if cfg.structure == "hnsw":
            index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = cfg.ef_construction
            index.add(vectors)
            return index
        lists = cfg.ivf_lists or max(1, int(4 * np.sqrt(n)))
        lists = min(lists, max(1, n // 39))   # faiss wants >= 39 training points per list
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, lists, faiss.METRIC_INNER_PRODUCT)
        train = vectors if n <= 256 * lists else vectors[rng.choice(n, 256 * lists, replace=False)]
        index.train(train)
        index.add(vectors)
        return index

    def with_items(self, items: np.ndarray | torch.Tensor, ties: TieOrder) -> "FaissIndex":
        """A new index over `items` (the first `n_items` rows are this index's vectors): a clone of
        the FAISS structure with the new vectors added; this one is left as it is."""
        import faiss

        out = FaissIndex(items, self.metric, self.config, ties=ties, _index=faiss.clone_index(self._index))
        new = out.exact._items.numpy()[self.n_items:]          # normalised for cosine, as at build
        if len(new):
            out._index.add(np.ascontiguousarray(new))
        out.removed = self.removed
        return out

    def without(self, item_idx: np.ndarray) -> "FaissIndex":
        """IVF: a clone without the vectors of `item_idx` (labels of the others unchanged). HNSW
        and PQ cannot remove (see the module docstring): the same index, the items stay as
        tombstones that the caller's `allowed` filters out."""
        if self.config.structure != "ivf" or not len(item_idx):
            return self
        import faiss

        clone = faiss.clone_index(self._index)
        ids = np.ascontiguousarray(item_idx, dtype=np.int64)
        removed = clone.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))
        out = FaissIndex(self.exact._items.numpy(), "ip", self.config, ties=self.exact.ties, _index=clone)
        out.metric, out.exact = self.metric, self.exact               # the exact twin is unchanged
        out.removed = self.removed + int(removed)
        return out

    def _pq_m(self, d: int) -> int:
        if self.config.pq_m:
            if d % self.config.pq_m:
                raise TowerrecError(f"pq_m={self.config.pq_m} must divide the embedding size {d}")
            return self.config.pq_m
        return max(m for m in range(1, max(1, d // 2) + 1) if d % m == 0)

    @property
    def n_items(self) -> int:
        return self.exact.n_items

    @property
    def dim(self) -> int:
        return self.exact.dim

    def describe(self) -> dict:
        cfg = self.config
        if cfg.structure == "pq":
            params = {"pq_m": self._pq_m(self.dim), "pq_bits": 4, "pq_rerank": cfg.pq_rerank}
        elif cfg.structure == "hnsw":
            params = {"hnsw_m": cfg.hnsw_m, "ef_construction": cfg.ef_construction, "ef_search": cfg.ef_search}
        else:
            params = {"ivf_lists": int(self._index.nlist), "ivf_probe": cfg.ivf_probe}
        return {"kind": self.kind, "structure": cfg.structure, "metric": self.metric, "n_items": self.n_items,
                "dim": self.dim, "build_seconds": round(self.build_seconds, 3),
                "removal": "remove_ids" if cfg.structure == "ivf" else "tombstones", **params}

    def _raw(self, queries: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        fetch = min(fetch, self.n_items)
        # per-call parameters, not index attributes: requests run concurrently in threads
        if self.config.structure == "pq":
            k_factor = max(2.0, self.config.pq_rerank / fetch)
            params = faiss.IndexRefineSearchParameters(k_factor=k_factor)
        elif self.config.structure == "hnsw":
            # candidates deep in an HNSW list are less accurate than its head: search twice as wide
            params = faiss.SearchParametersHNSW(efSearch=max(self.config.ef_search, 2 * fetch))
        else:
            params = faiss.SearchParametersIVF(nprobe=self.config.ivf_probe)
        scores, labels = self._index.search(queries, fetch, params=params)
        return labels.astype(np.int64), scores

    def _search_selected(self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None,
                         allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """HNSW / IVF: FAISS skips excluded and filtered-out items during the search itself (an
        `IDSelector` per query row); rows that come back short are answered exactly."""
        import faiss

        n, cfg = len(queries), self.config
        out_idx = np.full((n, k), -1, dtype=np.int64)
        out_scores = np.full((n, k), np.nan, dtype=np.float32)
        fetch = min(k, self.n_items)
        keep_alive: list = []                       # FAISS holds raw pointers: keep the selectors alive
        base = None
        if allowed is not None:
            bits = np.packbits(allowed.astype(np.uint8), bitorder="little")
            keep_alive.append(bits)
            base = faiss.IDSelectorBitmap(self.n_items, faiss.swig_ptr(bits))
            keep_alive.append(base)
        short = []
        for row in range(n):
            sel = base
            if exclude is not None and exclude.indptr[row + 1] > exclude.indptr[row]:
                ids = np.ascontiguousarray(exclude.indices[exclude.indptr[row]:exclude.indptr[row + 1]], dtype=np.int64)
                batch = faiss.IDSelectorBatch(len(ids), faiss.swig_ptr(ids))
                sel = faiss.IDSelectorNot(batch) if base is None else faiss.IDSelectorAnd(base, faiss.IDSelectorNot(batch))
                keep_alive += [ids, batch, sel]
            if cfg.structure == "hnsw":
                params = faiss.SearchParametersHNSW(efSearch=max(cfg.ef_search, 2 * fetch))
            else:
                params = faiss.SearchParametersIVF(nprobe=cfg.ivf_probe)
            if sel is not None:
                params.sel = sel
            scores, labels = self._index.search(queries[row:row + 1], fetch, params=params)
            got = labels[0] >= 0
            out_idx[row, :fetch] = np.where(got, labels[0], -1)
            out_scores[row, :fetch] = np.where(got, scores[0], np.nan)
            short.append(not got.all())
        available = self._available(n, exclude, allowed)
        todo = np.flatnonzero(np.asarray(short, dtype=bool) & (available > (out_idx >= 0).sum(axis=1)))
        if len(todo):
            sub = exclude[todo] if exclude is not None else None
            out_idx[todo], out_scores[todo] = self.exact.search(queries[todo], k, exclude=sub, allowed=allowed)
        return out_idx, out_scores

    def _available(self, n: int, exclude: sp.csr_matrix | None, allowed: np.ndarray | None) -> np.ndarray:
        """Items each row can still get: the allowed ones minus its excluded allowed ones."""
        n_allowed = self.n_items if allowed is None else int(allowed.sum())
        if exclude is None:
            return np.full(n, n_allowed, dtype=np.int64)
        if allowed is not None:
            return n_allowed - np.diff(exclude.multiply(allowed[None, :].astype(np.float32)).tocsr().indptr)
        return n_allowed - np.diff(exclude.indptr)

    def search(self, queries: np.ndarray, k: int, *, exclude: sp.csr_matrix | None = None,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = _check(queries, self.dim, k, self.n_items, exclude, allowed)
        if self.metric == "cosine":
            queries = _normalise(queries)
        n, cfg = len(queries), self.config
        n_allowed = self.n_items if allowed is None else int(allowed.sum())
        if n_allowed <= cfg.exact_below and n_allowed < self.n_items:
            return self.exact.search(queries, k, exclude=exclude, allowed=allowed)
        if exclude is not None and not exclude.has_canonical_format:
            exclude = exclude.copy()
            exclude.sum_duplicates()         # a repeated column must not count twice below
        if cfg.structure in ("hnsw", "ivf") and (exclude is not None or allowed is not None):
            return self._search_selected(queries, k, exclude, allowed)
        if exclude is not None and not exclude.has_canonical_format:
            exclude = exclude.copy()
            exclude.sum_duplicates()         # a repeated column must not count twice below
        n_excluded = (np.diff(exclude.indptr) if exclude is not None else np.zeros(n, dtype=np.int64))
        want = np.minimum(k, np.maximum(self._available(n, exclude, allowed), 0))
        out_idx = np.full((n, k), -1, dtype=np.int64)
        out_scores = np.full((n, k), np.nan, dtype=np.float32)
        selectivity = n_allowed / self.n_items
        fetch = np.ceil((k + n_excluded) / selectivity * 1.2).astype(np.int64) + 4
        todo = np.flatnonzero(want > 0)
        while len(todo):
            f = int(fetch[todo].max())
            if f > min(cfg.max_fetch, self.n_items):
                break
            labels, scores = self._raw(queries[todo], f)
            keep = labels >= 0
            if allowed is not None:
                keep &= allowed[np.maximum(labels, 0)]
            if exclude is not None:
                keep &= ~_stored(exclude, todo, labels)
            got = keep.sum(axis=1)
            done = got >= want[todo]
            # stable sort puts the kept candidates first, in FAISS's (descending score) order
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            rows_idx = np.take_along_axis(labels, order, axis=1)
            rows_scores = np.take_along_axis(scores, order, axis=1)
            kept = np.take_along_axis(keep, order, axis=1)
            d = todo[done]
            width = rows_idx.shape[1]
            out_idx[d, :width] = np.where(kept[done], rows_idx[done], -1)
            out_scores[d, :width] = np.where(kept[done], rows_scores[done], np.nan)
            todo = todo[~done]
            fetch[todo] *= 2
        if len(todo):   # still short after max_fetch: exact on these rows only
            sub_exclude = exclude[todo] if exclude is not None else None
            idx, vals = self.exact.search(queries[todo], k, exclude=sub_exclude, allowed=allowed)
            out_idx[todo], out_scores[todo] = idx, vals
        return out_idx, out_scores

    def save(self, path: str) -> None:
        import faiss

        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: str, items: np.ndarray | torch.Tensor, metric: str = "ip",
             config: FaissConfig | None = None, ties: TieOrder | None = None) -> "FaissIndex":
        import faiss

        return cls(items, metric, config, ties=ties, _index=faiss.read_index(str(path)))


def _stored(matrix: sp.csr_matrix, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """bool [len(rows), f]: is matrix[rows[b], labels[b, j]] stored? Vectorised via sorted keys."""
    sub = matrix[rows]
    if not sub.nnz:
        return np.zeros(labels.shape, dtype=bool)
    n_cols = np.int64(matrix.shape[1])
    keys = np.repeat(np.arange(len(rows), dtype=np.int64), np.diff(sub.indptr)) * n_cols + sub.indices
    query = np.arange(len(rows), dtype=np.int64)[:, None] * n_cols + np.maximum(labels, 0)
    return np.isin(query, keys)


def build_index(items: np.ndarray | torch.Tensor, metric: str = "ip", kind: str = "auto",
                config: FaissConfig | None = None, ties: TieOrder | None = None) -> ExactIndex | FaissIndex:
    """`exact`, `faiss`, or `auto` (FAISS from AUTO_FAISS_ITEMS items up, when faiss is installed)."""
    if kind not in KINDS:
        raise TowerrecError(f"index kind must be one of {KINDS}, got {kind!r}")
    n_items = len(items)
    if kind == "auto":
        kind = "faiss" if n_items >= AUTO_FAISS_ITEMS and _has_faiss() else "exact"
    if kind == "exact":
        return ExactIndex(items, metric, ties)
    if not _has_faiss():
        raise TowerrecError("--index faiss needs faiss-cpu: pip install 'towerrec[serve]'")
    return FaissIndex(items, metric, config, ties=ties)


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def recall_at_k(index: ExactIndex | FaissIndex, exact: ExactIndex, queries: np.ndarray, k: int = 10) -> float:
    """Mean |ANN top-k & exact top-k| / |exact top-k| over `queries` (1.0 for an exact index)."""
    got, _ = index.search(queries, k)
    ref, _ = exact.search(queries, k)
    hits = [len(set(a[a >= 0]) & set(b[b >= 0])) / max(1, int((b >= 0).sum())) for a, b in zip(got, ref)]
    return float(np.mean(hits)) if hits else float("nan")
