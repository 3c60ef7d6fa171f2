"""The REST API through FastAPI's TestClient: every endpoint, every error path, auth."""
from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient
from pydantic import BaseModel

from towerrec.artifact import write_dataset_info
from towerrec.data.sequences import Sequences
from towerrec.errors import TowerrecError
from towerrec.models import load_model
from towerrec.models.base import FitOptions
from towerrec.models.two_tower import TwoTower, TwoTowerConfig
from towerrec.serve import schemas
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
    assert info["data"] == {"users": 40, "items": 60, "interactions": info["data"]["interactions"], "dataset": None}
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
    assert page.status_code == 200 and '<script src="/static/demo.js">' in page.text
    assert "/recommend" in client.get("/static/demo.js").text


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


BIG = "9" * 400                      # an integer beyond float range (and over the id length)


@pytest.mark.parametrize("raw, words", [
    # numbers beyond float range, sent as JSON text (json.dumps cannot write them)
    ('{"user_id": "u0", "filters": {"year": 1e400}}', "finite"),
    ('{"user_id": "u0", "filters": {"year": -1e999}}', "finite"),
    ('{"user_id": "u0", "filters": {"year": %s}}' % BIG, "float range"),
    ('{"user_id": "u0", "filters": {"year": [1990, %s]}}' % BIG, "float range"),
    ('{"user_id": "u0", "filters": {"year": {"min": 1e400}}}', "finite"),
    ('{"user_id": "u0", "filters": {"year": {"max": -%s}}}' % BIG, "float range"),
    ('{"user_id": "u0", "filters": {"year": NaN}}', "finite"),
    ('{"user_id": "u0", "filters": {"year": Infinity}}', "finite"),
    ('{"user_id": "u0", "user_features": {"age": 1e400}}', "finite"),
    # integer fields take JSON integers only
    ('{"user_id": "u0", "k": "5"}', "k: Input should be a valid integer"),
    ('{"user_id": "u0", "k": true}', "k: Input should be a valid integer"),
    ('{"user_id": "u0", "k": 5.0}', "k: Input should be a valid integer"),
    ('{"user_id": "u0", "k": %s}' % BIG, "k: Input should be less than or equal to 1000"),
    ('{"user_id": "u0", "exclude_seen": "false"}', "exclude_seen"),
    ('{"user_id": "u0", "exclude_seen": 0}', "exclude_seen"),
    # the id length limit holds for numbers too: integer ids are JSON's safe integers (|x| < 2**53)
    ('{"user_id": %s}' % ("1" * 300), "user_id: Value error, an integer id is at most 9007199254740991"),
    ('{"user_id": 9007199254740992}', "user_id: Value error, an integer id is at most 9007199254740991"),
    ('{"history": [%s]}' % ("1" * 257), "history.0: Value error, an integer id is at most"),
    ('{"user_id": "u0", "exclude_items": [-%s]}' % ("1" * 256), "exclude_items.0: Value error, an integer id"),
    ('{"user_id": "%s"}' % ("x" * 257), "user_id: Value error, an id has 1 to 256 characters (this one has 257)"),
    ('{"user_id": ""}', "user_id: Value error, an id has 1 to 256 characters"),
    ('{"user_id": 1.5}', "user_id: Value error, an id is a string or an integer, got float"),
])
def test_numbers_and_types_are_checked(client, raw, words):
    response = client.post("/recommend", content=raw.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"], response.json()["detail"]


def test_ids_at_the_limits_are_fine(client):
    for user_id in ("1" * 256, "-" + "1" * 255, 2**53 - 1, -(2**53 - 1)):
        response = client.post("/recommend", json={"user_id": user_id, "k": 2})
        assert response.status_code == 200 and response.json()["fallback"] == "popularity", user_id


def test_an_integer_too_long_to_parse_is_a_400_saying_so(client):
    raw = '{"user_id": %s}' % ("1" * 5000)     # over Python's 4300-digit limit: json.loads refuses it
    response = client.post("/recommend", content=raw.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 400 and "4300 digits" in response.json()["detail"]


@pytest.mark.parametrize("url", ["/items?limit=5.0", "/items?limit=true", "/items?limit=1e1", "/items?limit=",
                                 "/items/i0/similar?k=2.0", "/items/i0/similar?k=0x10", f"/items?limit={BIG}"])
def test_integer_query_parameters_are_integers(client, url):
    response = client.get(url)
    assert response.status_code == 422 and ("limit" in response.json()["detail"] or "k" in response.json()["detail"])


def test_integer_query_parameters_accept_digits(client):
    assert len(client.get("/items?limit=3").json()["items"]) == 3
    assert len(client.get("/items/i0/similar?k=+2").json()["items"]) == 2


@pytest.fixture(scope="module")
def slash_client(tmp_path_factory) -> TestClient:
    """Item ids with slashes, including one that ends like the similar-items route."""
    from towerrec.data.interactions import Interactions
    from towerrec.models.ease import EASE

    ids = ["a/b", "c/d/e", "plain", "x/similar", "x"]
    frame = pd.DataFrame([(f"u{u}", ids[(u + j) % len(ids)]) for u in range(10) for j in range(3)],
                         columns=["user_id", "item_id"])
    model = EASE(l2=1.0).fit(Interactions.from_frame(frame), options=FitOptions(seed=0))
    path = model.save(tmp_path_factory.mktemp("art") / "slash")
    return TestClient(create_app(RecommenderService.from_artifact(path)))


@pytest.mark.parametrize("url, item_id", [("/items/a/b", "a/b"), ("/items/a%2Fb", "a/b"), ("/items/c/d/e", "c/d/e"),
                                          ("/items/c%2Fd%2Fe", "c/d/e"), ("/items/plain", "plain")])
def test_item_ids_with_slashes_are_reachable(slash_client, url, item_id):
    response = slash_client.get(url)
    assert response.status_code == 200 and response.json()["item_id"] == item_id
    similar = slash_client.get(url + "/similar", params={"k": 2})
    assert similar.status_code == 200 and similar.json()["item_id"] == item_id
    assert item_id not in [i["item_id"] for i in similar.json()["items"]]


def test_slashed_ids_in_bodies_and_the_similar_suffix(slash_client):
    body = slash_client.post("/recommend", json={"history": ["a/b", "c/d/e"], "k": 2}).json()
    assert body["fallback"] == "history" and not {"a/b", "c/d/e"} & {i["item_id"] for i in body["items"]}
    # "x/similar" is both an item and the similar-items route of "x": the route wins, as documented
    assert slash_client.get("/items/x/similar").json()["item_id"] == "x"
    assert slash_client.get("/items/a/nope").status_code == 404


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
def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _every_get_url(app) -> list[str]:
    """A GET URL for every route the app has (path parameters filled in), documented or not."""
    urls = []
    for route in app.routes:
        if "GET" not in getattr(route, "methods", ()):
            continue
        path = route.path.replace("{item_id:path}", "i0")
        path = path.replace("/static/{name}", "/static/demo.js").replace("/docs/{name}", "/docs/docs.js")
        assert "{" not in path, f"fill in {path}"
        urls.append(path)
    return urls


def test_every_route_but_health_needs_the_token(als_service):
    app = create_app(als_service, token="s3cret")
    client = TestClient(app)
    urls = _every_get_url(app)
    assert {"/", "/docs", "/openapi.json", "/info", "/items", "/items/i0", "/static/demo.js"} <= set(urls)
    for url in urls:
        if url == "/health":
            assert client.get(url).status_code == 200                  # probes need no token
            continue
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"},
                        _basic("me", "wrong"), {"Authorization": "Token s3cret"}):
            assert client.get(url, headers=headers).status_code == 401, (url, headers)
        for headers in ({"Authorization": "Bearer s3cret"}, _basic("anyone", "s3cret"), _basic("", "s3cret")):
            assert client.get(url, headers=headers).status_code == 200, (url, headers)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = client.post("/recommend", json={"user_id": "u0"}, headers=headers)
        assert response.status_code == 401 and "token" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    ok = {"Authorization": "Bearer s3cret"}
    assert client.post("/recommend", json={"user_id": "u0"}, headers=ok).status_code == 200


def test_pages_ask_the_browser_for_the_token(als_service):
    """A page load cannot carry a header: the pages answer with an HTTP Basic challenge, and the
    browser then sends the credentials with the page's own requests."""
    client = TestClient(create_app(als_service, token="s3cret"))
    for url in ("/", "/docs"):
        response = client.get(url)
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Basic ")
        assert "token" in response.text and "demo.js" not in response.text and "swagger" not in response.text
    spec = client.get("/openapi.json", headers=_basic("me", "s3cret")).json()
    assert {"HTTPBearer", "HTTPBasic"} <= set(spec["components"]["securitySchemes"])


def test_without_a_token_the_spec_declares_no_security(als_service):
    spec = TestClient(create_app(als_service)).get("/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})


@pytest.mark.parametrize("token", ["", "has space", "tab\there", "naïve"])
def test_unusable_tokens_are_refused(als_service, token):
    with pytest.raises(TowerrecError, match="token"):
        create_app(als_service, token=token)


# ---- pages: security headers, offline docs ------------------------------------------------------
def test_security_headers(client):
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    for response in (page, client.get("/docs"), client.get("/info"), client.post("/recommend", json={"user_id": "u0"}),
                     client.get("/items/nope")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "content-security-policy" in response.headers


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.inline_script = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if getattr(self, "_in_script", False):
            self.inline_script += data.strip()

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


@pytest.mark.parametrize("url", ["/", "/docs"])
def test_pages_fit_their_csp_and_load_only_local_files(client, url):
    """What the CSP would block in a browser: inline scripts, event-handler or style attributes,
    <style> elements, and anything from another origin (/docs works offline)."""
    parser = _Tags()
    parser.feed(client.get(url).text)
    assert parser.inline_script == ""
    for tag, attrs in parser.tags:
        assert tag != "style" and "style" not in attrs and not any(a.startswith("on") for a in attrs), (tag, attrs)
    links = [attrs.get("src") or attrs.get("href") for tag, attrs in parser.tags if tag in ("script", "link")]
    assert links and all(link.startswith("/") and not link.startswith("//") for link in links), links
    for link in links:
        response = client.get(link)
        assert response.status_code == 200 and len(response.content) > 100, link
        kind = response.headers["content-type"]
        assert kind.startswith(("text/javascript", "text/css", "image/png")), (link, kind)


def test_docs_files_are_the_swagger_ui_dist(client):
    bundle = client.get("/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and b"SwaggerUIBundle" in bundle.content
    assert "/openapi.json" in client.get("/docs/docs.js").text
    assert client.get("/docs/nope.js").status_code == 404 and client.get("/static/nope.js").status_code == 404


# ---- /info ---------------------------------------------------------------------------------------
def test_info_names_the_dataset_when_the_artifact_does(als_artifact, tmp_path):
    path = shutil.copytree(als_artifact, tmp_path / "als")
    write_dataset_info(path, {"name": "tiny", "interactions": 400})
    info = TestClient(create_app(RecommenderService.from_artifact(path))).get("/info").json()
    assert info["data"]["dataset"] == {"name": "tiny", "interactions": 400, "users": None, "items": None}
    assert info["artifact"] == "als"                      # the folder's name, not the server's path


def test_info_sends_nothing_it_does_not_list(client):
    """Every key of /info, at every level, is a field of its response schema."""
    def check(value: dict, model: type[BaseModel]) -> None:
        assert set(value) == set(model.model_fields), model.__name__
        for key, field in model.model_fields.items():
            inner = next((a for a in getattr(field.annotation, "__args__", (field.annotation,))
                          if isinstance(a, type) and issubclass(a, BaseModel)), None)
            if inner is not None and isinstance(value.get(key), dict):
                check(value[key], inner)
                checked.append(inner)

    checked: list[type] = []
    info = client.get("/info").json()
    check(info, schemas.Info)
    assert {schemas.DataInfo, schemas.CatalogueInfo, schemas.IndexInfo} <= set(checked)
    # the loaded model's own config (nested ones such as `train` as objects), not model.json's text
    assert info["config"] == json.loads(json.dumps(dataclasses.asdict(client.app.state.service.model.config)))


def test_a_symlink_out_of_the_artifact_is_not_served(als_artifact, tmp_path):
    """A dataset.json linked to another file used to be copied into /info verbatim."""
    path = shutil.copytree(als_artifact, tmp_path / "als")
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"name": "password=hunter2"}))
    (path / "dataset.json").symlink_to(secret)
    with pytest.raises(TowerrecError, match="outside the artifact folder"):
        RecommenderService.from_artifact(path)


def test_dataset_info_with_unknown_keys_is_refused(als_artifact, tmp_path):
    path = shutil.copytree(als_artifact, tmp_path / "als")
    (path / "dataset.json").write_text(json.dumps({"name": "tiny", "notes": "anything at all"}))
    with pytest.raises(TowerrecError, match=r"dataset.json: unknown key\(s\) \['notes'\]"):
        RecommenderService.from_artifact(path)


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
