"""Property-based API testing from the app's own OpenAPI spec: no generated request may get a 5xx.

Schemathesis generates valid (positive) and invalid (negative) requests for every operation,
8 of each, 80 per artifact, against tiny ALS, EASE and two-tower artifacts served in-process (ASGI, no sockets), and runs
its default checks on each response: not a server error, a documented status code, content type
and response schema. (Schemathesis's own pytest plugin does not load under pytest 9, so the test
drives its Python API with Hypothesis directly.)

A spec-driven generator writes JSON with Python's json.dumps, so it never sends what a hand-written
client can: number literals beyond float range (1e400, 400-digit integers), NaN and Infinity, or an
integer field as "5", 5.0 or true. `test_out_of_range_numbers_and_mistyped_integers` adds those as
raw JSON text and query strings, and requires a 400 or 422 with a `detail` for every one of them.
"""
from __future__ import annotations

import os
from urllib.parse import quote

import pytest

schemathesis = pytest.importorskip("schemathesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from towerrec.serve.app import create_app  # noqa: E402
from towerrec.serve.live import LiveService  # noqa: E402
from towerrec.serve.service import RecommenderService  # noqa: E402

#: per operation and mode; raise it for a deeper local run: TOWERREC_SCHEMATHESIS_EXAMPLES=300 pytest ...
EXAMPLES = int(os.environ.get("TOWERREC_SCHEMATHESIS_EXAMPLES", "8"))
OPERATIONS = ["GET /health", "GET /info", "POST /recommend", "GET /items", "GET /items/{item_id}",
              "GET /items/{item_id}/similar", "POST /admin/reload", "POST /items", "DELETE /items/{item_id}"]
# operations without parameters or a body have no invalid requests to generate
CASES = [(label, mode) for label in OPERATIONS for mode in schemathesis.GenerationMode
         if not (mode == schemathesis.GenerationMode.NEGATIVE and label in ("GET /health", "GET /info",
                                                                           "POST /admin/reload"))]
#: the routes that change the model are fuzzed too: they need a token
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module", params=["als", "ease", "two_tower_users"])
def app(request, als_artifact, ease_artifact, two_tower_users_artifact):
    """ALS is served through the retrieval index, EASE through its own `recommend`, the two-tower
    model through the index with user features (the fuzzed `user_features` reach its encoder)."""
    artifact = {"als": als_artifact, "ease": ease_artifact, "two_tower_users": two_tower_users_artifact}[request.param]
    live = LiveService(RecommenderService.from_artifact(artifact), source=artifact,
                       load=RecommenderService.from_artifact)
    return create_app(live, token=TOKEN)


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)


def test_every_operation_is_covered(api_schema):
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


