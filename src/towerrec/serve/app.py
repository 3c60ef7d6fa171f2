"""The REST API: FastAPI routes over a `RecommenderService`, bearer-token auth, size limits, 4xx errors.

Every user mistake is a 4xx whose `detail` says what was wrong; a 5xx is a bug (a schemathesis test
checks the OpenAPI spec for them). The demo page is served at `/`, the OpenAPI docs at `/docs`.

>>> from fastapi.testclient import TestClient
>>> client = TestClient(create_app(RecommenderService.from_artifact("ease_art")))
>>> client.post("/recommend", json={"history": ["50", "181"], "k": 5}).json()["items"][0]
"""
from __future__ import annotations

import json
import logging
import math
import os
import secrets
from importlib import resources

import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from towerrec.errors import TowerrecError, UnknownIdError
from towerrec.models.base import Recommendations
from towerrec.serve import schemas
from towerrec.serve.schemas import MAX_ID_LENGTH, MAX_K
from towerrec.serve.service import Query as ServiceQuery
from towerrec.serve.service import RecommenderService

log = logging.getLogger("towerrec.serve")
#: bodies above this many bytes get 413 before they are parsed (a full 1000-item history is ~10 KiB)
MAX_BODY_BYTES = 256 * 1024


class BodyLimit:
    """ASGI middleware: 413 for a declared Content-Length over the limit, 400 for a longer streamed body."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _send_json(send, 413, {"detail": f"request body over {self.max_bytes} bytes"})
            return
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:   # chunked upload without a length: FastAPI answers 400
                raise ValueError(f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """One readable line from pydantic's error list; malformed JSON is 400, the rest 422."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {})
        return 400, f"malformed JSON body: {ctx.get('error', 'cannot parse')}"
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "; ".join(parts) + more


