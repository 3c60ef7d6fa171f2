"""Exact and FAISS indexes: same answers, exclusions and filters never shorten a list, recall is measured."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from towerrec.errors import TowerrecError
from towerrec.index import ExactIndex, FaissConfig, FaissIndex, build_index, recall_at_k
from towerrec.ranking import TieOrder

pytest.importorskip("faiss")


def clustered(n_items: int, n_queries: int, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Items and queries around 20 centres: the structure real embeddings have and ANN relies on."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim)) * 3
    items = centres[rng.integers(0, 20, n_items)] + rng.standard_normal((n_items, dim))
    queries = centres[rng.integers(0, 20, n_queries)] + rng.standard_normal((n_queries, dim))
    return items.astype(np.float32), queries.astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return clustered(4000, 60)


ANN = {"pq": FaissConfig(structure="pq", pq_rerank=200, exact_below=100),
       "hnsw": FaissConfig(structure="hnsw", hnsw_m=32, ef_search=64, exact_below=100)}


@pytest.fixture(scope="module", params=list(ANN))
def hnsw(request, data):
    """Each FAISS structure that is meant to reach high recall (IVF is tested on its own below)."""
    return FaissIndex(data[0], "ip", ANN[request.param])


def brute(items, queries, k, metric="ip", exclude=None, allowed=None):
    if metric == "cosine":
        items = items / np.linalg.norm(items, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = queries.astype(np.float64) @ items.T.astype(np.float64)
    if exclude is not None:
        scores[exclude.toarray() > 0] = -np.inf
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.where(np.isfinite(np.take_along_axis(scores, order, 1)), order, -1)


def random_exclusions(n_rows: int, n_items: int, per_row: int, seed: int = 1) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    cols = np.concatenate([rng.choice(n_items, per_row, replace=False) for _ in range(n_rows)])
    return sp.csr_matrix((np.ones(len(cols), np.float32), cols, np.arange(n_rows + 1) * per_row),
                         shape=(n_rows, n_items))


def assert_valid(idx, k, exclude=None, allowed=None):
    for r, row in enumerate(idx):
        assert len(row) == k and (row >= 0).all(), f"row {r} is short: {row}"
        assert len(set(row)) == k
        if exclude is not None:
            assert not set(row) & set(exclude[r].indices), f"row {r} has excluded items"
        if allowed is not None:
            assert allowed[row].all(), f"row {r} has filtered-out items"


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_exact_matches_brute_force(data, metric):
    items, queries = data
    exclude = random_exclusions(len(queries), len(items), 30)
    allowed = np.random.default_rng(2).random(len(items)) < 0.7
    idx, scores = ExactIndex(items, metric).search(queries, 10, exclude=exclude, allowed=allowed)
    np.testing.assert_array_equal(idx, brute(items, queries, 10, metric, exclude, allowed))
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_exact_ties_follow_the_seeded_tie_order():
    items = np.ones((50, 4), np.float32)
    ties = TieOrder.seeded(50, seed=4)
    for queries in (np.ones((2, 4), np.float32), np.ones((1, 4), np.float32)):   # batched and one-query paths
        idx, _ = ExactIndex(items, ties=ties).search(queries, 5)
        np.testing.assert_array_equal(idx, [ties.permutation[:5]] * len(queries))


def test_selective_filter_uses_the_subset_and_keeps_order(data):
    items, queries = data
    allowed = np.zeros(len(items), bool)
    allowed[::97] = True                     # 42 items: the subset path
    exclude = random_exclusions(len(queries), len(items), 500)
    idx, _ = ExactIndex(items).search(queries, 10, exclude=exclude, allowed=allowed)
    np.testing.assert_array_equal(idx, brute(items, queries, 10, "ip", exclude, allowed))


def test_repeated_exclusions_do_not_shorten_lists():
    items = np.eye(8, dtype=np.float32)[:, :8]
    exclude = sp.csr_matrix((np.ones(6, np.float32), [0, 0, 0, 1, 1, 1], [0, 6]), shape=(1, 8))
    assert not exclude.has_canonical_format
    index = FaissIndex(items, config=FaissConfig(exact_below=0))
    idx, _ = index.search(np.ones((1, 8), np.float32), 6, exclude=exclude)
    assert sorted(idx[0]) == [2, 3, 4, 5, 6, 7]


def test_short_lists_are_padded_only_when_items_run_out():
    items = np.eye(6, dtype=np.float32)
    allowed = np.array([True, True, True, False, False, False])
    for index in (ExactIndex(items), FaissIndex(items, config=FaissConfig(exact_below=0))):
        idx, scores = index.search(items[:1], 5, allowed=allowed)
        assert idx[0, 0] == 0 and set(idx[0, 1:3]) == {1, 2} and list(idx[0, 3:]) == [-1, -1]
        assert np.isnan(scores[0, 3:]).all() and np.isfinite(scores[0, :3]).all()


def test_faiss_recall_and_agreement(data, hnsw):
    items, queries = data
    exact = ExactIndex(items)
    assert recall_at_k(exact, exact, queries) == 1.0
    assert recall_at_k(hnsw, exact, queries) >= 0.95
    assert hnsw.describe()["structure"] in ANN and hnsw.describe()["n_items"] == 4000


def test_faiss_refills_after_excluding_the_true_top(data, hnsw):
    """Exclude each query's exact top 40: a plain ANN top-10 would come back empty."""
    items, queries = data
    top = ExactIndex(items).search(queries, 40)[0]
    exclude = sp.csr_matrix((np.ones(top.size, np.float32), top.ravel(), np.arange(len(top) + 1) * 40),
                            shape=(len(queries), len(items)))
    idx, _ = hnsw.search(queries, 10, exclude=exclude)
    assert_valid(idx, 10, exclude=exclude)
    # ranks 41-50 of an ANN list: recall is lower than at the head (HNSW M=32: 0.94), but no row is short
    hits = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, brute(items, queries, 10, "ip", exclude))])
    assert hits >= 0.85


