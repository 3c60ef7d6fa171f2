"""The REST API through FastAPI's TestClient: every endpoint, every error path, auth."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from towerrec.data.sequences import Sequences
from fastapi.testclient import TestClient

from towerrec.models import load_model
from towerrec.models.base import FitOptions
from towerrec.models.two_tower import TwoTower, TwoTowerConfig
from towerrec.serve.app import create_app
from towerrec.serve.schemas import MAX_K
from towerrec.serve.service import RecommenderService


@pytest.fixture(scope="module")
def als_service(als_artifact) -> RecommenderService:
    return RecommenderService.from_artifact(als_artifact)


@pytest.fixture(scope="module")
def ease_service(ease_artifact) -> RecommenderService:
    return RecommenderService.from_artifact(ease_artifact)


@pytest.fixture(scope="module")
def two_tower_service(two_tower_artifact) -> RecommenderService:
    return RecommenderService.from_artifact(two_tower_artifact)


@pytest.fixture(scope="module", params=["als", "ease", "two_tower"])
def client(request, als_service, ease_service, two_tower_service) -> TestClient:
    """Both serving paths: ALS and the two-tower model through the retrieval index, EASE through
    its own `recommend`."""
    service = {"als": als_service, "ease": ease_service, "two_tower": two_tower_service}[request.param]
    return TestClient(create_app(service))


def _ids(response) -> list[str]:
    return [item["item_id"] for item in response.json()["items"]]


# ---- happy paths --------------------------------------------------------------------------------
def test_health_and_info(client):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/info").json()
    assert info["data"] == {"users": 40, "items": 60, "interactions": info["data"]["interactions"]}
    assert info["catalogue"] == {"items": 60, "titles": True, "attributes": ["genres", "year"]}
    assert info["index"]["kind"] in ("exact", "model")
    assert info["towerrec_version"]
    assert info["index"]["recall_at_10_vs_exact"] in (1.0, None)


def test_docs_openapi_and_demo_page(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    spec = client.get("/openapi.json").json()
    assert {"/recommend", "/items", "/items/{item_id}/similar", "/health", "/info"} <= set(paths)
    # the filters schema names this artifact's attributes; year (numeric) also takes a range
    filters = spec["components"]["schemas"]["RecommendRequest"]["properties"]["filters"]["anyOf"][0]
    assert set(filters["properties"]) == {"genres", "year"} and filters["additionalProperties"] is False
    assert {"$ref": "#/components/schemas/Range"} in filters["properties"]["year"]["anyOf"]
    page = client.get("/")
    assert page.status_code == 200 and "<script>" in page.text and "/recommend" in page.text


def test_known_user_matches_offline_recommend(client):
    """Serving and offline evaluation share one code path: same items, same order, seen items left out."""
    service = client.app.state.service
    offline = service.model.recommend(["u3"], k=5)
    response = client.post("/recommend", json={"user_id": "u3", "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["fallback"] is None and body["user_id"] == "u3"
    assert _ids(response) == list(offline.item_ids[0])
    np.testing.assert_allclose([i["score"] for i in body["items"]], offline.scores[0], rtol=1e-5)
    seen = set(service.model.item_map_.ids[service.model.seen_[service.model.user_map_.index(["u3"])[0]].indices])
    assert not seen & set(_ids(response))
    assert body["items"][0]["title"].startswith("Movie ") and "genres" in body["items"][0]["attributes"]


def test_integer_ids_are_read_as_strings(client):
    # MovieLens-style ids are numbers in JSON; here no user is called "7", so it is a fallback
    response = client.post("/recommend", json={"user_id": 7, "history": ["i1"], "k": 3})
    assert response.status_code == 200 and response.json()["user_id"] == "7"


def test_exclude_seen_false_can_return_seen_items(client):
    service = client.app.state.service
    u = service.model.user_map_.index(["u0"])[0]
    seen = set(service.model.item_map_.ids[service.model.seen_[u].indices])
    got = set(_ids(client.post("/recommend", json={"user_id": "u0", "k": 60, "exclude_seen": False})))
    assert seen <= got and len(got) == 60


def test_k_larger_than_what_is_left(client):
    service = client.app.state.service
    u = service.model.user_map_.index(["u1"])[0]
    n_seen = service.model.seen_[u].nnz
    assert len(_ids(client.post("/recommend", json={"user_id": "u1", "k": MAX_K}))) == 60 - n_seen


def test_unknown_user_falls_back_to_popularity(client):
    response = client.post("/recommend", json={"user_id": "stranger", "k": 4})
    assert response.status_code == 200 and response.json()["fallback"] == "popularity"
    pop = client.app.state.service.model.item_popularity_
    assert [float(pop[client.app.state.service.model.item_map_.index([i])[0]]) for i in _ids(response)] == sorted(
        pop, reverse=True)[:4]


def test_unknown_user_with_history_falls_back_to_history(client):
    response = client.post("/recommend", json={"user_id": "stranger", "history": ["i0", "i4", "i8"], "k": 5})
    body = response.json()
    assert body["fallback"] == "history"
    assert not {"i0", "i4", "i8"} & set(_ids(response))
    # a Comedy-block history (items 0, 4, 8, ...) should bring more Comedy
    assert sum(i["attributes"]["genres"].startswith("Comedy") for i in body["items"]) >= 3


def test_empty_history_is_popularity(client):
    response = client.post("/recommend", json={"history": [], "k": 3})
    assert response.status_code == 200 and response.json()["fallback"] == "popularity"


def test_exclude_items(client):
    first = _ids(client.post("/recommend", json={"user_id": "u2", "k": 3}))
    again = _ids(client.post("/recommend", json={"user_id": "u2", "k": 3,
                                                  "exclude_items": first[:2] + ["not-an-item"]}))
    assert not set(first[:2]) & set(again) and len(again) == 3


@pytest.mark.parametrize("filters, check", [
    ({"genres": "horror"}, lambda a: "Horror" in a["genres"].split("|")),
    ({"genres": ["Horror", "Action"]}, lambda a: {"Horror", "Action"} & set(a["genres"].split("|"))),
    ({"year": {"min": 2000, "max": 2010}}, lambda a: 2000 <= a["year"] <= 2010),
    ({"year": 1990}, lambda a: a["year"] == 1990),
    ({"genres": "Drama", "year": {"max": 2000}}, lambda a: "Drama" in a["genres"] and a["year"] <= 2000),
])
def test_filters(client, filters, check):
    response = client.post("/recommend", json={"user_id": "u0", "k": 5, "filters": filters, "exclude_seen": False})
    items = response.json()["items"]
    assert response.status_code == 200 and items
    assert all(check(i["attributes"]) for i in items)


def test_filters_apply_to_fallbacks(client):
    for body in ({"user_id": "stranger"}, {"history": ["i0"]}):
        items = client.post("/recommend", json={**body, "k": 5, "filters": {"genres": "Action"}}).json()["items"]
        assert len(items) == 5 and all("Action" in i["attributes"]["genres"] for i in items)


def test_items_search_and_lookup(client):
    found = client.get("/items", params={"q": "movie 1", "limit": 5}).json()["items"]
    assert 0 < len(found) <= 5 and all("movie 1" in i["title"].lower() for i in found)
    assert len(client.get("/items", params={"q": ""}).json()["items"]) == 20
    assert client.get("/items", params={"q": "no such title"}).json()["items"] == []
    assert client.get("/items/i5").json()["title"] == "Movie 5 (Drama)"


def test_similar_items(client):
    response = client.get("/items/i0/similar", params={"k": 4})
    assert response.status_code == 200
    ids = _ids(response)
    assert len(ids) == 4 and "i0" not in ids


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, status, words", [
    ({"user_id": "u0", "k": 0}, 422, "k"),
    ({"user_id": "u0", "k": MAX_K + 1}, 422, "k"),
    ({"user_id": "u0", "k": "ten"}, 422, "k"),
    ({"user_id": "u0", "k": 2.5}, 422, "k"),
    ({"user_id": ["u0"]}, 422, "user_id"),
    ({"user_id": True}, 422, "user_id"),
    ({"history": "i0"}, 422, "history"),
    ({"history": ["i0", "nope", "gone"]}, 404, "nope, gone"),
    ({"k": 3}, 422, "user_id, history"),
    ({"user_id": "u0", "exclude_seem": False}, 422, "exclude_seem"),
    ({"user_id": "u0", "filters": {"colour": "red"}}, 422, "colour"),
    ({"user_id": "u0", "filters": {"genres": {"min": 1}}}, 422, "numeric"),
    ({"user_id": "u0", "filters": {"year": "recent"}}, 422, "number"),
    ({"user_id": "u0", "filters": {"year": {"low": 1}}}, 422, "low"),
    ({"user_id": "u0", "filters": {"genres": []}}, 422, "genres"),
    ({"user_id": "u0", "filters": {"genres": None}}, 422, "genres"),
    ({"user_id": "u0", "filters": {"genres": 3}}, 422, "string"),
    ({"user_id": "u0", "filters": {"year": "1990"}}, 422, "number"),
    ({"user_id": "x" * 300}, 422, "user_id"),
    ({"history": ["i0"] * 1001}, 422, "history"),
])
def test_bad_recommend_bodies(client, body, status, words):
    response = client.post("/recommend", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_malformed_json_and_wrong_content(client):
    response = client.post("/recommend", content=b'{"user_id": "u0", "k": ', headers={"content-type": "application/json"})
    assert response.status_code == 400 and "malformed JSON" in response.json()["detail"]
    assert client.post("/recommend", content=b"[1, 2]", headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/recommend", content=b"null", headers={"content-type": "application/json"}).status_code == 422


def test_body_size_limit(client):
    big = b'{"user_id": "u0", "exclude_items": [' + b",".join([b'"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"'] * 8000) + b"]}"
    response = client.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "bytes" in response.json()["detail"]


@pytest.mark.parametrize("url, status, words", [
    ("/items/nope/similar", 404, "nope"),
    ("/items/nope", 404, "nope"),
    ("/items/i0/similar?k=0", 422, "k"),
    ("/items/i0/similar?k=abc", 422, "k"),
    (f"/items/i0/similar?k={MAX_K + 1}", 422, "k"),
    ("/items?limit=0", 422, "limit"),
    ("/items?q=" + "x" * 300, 422, "q"),
])
def test_bad_gets(client, url, status, words):
    response = client.get(url)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_model_without_similarity_is_a_4xx(pop_artifact):
    client = TestClient(create_app(RecommenderService.from_artifact(pop_artifact)))
    response = client.get("/items/i0/similar")
    assert response.status_code == 422 and "similar" in response.json()["detail"]
    assert client.post("/recommend", json={"history": ["i0"], "k": 2}).status_code == 200


# ---- auth ---------------------------------------------------------------------------------------
def test_bearer_token(als_service):
    client = TestClient(create_app(als_service, token="s3cret"))
    assert client.get("/health").status_code == 200                  # probes need no token
    assert client.get("/").status_code == 200                        # nor the page (it asks for one)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        response = client.post("/recommend", json={"user_id": "u0"}, headers=headers)
        assert response.status_code == 401 and "token" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/info", headers=headers).status_code == 401
        assert client.get("/items/i0/similar", headers=headers).status_code == 401
    ok = {"Authorization": "Bearer s3cret"}
    assert client.post("/recommend", json={"user_id": "u0"}, headers=ok).status_code == 200
    assert client.get("/items", headers=ok).status_code == 200
    assert "HTTPBearer" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_info_names_the_dataset_when_the_artifact_does(als_artifact, tmp_path):
    import json
    import shutil

    path = shutil.copytree(als_artifact, tmp_path / "als")
    (path / "dataset.json").write_text(json.dumps({"name": "tiny", "interactions": 400}))
    info = TestClient(create_app(RecommenderService.from_artifact(path))).get("/info").json()
    assert info["data"]["dataset"] == {"name": "tiny", "interactions": 400}


def test_service_loads_any_saved_model(als_artifact, ease_artifact, pop_artifact, two_tower_artifact):
    for path in (als_artifact, ease_artifact, pop_artifact, two_tower_artifact):
        service = RecommenderService.from_artifact(path)
        assert service.model.name == load_model(str(path)).name
        assert (service.index is not None) == (service.model.name in ("als", "two-tower"))


def test_two_tower_index_reproduces_the_models_scores(two_tower_service):
    """The index path (query vectors @ item vectors) gives the model's own ranking and scores,
    for known users and for a new user given a history."""
    model = two_tower_service.model
    users = model.user_map_.ids[:5].tolist()
    offline = model.recommend(users, k=10)
    idx, scores = two_tower_service.index.search(two_tower_service.embeddings.users(np.arange(5)), k=10,
                                                 exclude=model.seen_[:5])
    np.testing.assert_array_equal(idx, offline.item_idx)
    np.testing.assert_allclose(scores, offline.scores, rtol=1e-4, atol=1e-4)
    history = model.item_map_.ids[:3].tolist()
    by_model = model.recommend(history=history, k=10)
    cols = model.item_map_.index(history)
    seen = sp.csr_matrix((np.ones(len(cols), np.float32), (np.zeros(len(cols), int), cols)), shape=(1, model.n_items))
    histories = Sequences.from_lists([cols])
    idx, _ = two_tower_service.index.search(two_tower_service.embeddings.histories(histories), k=10, exclude=seen)
    np.testing.assert_array_equal(idx, by_model.item_idx)


def test_new_user_from_features(two_tower_users_artifact, als_service):
    """A new user described only by attributes gets the 'features' fallback from models with a user
    feature encoder (a Horror-block taste brings Horror); other models ignore the features."""
    client = TestClient(create_app(RecommenderService.from_artifact(two_tower_users_artifact)))
    body = client.post("/recommend", json={"user_id": "newcomer", "user_features": {"taste": "Horror", "age": 30},
                                           "k": 5}).json()
    assert body["fallback"] == "features"
    assert sum(i["attributes"]["genres"].startswith("Horror") for i in body["items"]) >= 3, body["items"]
    with_history = client.post("/recommend", json={"user_id": "newcomer", "user_features": {"taste": "Horror"},
                                                   "history": ["i2"], "k": 5}).json()
    assert with_history["fallback"] == "features" and "i2" not in _ids_of(with_history)
    bad = client.post("/recommend", json={"user_id": "newcomer", "user_features": {"shoe_size": 44}})
    assert bad.status_code == 422 and "shoe_size" in bad.json()["detail"]
    bad = client.post("/recommend", json={"user_id": "newcomer", "user_features": {"age": "old"}})
    assert bad.status_code == 422 and "age" in bad.json()["detail"]
    other = TestClient(create_app(als_service)).post(
        "/recommend", json={"user_id": "newcomer", "user_features": {"taste": "Horror"}}).json()
    assert other["fallback"] == "popularity"


def _ids_of(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_mlp_scorer_is_served_by_exact_recommend(tiny_inter):
    """An MLP scorer cannot use an inner-product index: the service scores every pair instead."""
    config = TwoTowerConfig.for_preset("cf", scorer="mlp", epochs=1, embedding_dim=8, id_dim=8, hidden=())
    model = TwoTower(config).fit(tiny_inter, options=FitOptions(seed=0, threads=1, progress=False))
    assert model.capabilities.vectors is None
    from towerrec.serve.service import embeddings_of

    assert embeddings_of(model) is None
