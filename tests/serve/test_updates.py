"""Serving that keeps up: atomic reload (HTTP and watched store), POST /items, DELETE /items/{id},
the FAISS index growing and retiring items, and the version in /info."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import items_table
from fastapi.testclient import TestClient

from towerrec.artifact import publish, resolve_artifact
from towerrec.index import ExactIndex, FaissConfig, FaissIndex
from towerrec.models import load_model
from towerrec.models.base import FitOptions
from towerrec.ranking import TieOrder
from towerrec.serve.app import create_app
from towerrec.serve.live import LiveService
from towerrec.serve.service import RecommenderService

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _live(path: Path, **kw) -> LiveService:
    def load(p):
        return RecommenderService.from_artifact(p, **kw)

    return LiveService(load(path), source=path, load=load)


def _store(tmp_path: Path, artifact: Path) -> Path:
    """A model store holding `artifact` as its first version."""
    store = tmp_path / "store"
    publish(load_model(str(artifact)), store)
    return store


def _new_version(store: Path) -> int:
    """Publish the store's model updated with one new user: its version + 1."""
    model = load_model(str(resolve_artifact(store)))
    model.update(pd.DataFrame({"user_id": ["newbie"], "item_id": [model.item_map_.ids[0]]}),
                 options=FitOptions(seed=0, progress=False))
    publish(model, store)
    return model.version


# ---- the model store ------------------------------------------------------------------------------
def test_publish_writes_versions_and_latest(tmp_path, als_artifact):
    store = _store(tmp_path, als_artifact)
    assert (store / "LATEST").read_text().strip() == "v000001" and resolve_artifact(store) == store / "v000001"
    assert _new_version(store) == 2
    assert resolve_artifact(store) == store / "v000002"
    assert load_model(str(store)).version == 2                    # a store loads its LATEST version
    (store / "LATEST").write_text("../elsewhere\n")
    with pytest.raises(Exception, match="version folder"):
        resolve_artifact(store)


# ---- reload -------------------------------------------------------------------------------------
def test_reload_swaps_to_the_new_version(tmp_path, als_artifact):
    store = _store(tmp_path, als_artifact)
    client = TestClient(create_app(_live(store), token=TOKEN))
    info = client.get("/info", headers=AUTH).json()["version"]
    assert (info["model_version"], info["artifact_version"], info["reloads"]) == (1, "v000001", 0)
    assert client.post("/recommend", json={"user_id": "newbie"}, headers=AUTH).json()["fallback"] == "popularity"
    _new_version(store)
    r = client.post("/admin/reload", headers=AUTH)
    assert r.status_code == 200 and r.json()["model_version"] == 2 and r.json()["artifact"] == "v000002"
    info = client.get("/info", headers=AUTH).json()["version"]
    assert (info["model_version"], info["artifact_version"], info["reloads"]) == (2, "v000002", 1)
    assert info["lineage"][-1]["kind"] == "update" and info["lineage"][-1]["new_users"] == 1
    assert client.post("/recommend", json={"user_id": "newbie"}, headers=AUTH).json()["fallback"] is None


def test_a_failed_reload_keeps_the_old_version(tmp_path, als_artifact):
    folder = tmp_path / "als"
    shutil.copytree(als_artifact, folder)
    client = TestClient(create_app(_live(folder), token=TOKEN))
    before = client.post("/recommend", json={"user_id": "u1", "k": 5}, headers=AUTH).json()
    (folder / "weights.safetensors").write_bytes(b"garbage")
    r = client.post("/admin/reload", headers=AUTH)
    assert r.status_code == 409 and "still serving model version 1" in r.json()["detail"]
    assert client.post("/recommend", json={"user_id": "u1", "k": 5}, headers=AUTH).json() == before
    assert "SHA-256" in client.get("/info", headers=AUTH).json()["version"]["last_reload_error"]


