"""`/recommend` with `explain` and `rerank`, on both serving paths (index: ALS, two-tower; model: EASE)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from towerrec.serve.app import create_app
from towerrec.serve.service import RecommenderService


@pytest.fixture(scope="module", params=["als", "ease", "two_tower", "pop"])
def served(request, als_artifact, ease_artifact, two_tower_artifact, pop_artifact):
    path = {"als": als_artifact, "ease": ease_artifact, "two_tower": two_tower_artifact, "pop": pop_artifact}
    service = RecommenderService.from_artifact(path[request.param])
    return request.param, service, TestClient(create_app(service))


def test_every_item_is_explained_with_titles(served):
    name, service, client = served
    body = client.post("/recommend", json={"history": ["i0", "i4", "i8"], "k": 5, "explain": True}).json()
    assert len(body["items"]) == 5
    for item in body["items"]:
        e = item["explanation"]
        assert e["sentence"] and e["method"]
        for reason in e["because"] + e["nearest"]:
            assert reason["item_id"] in ("i0", "i4", "i8") and reason["title"].startswith("Movie ")
        if name == "pop":
            assert e["because"] == [] and e["nearest"] == [] and "popularity" in e["method"]
        else:
            assert e["nearest"]           # every other model has an item space
    if name in ("ease", "als"):           # these build every score from the history: the top item has a reason
        first = body["items"][0]["explanation"]
        assert first["because"] and first["sentence"] == f"because you liked {first['because'][0]['title']}"
    # the explanation agrees with the Python API
    top = body["items"][0]
    e = service.model.explain(item_ids=top["item_id"], history=["i0", "i4", "i8"])
    assert [r["item_id"] for r in top["explanation"]["because"]] == [c.item_id for c in e.because]


def test_known_users_are_explained_from_their_training_history(served):
    name, service, client = served
    body = client.post("/recommend", json={"user_id": "u3", "k": 3, "explain": True}).json()
    seen = {str(service.model.item_map_.ids[i]) for i in service.model.seen_items(service._user_pos["u3"])}
    for item in body["items"]:
        assert {r["item_id"] for r in item["explanation"]["because"]} <= seen
    assert "explanation" not in client.post("/recommend", json={"user_id": "u3", "k": 3}).json()["items"][0]


def test_two_tower_explanations_carry_feature_attributions(two_tower_artifact):
    client = TestClient(create_app(RecommenderService.from_artifact(two_tower_artifact)))
    item = client.post("/recommend", json={"user_id": "u1", "k": 2, "explain": True}).json()["items"][0]
    features = {(f["side"], f["feature"]) for f in item["explanation"]["features"]}
    assert {("item", "genres"), ("item", "year"), ("item", "item id"), ("user", "user id")} <= features


@pytest.mark.parametrize("method", ["mmr", "dpp", "calibrated", "popularity"])
def test_rerank_keeps_exclusions_and_weight_zero_keeps_the_order(served, method):
    name, service, client = served
    plain = client.post("/recommend", json={"history": ["i0", "i4"], "k": 8}).json()["items"]
    same = client.post("/recommend", json={"history": ["i0", "i4"], "k": 8,
                                           "rerank": {"method": method, "weight": 0}}).json()["items"]
    assert [i["item_id"] for i in same] == [i["item_id"] for i in plain]
    moved = client.post("/recommend", json={"history": ["i0", "i4"], "k": 8, "filters": {"genres": ["Comedy", "Drama"]},
                                            "rerank": {"method": method, "weight": 0.9, "candidates": 30}})
    assert moved.status_code == 200, moved.text
    ids = [i["item_id"] for i in moved.json()["items"]]
    assert len(ids) == len(set(ids)) and not {"i0", "i4"} & set(ids)
    assert all(set(i["attributes"]["genres"].split("|")) & {"Comedy", "Drama"} for i in moved.json()["items"])


def test_mmr_spreads_the_genres(ease_artifact):
    client = TestClient(create_app(RecommenderService.from_artifact(ease_artifact)))

    def genres(weight: float) -> int:
        items = client.post("/recommend", json={"history": ["i0", "i4", "i8", "i12"], "k": 6,
                                                "rerank": {"method": "mmr", "weight": weight}}).json()["items"]
        return len({g for i in items for g in i["attributes"]["genres"].split("|")})

    assert genres(0.9) > genres(0.0)


@pytest.mark.parametrize("rerank, status", [({"method": "xmr"}, 422), ({"method": "mmr", "weight": 2}, 422),
                                            ({"method": "mmr", "candidates": 0}, 422), ({"weight": 0.5}, 422),
                                            ({"method": "mmr", "extra": 1}, 422), ("mmr", 422)])
def test_bad_rerank_settings_are_4xx_with_a_detail(served, rerank, status):
    _, _, client = served
    response = client.post("/recommend", json={"history": ["i0"], "k": 3, "rerank": rerank})
    assert response.status_code == status and response.json()["detail"]


def test_a_reranker_the_artifact_cannot_support_is_a_422(tmp_path, tiny_inter):
    from towerrec.models.pop import Popularity

    model = Popularity().fit(tiny_inter)
    model.save(tmp_path / "bare")                     # no item table: no categories, and no item space
    client = TestClient(create_app(RecommenderService.from_artifact(tmp_path / "bare")))
    response = client.post("/recommend", json={"history": ["i0"], "k": 3, "rerank": {"method": "calibrated"}})
    assert response.status_code == 422 and "categories" in response.json()["detail"]
    response = client.post("/recommend", json={"history": ["i0"], "k": 3, "rerank": {"method": "mmr"}})
    assert response.status_code == 422 and "item space" in response.json()["detail"]