@pytest.mark.parametrize("fraction", [0.01, 0.2, 0.6])
def test_faiss_filters_always_fill_k(data, hnsw, fraction):
    items, queries = data
    allowed = np.random.default_rng(3).random(len(items)) < fraction
    exclude = random_exclusions(len(queries), len(items), 25)
    idx, _ = hnsw.search(queries, 10, exclude=exclude, allowed=allowed)
    assert_valid(idx, 10, exclude=exclude, allowed=allowed)
    hits = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, brute(items, queries, 10, "ip", exclude, allowed))])
    assert hits >= 0.9


@pytest.mark.parametrize("config", [FaissConfig(structure="hnsw", hnsw_m=8, ef_search=16, max_fetch=32, exact_below=0),
                                    FaissConfig(structure="pq", pq_rerank=64, max_fetch=32, exact_below=0)])
def test_rows_still_short_after_max_fetch_go_exact(data, config):
    items, queries = data
    index = FaissIndex(items, "ip", config)
    allowed = np.zeros(len(items), bool)
    allowed[::50] = True                     # 80 items: 2% selectivity, beyond what 32 candidates can find
    idx, _ = index.search(queries, 10, allowed=allowed)
    np.testing.assert_array_equal(idx, brute(items, queries, 10, "ip", None, allowed))


def test_ivf_and_save_load(data, tmp_path):
    items, queries = data
    ivf = FaissIndex(items, "cosine", FaissConfig(structure="ivf", ivf_lists=32, ivf_probe=8))
    exact = ExactIndex(items, "cosine")
    assert recall_at_k(ivf, exact, queries) >= 0.8
    ivf.save(str(tmp_path / "ivf.index"))
    again = FaissIndex.load(str(tmp_path / "ivf.index"), items, "cosine", ivf.config)
    np.testing.assert_array_equal(again.search(queries, 10)[0], ivf.search(queries, 10)[0])


def test_build_index_choice_and_errors(data):
    items, queries = data
    assert build_index(items, kind="auto").kind == "exact"            # 4000 items: exact is cheap
    assert build_index(items, kind="faiss").kind == "faiss"
    with pytest.raises(TowerrecError, match="index kind"):
        build_index(items, kind="annoy")
    with pytest.raises(TowerrecError, match="metric"):
        ExactIndex(items, "l2")
    with pytest.raises(TowerrecError, match="queries must be"):
        ExactIndex(items).search(queries[:, :3], 10)
    with pytest.raises(TowerrecError, match="k must be positive"):
        ExactIndex(items).search(queries, 0)
    with pytest.raises(TowerrecError, match="a row per query"):
        FaissIndex(items).search(queries[:1], 10, exclude=random_exclusions(2, len(items), 3))
    with pytest.raises(TowerrecError, match="bool mask"):
        ExactIndex(items).search(queries, 10, allowed=np.ones(10, bool))


def test_service_with_faiss_keeps_exclusions_and_filters(als_artifact):
    """End to end through the service: ANN path, seen items and filters, k always filled."""
    from towerrec.serve.service import Query, RecommenderService

    service = RecommenderService.from_artifact(als_artifact, index_kind="faiss",
                                               faiss_config=FaissConfig(exact_below=0))
    assert service.index.kind == "faiss" and 0.0 <= service.recall_at_10 <= 1.0
    model = service.model
    for u in ("u0", "u5", "u9"):
        recs = service.recommend(Query(user_id=u, history=None, k=12, filters={"genres": "Drama"}))
        seen = set(model.seen_[model.user_map_.index([u])[0]].indices)
        idx = recs.item_idx[0]
        assert (idx >= 0).all() and not seen & set(idx)
        assert all("Drama" in service.catalogue.describe(i)["attributes"]["genres"] for i in idx)


def test_hnsw_and_ivf_filter_inside_faiss_with_id_selectors(data, monkeypatch):
    """HNSW and IVF skip excluded and filtered-out ids during the search (FAISS IDSelector), with
    no over-fetch: the hand-written over-fetch path is never taken for them."""
    items, queries = data
    exclude = random_exclusions(len(queries), len(items), 300)
    allowed = np.zeros(len(items), bool)
    allowed[::3] = True
    for config in (FaissConfig(structure="hnsw", hnsw_m=32, ef_search=64, exact_below=100),
                   FaissConfig(structure="ivf", ivf_probe=32, exact_below=100)):
        index = FaissIndex(items, "ip", config)
        monkeypatch.setattr(index, "_raw", lambda *a, **kw: pytest.fail("over-fetch path used"))
        idx, _ = index.search(queries, 10, exclude=exclude, allowed=allowed)
        assert (idx >= 0).all() and allowed[idx].all()
        for row in range(len(queries)):
            assert not set(idx[row]) & set(exclude[row].indices)
        ref, _ = ExactIndex(items).search(queries, 10, exclude=exclude, allowed=allowed)
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, ref)])
        assert overlap >= 0.8, (config.structure, overlap)