def test_admin_routes_need_a_token(als_artifact, two_tower_artifact):
    open_client = TestClient(create_app(_live(als_artifact)))
    for method, path in (("post", "/admin/reload"), ("delete", "/items/i1")):
        r = getattr(open_client, method)(path)
        assert r.status_code == 403 and "token" in r.json()["detail"]
    client = TestClient(create_app(_live(als_artifact), token=TOKEN))
    assert client.post("/admin/reload").status_code == 401
    assert client.delete("/items/i1", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_several_workers_refuse_per_process_changes(als_artifact):
    live = _live(als_artifact)
    live.workers = 2
    client = TestClient(create_app(live, token=TOKEN))
    r = client.post("/admin/reload", headers=AUTH)
    assert r.status_code == 409 and "--watch" in r.json()["detail"]
    assert client.delete("/items/i1", headers=AUTH).status_code == 409


def test_watch_reloads_a_published_version(tmp_path, als_artifact):
    store = _store(tmp_path, als_artifact)
    live = _live(store)
    live.watch(0.05)
    try:
        _new_version(store)
        deadline = time.monotonic() + 20
        while live.service.model.version != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.service.model.version == 2 and live.reloads == 1
    finally:
        live.stop()


def test_requests_during_reloads_never_fail(tmp_path, als_artifact):
    """8 client threads against the app while it reloads 5 times: every answer is a 200 from one
    whole version (the in-process check; benchmarks/serve_reload.py does it over HTTP)."""
    store = _store(tmp_path, als_artifact)
    client = TestClient(create_app(_live(store), token=TOKEN))
    stop, failures, answers = threading.Event(), [], []

    def hammer() -> None:
        while not stop.is_set():
            r = client.post("/recommend", json={"user_id": "u3", "k": 5}, headers=AUTH)
            (answers if r.status_code == 200 and len(r.json()["items"]) == 5 else failures).append(r.status_code)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            _new_version(store)
            assert client.post("/admin/reload", headers=AUTH).status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures and len(answers) > 10
    assert client.get("/info", headers=AUTH).json()["version"]["model_version"] == 6


# ---- catalogue changes ---------------------------------------------------------------------------
def test_post_items_adds_content_items_to_the_index(two_tower_artifact):
    client = TestClient(create_app(_live(two_tower_artifact), token=TOKEN))
    n = client.get("/info", headers=AUTH).json()["data"]["items"]
    horror = {"item_id": "fresh-horror", "title": "Movie 999 (Horror)", "genres": ["Horror"], "year": 2030}
    r = client.post("/items", json={"items": [horror]}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"added": ["fresh-horror"], "items": n + 1, "model_version": 2}
    assert client.get("/items/fresh-horror", headers=AUTH).json()["title"] == "Movie 999 (Horror)"
    # a horror fan (block 2) gets the new horror item ranked far above a comedy fan (block 0)
    ranks = {}
    for user in ("u2", "u0"):
        items = client.post("/recommend", json={"user_id": user, "k": n + 1}, headers=AUTH).json()["items"]
        ranks[user] = [i["item_id"] for i in items].index("fresh-horror")
    assert ranks["u2"] < ranks["u0"]
    assert client.post("/items", json={"items": [horror]}, headers=AUTH).status_code == 409   # already there
    assert client.post("/items", json={"items": []}, headers=AUTH).status_code == 422


def test_post_items_needs_a_content_model(als_artifact):
    client = TestClient(create_app(_live(als_artifact), token=TOKEN))
    r = client.post("/items", json={"items": [{"item_id": "x1", "title": "t"}]}, headers=AUTH)
    assert r.status_code == 409 and "cannot embed new items" in r.json()["detail"]


@pytest.mark.parametrize("artifact", ["als_artifact", "ease_artifact"])
def test_delete_items_retires_everywhere(artifact, request):
    client = TestClient(create_app(_live(request.getfixturevalue(artifact)), token=TOKEN))
    top = client.post("/recommend", json={"user_id": "u1", "k": 3}, headers=AUTH).json()["items"][0]["item_id"]
    r = client.delete(f"/items/{top}", headers=AUTH)
    assert r.status_code == 200 and r.json()["retired"] == top and r.json()["model_version"] == 2
    listed = set()
    for body in ({"user_id": "u1", "k": 60}, {"user_id": "nobody", "k": 60}, {"history": ["i0", "i4"], "k": 60}):
        listed |= {i["item_id"] for i in client.post("/recommend", json=body, headers=AUTH).json()["items"]}
    listed |= {i["item_id"] for i in client.get("/items/i0/similar?k=59", headers=AUTH).json()["items"]}
    listed |= {i["item_id"] for i in client.get("/items?limit=60", headers=AUTH).json()["items"]}
    assert top not in listed
    assert client.get(f"/items/{top}", headers=AUTH).status_code == 404
    assert client.delete("/items/no-such-item", headers=AUTH).status_code == 404
    assert client.get("/info", headers=AUTH).json()["version"]["retired_items"] == 1


# ---- the FAISS index under change -----------------------------------------------------------------
def test_faiss_removal_support():
    """What FAISS itself can remove (the module docstring of towerrec.index rests on this)."""
    faiss = pytest.importorskip("faiss")
    x = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)

    def removes_keeping_labels(index) -> bool:
        index.add(x)
        try:
            index.remove_ids(faiss.IDSelectorArray(np.array([5, 7], dtype=np.int64)))
        except RuntimeError:
            return False
        return int(index.search(x[8:9], 1)[1][0, 0]) == 8          # label 8 still means vector 8

    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, 16, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x)
    pq = faiss.IndexPQFastScan(16, 8, 4, faiss.METRIC_INNER_PRODUCT)
    pq.train(x)
    refine = faiss.IndexPQFastScan(16, 8, 4, faiss.METRIC_INNER_PRODUCT)
    refine.train(x)
    assert removes_keeping_labels(ivf)
    assert not removes_keeping_labels(faiss.IndexHNSWFlat(16, 16, faiss.METRIC_INNER_PRODUCT))
    assert not removes_keeping_labels(faiss.IndexRefineFlat(refine))
    assert not removes_keeping_labels(pq)                              # removes, but renumbers


