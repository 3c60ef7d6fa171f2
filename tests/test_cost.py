"""Cost beside accuracy: parameters, artifact size, peak fit memory and request latency."""
from __future__ import annotations

import json
import mmap
import sys

import numpy as np
import pytest

from towerrec.cost import PeakMemory, artifact_bytes, measure_cost, recommend_latency
from towerrec.models import ALS, EASE, ItemKNN, Popularity, SASRec
from towerrec.models.base import FitOptions


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the resident-set high-water mark is Linux's")
def test_peak_memory_sees_a_freed_allocation():
    # Small pages, one fault each: kernels before 6.2 sync a thread's RSS count into the process's
    # every 64 faults, so 20 huge-page faults (numpy asks for huge pages) could pass unseen.
    size = 40 * 2**20
    with PeakMemory() as peak:
        block = mmap.mmap(-1, size)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            block.madvise(mmap.MADV_NOHUGEPAGE)
        pages = np.frombuffer(block, dtype=np.uint8)
        pages[::mmap.PAGESIZE] = 1                # touch every page: 40 MiB resident
        del pages
        block.close()
    assert peak.mb == pytest.approx(40, abs=8)
    with PeakMemory() as small:
        pass
    assert small.mb < 5


def test_parameters_count_the_learned_numbers(tiny_interactions):
    inter = tiny_interactions
    n_users, n_items = inter.n_users, inter.n_items
    assert EASE().fit(inter).n_parameters() == n_items * n_items
    assert Popularity().fit(inter).n_parameters() == n_items
    als = ALS(factors=4, iterations=2).fit(inter, options=FitOptions(seed=0))
    assert als.n_parameters() == (n_users + n_items) * 4 + 1          # + the mean confidence
    knn = ItemKNN(neighbours=3).fit(inter)
    assert knn.n_parameters() == knn.similarity_.nnz
    sasrec = SASRec(embedding_dim=8, max_len=5, blocks=1, heads=1, inner_dim=8, epochs=1).fit(
        inter, options=FitOptions(seed=0, progress=False))
    assert sasrec.n_parameters() == sum(p.numel() for p in sasrec.module_.parameters())


def test_artifact_size_and_latency(tiny_interactions, tmp_path):
    model = EASE().fit(tiny_interactions)
    size = artifact_bytes(model)
    saved = model.save(tmp_path / "ease")
    assert size == sum(p.stat().st_size for p in saved.rglob("*") if p.is_file())
    p50, p99 = recommend_latency(model, calls=20)
    assert 0 < p50 <= p99
    cost = measure_cost(model, fit_seconds=1.5, calls=20).as_dict()
    assert cost["parameters"] == tiny_interactions.n_items ** 2 and cost["fit_seconds"] == 1.5
    assert cost["latency_calls"] == 20 and cost["peak_train_mb"] is None
    json.dumps(cost, allow_nan=False)