def _jsonable_errors(exc: RequestValidationError) -> list[dict]:
    out = []
    for e in exc.errors()[:20]:
        out.append({"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return out


def _items(service: RecommenderService, recs: Recommendations) -> list[dict]:
    """Row 0 of `recs` as API items (padding left out; scores JSON-safe)."""
    out = []
    for idx, score in zip(recs.item_idx[0].tolist(), recs.scores[0].tolist()):
        if idx < 0:
            continue
        item = service.catalogue.describe(idx)
        item["score"] = score if math.isfinite(score) else None
        out.append(item)
    return out


def create_app(service: RecommenderService, *, token: str | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The FastAPI app for one loaded model. `token`: require `Authorization: Bearer <token>`."""
    from towerrec import __version__

    app = FastAPI(title="towerrec", version=__version__,
                  description=f"Recommendations from a saved towerrec model ({service.model.name}).")
    app.state.service = service
    bearer = HTTPBearer(auto_error=False, description="set when the server was started with a token")
    index_kind = service.index.kind if service.index is not None else "model"

    def auth(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    # without a token the spec declares no security scheme: it describes what the server checks
    protected = [Depends(auth)] if token is not None else []
    errors = schemas.ERROR_RESPONSES

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(exc)
        return JSONResponse({"detail": message, "errors": _jsonable_errors(exc)}, status_code=status)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(TowerrecError)
    async def _towerrec(request: Request, exc: TowerrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/", include_in_schema=False)
    def demo() -> HTMLResponse:
        page = resources.files("towerrec.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(page)

    @app.get("/health", response_model=schemas.Health)
    def health() -> dict:
        """Liveness: the model is loaded (no token needed)."""
        return {"status": "ok", "model": service.model.name, "items": service.model.n_items}

    @app.get("/info", dependencies=protected, responses=errors)
    def info() -> dict:
        """Model, data, catalogue, versions, index kind and ANN recall@10 against exact search."""
        return service.info()

    @app.post("/recommend", response_model=schemas.RecommendResponse, dependencies=protected, responses=errors)
    # async on purpose: one request is ~0.3 ms of numpy. In FastAPI's thread pool, 8 concurrent
    # requests fought over the GIL (every torch/numpy call releases and re-takes it) and a single
    # worker managed ~300 req/s; on the event loop it serves ~1,000 (benchmarks/serve.py).
    async def recommend(body: schemas.RecommendRequest) -> Response:
        """Top-k items for a known user, a new user's `history`, or (fallback) by popularity."""
        filters = {k: (v.model_dump() if isinstance(v, schemas.Range) else v) for k, v in (body.filters or {}).items()}
        try:
            recs = service.recommend(ServiceQuery(user_id=body.user_id, history=body.history, k=body.k,
                                                  exclude_seen=body.exclude_seen, exclude_items=body.exclude_items,
                                                  filters=filters or None, user_features=body.user_features))
        except UnknownIdError as exc:   # like /items/{item_id}: the item is not in this catalogue
            raise HTTPException(404, f"history: {exc}") from None
        # the hot endpoint answers with orjson directly: `response_model` still documents (and the
        # schemathesis test checks) the shape, without a second validation pass per request
        payload = {"user_id": body.user_id, "items": _items(service, recs), "fallback": recs.fallback[0],
                   "model": service.model.name, "index": index_kind}
        return Response(orjson.dumps(payload), media_type="application/json")

    @app.get("/items", response_model=schemas.ItemsResponse, dependencies=protected, responses=errors)
    def items(q: str = Query("", max_length=200, description="text to find in titles (case-insensitive)"),
              limit: int = Query(20, ge=1, le=MAX_K)) -> dict:
        """Search the catalogue by title; most popular matches first (empty q: the most popular items)."""
        hits = service.catalogue.search(q, limit)
        return {"query": q, "items": [service.catalogue.describe(int(i)) for i in hits]}

    def _item_index(item_id: str) -> int:
        idx = service.model.item_map_.get_index([item_id])
        if idx[0] < 0:
            raise HTTPException(404, f"unknown item: {item_id}")
        return int(idx[0])

    item_path = Path(..., min_length=1, max_length=MAX_ID_LENGTH)

    @app.get("/items/{item_id}", response_model=schemas.Item, dependencies=protected, responses=errors)
    def item(item_id: str = item_path) -> dict:
        """One catalogue item: title and attributes."""
        return service.catalogue.describe(_item_index(item_id))

    @app.get("/items/{item_id}/similar", response_model=schemas.SimilarResponse, dependencies=protected,
             responses=errors)
    def similar(item_id: str = item_path, k: int = Query(10, ge=1, le=MAX_K)) -> dict:
        """Items most like `item_id` (the item itself left out)."""
        _item_index(item_id)
        try:
            recs = service.similar(item_id, k)
        except NotImplementedError as exc:
            raise HTTPException(422, f"{exc}; this model cannot rank similar items") from None
        return {"item_id": item_id, "items": _items(service, recs), "model": service.model.name}

    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = default_openapi()
            body = spec["components"]["schemas"]["RecommendRequest"]["properties"]
            body["filters"] = filters_schema(service.catalogue, body["filters"].get("description", ""))
            if service.model.capabilities.user_features:
                body["user_features"] = user_features_schema(service.model.user_feature_columns(),
                                                             body["user_features"].get("description", ""))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


def filters_schema(catalogue, description: str) -> dict:
    """The `filters` schema of this artifact: its attribute names, numbers or ranges for numeric ones."""
    import pandas as pd

    props = {}
    for name, series in catalogue.attributes.items():
        if pd.api.types.is_numeric_dtype(series):
            one, extra = {"type": "number"}, [{"$ref": "#/components/schemas/Range"}]
        else:
            one, extra = {"type": "string", "minLength": 1}, []
        props[name] = {"anyOf": [one, {"type": "array", "items": one, "minItems": 1, "maxItems": 100}, *extra]}
    return {"anyOf": [{"type": "object", "properties": props, "additionalProperties": False},
                      {"type": "null"}], "description": description}


def user_features_schema(columns: list[dict], description: str) -> dict:
    """The `user_features` schema of a model that embeds them: its feature names, numbers for
    numeric ones, a string (or a list, multi-valued) for categories; any other name is a 422."""
    props = {}
    for c in columns:
        if c["kind"] == "numeric":
            props[c["name"]] = {"type": "number"}
        elif c["kind"] == "multi":
            one = {"type": "string", "maxLength": MAX_ID_LENGTH}
            props[c["name"]] = {"anyOf": [one, {"type": "array", "items": one, "maxItems": 100}]}
        else:
            props[c["name"]] = {"type": "string", "maxLength": MAX_ID_LENGTH}
    return {"anyOf": [{"type": "object", "properties": props, "additionalProperties": False},
                      {"type": "null"}], "description": description}


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` workers: the artifact and options come from TOWERREC_SERVE_* variables."""
    from towerrec.index import FaissConfig
    from towerrec.serve.commands import set_threads

    config = json.loads(os.environ["TOWERREC_SERVE_CONFIG"])
    # before loading: on a busy machine, multi-threaded OpenMP regions in a FAISS build can wait
    # on each other ~50x longer than one thread takes (PQ on 4000 items: 10 s vs 0.2 s)
    set_threads(int(config.get("threads", 1)))
    service = RecommenderService.from_artifact(config["artifact"], index_kind=config["index"],
                                               items_file=config.get("items"),
                                               faiss_config=FaissConfig(**config.get("faiss", {})))
    return create_app(service, token=os.environ.get("TOWERREC_TOKEN") or None,
                      max_body_bytes=config.get("max_body_bytes", MAX_BODY_BYTES))