@pytest.mark.parametrize("structure", ["pq", "hnsw", "ivf"])
def test_faiss_index_grows_and_retires(structure):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    items = rng.standard_normal((3000, 16)).astype(np.float32)
    more = rng.standard_normal((40, 16)).astype(np.float32) * 10     # long vectors: each is its own best match
    config = FaissConfig(structure=structure, exact_below=0, ivf_probe=64)
    index = FaissIndex(items, "ip", config, ties=TieOrder.seeded(3000, 0))
    grown = index.with_items(np.vstack([items, more]), TieOrder.seeded(3040, 0))
    assert (index.n_items, grown.n_items) == (3000, 3040)
    query = more[:5]
    idx, _ = grown.search(query, 1)
    exact, _ = ExactIndex(np.vstack([items, more])).search(query, 1)
    assert (exact[:, 0] >= 3000).all()
    np.testing.assert_array_equal(idx[:, 0], exact[:, 0])             # the new vectors are found
    assert index.search(query, 1)[0].max() < 3000                      # the old index is untouched
    gone = np.arange(3000, 3005)
    smaller = grown.without(gone)
    allowed = np.ones(3040, dtype=bool)
    allowed[gone] = False
    idx, _ = smaller.search(query, 10, allowed=allowed)
    assert not set(idx.ravel()) & set(gone) and (idx >= 0).all()
    assert smaller.describe()["removal"] == ("remove_ids" if structure == "ivf" else "tombstones")
    assert smaller.removed == (5 if structure == "ivf" else 0)


def test_exact_index_grows():
    items = np.eye(4, dtype=np.float32)
    grown = ExactIndex(items).with_items(np.vstack([items, np.full((1, 4), 2.0, np.float32)]), TieOrder.seeded(5, 0))
    assert grown.search(np.ones((1, 4), np.float32), 1)[0][0, 0] == 4


def test_service_with_items_over_faiss(two_tower_artifact):
    pytest.importorskip("faiss")
    service = RecommenderService.from_artifact(two_tower_artifact, index_kind="faiss",
                                               faiss_config=FaissConfig(structure="hnsw", exact_below=0))
    frame = pd.DataFrame([{"item_id": "fresh", "title": "Movie 998 (Comedy)", "genres": "Comedy", "year": 2031}])
    grown = service.with_items(frame)
    assert grown.index.n_items == service.index.n_items + 1 and grown.catalogue.describe(60)["item_id"] == "fresh"
    assert service.model.n_items == 60 and service.index.n_items == 60      # copy-on-write
    assert items_table().shape[0] == 60