def _integral_floats_as_ints(value: object) -> object:
    """JSON Schema counts 5.0 as an integer; this API takes integer fields as integer literals only
    (`"k": 5.0` is a 422, on purpose), so valid requests carry 5 where a generator wrote 5.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    return value


def _positive(case):
    if isinstance(case.body, (dict, list)):
        case.body = _integral_floats_as_ints(case.body)
    return case


@pytest.mark.parametrize("label, mode", CASES, ids=[f"{label}-{mode.value}" for label, mode in CASES])
def test_no_server_errors(api_schema, label, mode):
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label
    calls = []
    strategy = operation.as_strategy(generation_mode=mode)
    if mode == schemathesis.GenerationMode.POSITIVE:
        strategy = strategy.map(_positive)

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def run(case):
        response = case.call(headers=AUTH)
        calls.append(response.status_code)
        assert response.status_code < 500, response.text
        if response.status_code == 413:    # refused by size before it is read (a huge generated list):
            return                         # right for any body, but the negative check does not list 413
        case.validate_response(response)

    run()
    assert calls, f"{label}: no request was generated"


# ---- what json.dumps never writes ---------------------------------------------------------------------
#: number literals a float attribute cannot be compared with
BEYOND_FLOAT = st.one_of(
    st.sampled_from(["1e400", "-1e400", "1E309", "2e308", "NaN", "Infinity", "-Infinity"]),
    st.integers(min_value=309, max_value=5000).map(lambda n: "9" * n),           # past 4300 digits: unparsable
    st.integers(min_value=309, max_value=400).map(lambda n: "-1" + "0" * n),
    st.floats(min_value=1.0, max_value=9.9).map(lambda m: f"{m:.3f}e{400}"),
)
#: JSON that is not an integer, for integer fields (bounds apart: those are the spec's own business)
NOT_AN_INTEGER = st.one_of(
    st.sampled_from(['"5"', '"10"', "true", "false", "5.0", "1e1", "-0.0", "null", "[5]", '{"k": 5}']),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"[0-9]{1,3}", fullmatch=True).map(lambda t: f'"{t}"'),
)
#: query strings that pydantic's lax int would read as numbers, or that are no integers at all
NOT_A_QUERY_INTEGER = st.one_of(
    st.sampled_from(["5.0", "1e1", "true", "0x10", "", " ", "5 5", "NaN", "Infinity"]),
    st.integers(min_value=19, max_value=400).map(lambda n: "9" * n),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)).map(repr),
)
BODIES = st.one_of(
    NOT_AN_INTEGER.map(lambda v: '{"user_id": "u1", "k": %s}' % v),
    NOT_AN_INTEGER.map(lambda v: '{"history": ["i1"], "k": %s}' % v),
    BEYOND_FLOAT.map(lambda v: '{"user_id": "u1", "filters": {"year": %s}}' % v),
    BEYOND_FLOAT.map(lambda v: '{"user_id": "u1", "filters": {"year": [1990, %s]}}' % v),
    BEYOND_FLOAT.map(lambda v: '{"user_id": "u1", "filters": {"year": {"min": 1990, "max": %s}}}' % v),
    BEYOND_FLOAT.map(lambda v: '{"user_id": "new", "user_features": {"age": %s}, "k": 3}' % v),
    BEYOND_FLOAT.filter(lambda v: v.lstrip("-").isdigit()).map(lambda v: '{"user_id": %s}' % v),
    BEYOND_FLOAT.filter(lambda v: v.lstrip("-").isdigit()).map(lambda v: '{"history": ["i1", %s]}' % v),
)
URLS = st.one_of(NOT_A_QUERY_INTEGER.map(lambda v: "/items?limit=" + quote(v)),
                 NOT_A_QUERY_INTEGER.map(lambda v: "/items/i0/similar?k=" + quote(v)))


def test_out_of_range_numbers_and_mistyped_integers(app):
    client = TestClient(app, headers=AUTH)
    statuses = []

    @given(request=st.one_of(BODIES.map(lambda b: ("POST", b)), URLS.map(lambda u: ("GET", u))))
    @settings(max_examples=max(40, 5 * EXAMPLES), deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True, database=None)
    def run(request):
        method, target = request
        if method == "POST":
            response = client.post("/recommend", content=target.encode(), headers={"content-type": "application/json"})
        else:
            response = client.get(target)
        statuses.append(response.status_code)
        assert response.status_code in (400, 422), (target[:200], response.status_code, response.text[:300])
        assert isinstance(response.json().get("detail"), str) and response.json()["detail"]

    run()
    assert 422 in statuses


@pytest.mark.parametrize("body", ['{"user_id": "u1", "filters": {"year": 1e400}}',
                                  '{"user_id": "u1", "filters": {"year": %s}}' % ("9" * 400),
                                  '{"user_id": "u1", "k": "5"}', '{"user_id": "u1", "k": true}',
                                  '{"user_id": "u1", "k": 5.0}'])
def test_the_issues_examples(app, body):
    """The cases from the bug report, always sent whatever Hypothesis draws."""
    response = TestClient(app, headers=AUTH).post("/recommend", content=body.encode(),
                                                  headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
