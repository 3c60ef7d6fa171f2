"""Property-based API testing from the app's own OpenAPI spec: no generated request may get a 5xx.

Schemathesis generates valid (positive) and invalid (negative) requests for every operation,
8 of each, 80 per artifact, against tiny ALS, EASE and two-tower artifacts served in-process (ASGI, no sockets), and runs
its default checks on each response: not a server error, a documented status code, content type
and response schema. (Schemathesis's own pytest plugin does not load under pytest 9, so the test
drives its Python API with Hypothesis directly.)
"""
from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from towerrec.serve.app import create_app  # noqa: E402
from towerrec.serve.service import RecommenderService  # noqa: E402

#: per operation and mode; raise it for a deeper local run: TOWERREC_SCHEMATHESIS_EXAMPLES=300 pytest ...
EXAMPLES = int(os.environ.get("TOWERREC_SCHEMATHESIS_EXAMPLES", "8"))
OPERATIONS = ["GET /health", "GET /info", "POST /recommend", "GET /items", "GET /items/{item_id}",
              "GET /items/{item_id}/similar"]
# operations without parameters or a body have no invalid requests to generate
CASES = [(label, mode) for label in OPERATIONS for mode in schemathesis.GenerationMode
         if not (mode == schemathesis.GenerationMode.NEGATIVE and label in ("GET /health", "GET /info"))]


@pytest.fixture(scope="module", params=["als", "ease", "two_tower_users"])
def api_schema(request, als_artifact, ease_artifact, two_tower_users_artifact):
    """ALS is served through the retrieval index, EASE through its own `recommend`, the two-tower
    model through the index with user features (the fuzzed `user_features` reach its encoder)."""
    artifact = {"als": als_artifact, "ease": ease_artifact, "two_tower_users": two_tower_users_artifact}[request.param]
    app = create_app(RecommenderService.from_artifact(artifact))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_every_operation_is_covered(api_schema):
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize("label, mode", CASES, ids=[f"{label}-{mode.value}" for label, mode in CASES])
def test_no_server_errors(api_schema, label, mode):
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label
    calls = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def run(case):
        response = case.call_and_validate()
        calls.append(response.status_code)
        assert response.status_code < 500, response.text

    run()
    assert calls, f"{label}: no request was generated"
