"""The REST API: FastAPI routes over a `RecommenderService`, bearer-token auth, size limits, 4xx errors.

Every user mistake is a 4xx whose `detail` says what was wrong; a 5xx is a bug (a schemathesis test
checks the OpenAPI spec for them). The demo page is served at `/`, the OpenAPI docs at `/docs` (Swagger
UI from local files: it works offline).

With a token, every route but `/health` needs it, the pages and `/openapi.json` included. Programs send
`Authorization: Bearer TOKEN`. A browser cannot add a header to a page load, so the pages answer 401
with an HTTP Basic challenge: the browser asks for a user name (any) and password (the token), then
sends them as `Authorization: Basic ...` with every request to this origin, including the page's own
`fetch` calls and Swagger UI's; the API accepts either form. The browser keeps the token per origin
(scheme, host and port), unlike a cookie, which would also reach other servers on the same host.

>>> from fastapi.testclient import TestClient
>>> client = TestClient(create_app(RecommenderService.from_artifact("ease_art")))
>>> client.post("/recommend", json={"history": ["50", "181"], "k": 5}).json()["items"][0]
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import secrets
from functools import cache
from importlib import resources
from typing import Annotated

import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBasic, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from towerrec.errors import TowerrecError, UnknownIdError
from towerrec.models.base import Recommendations
from towerrec.serve import schemas
from towerrec.serve.live import LiveService
from towerrec.serve.schemas import MAX_ID_LENGTH, MAX_K, NUMBER_SCHEMA, QUERY_INT
from towerrec.serve.service import Query as ServiceQuery
from towerrec.serve.service import RecommenderService, set_threads
from towerrec.serve.update_routes import add_update_routes

log = logging.getLogger("towerrec.serve")
#: bodies above this many bytes get 413 before they are parsed (a full 1000-item history is ~10 KiB)
MAX_BODY_BYTES = 256 * 1024

#: the demo page loads its script and styles from this server and talks to nothing else
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
#: Swagger UI sets inline styles and draws its icons from data: URIs (its maintainers' recommended
#: policy is "default-src 'self' data:"); its scripts are files of this server, so no inline script runs
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
#: everything else is JSON, never to be rendered or framed
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"))
BASIC_CHALLENGE = 'Basic realm="towerrec", charset="UTF-8"'
#: our own files under /static, and Swagger UI's under /docs (from the fastapi-offline package)
STATIC_FILES = {"demo.js": "text/javascript; charset=utf-8", "demo.css": "text/css; charset=utf-8"}
DOCS_FILES = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
              "favicon.png": "image/png", "docs.js": "text/javascript; charset=utf-8"}


class SecurityHeaders:
    """ASGI middleware: nosniff, no framing and no referrer on every response, and a deny-all
    Content-Security-Policy unless the route set its own (the pages do)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in present]
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", DEFAULT_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def check_token(token: str) -> str:
    """A usable token: printable ASCII without spaces (it travels in an HTTP header)."""
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise TowerrecError("the token must be non-empty printable ASCII without spaces")
    return token


def credentials_ok(header: str | None, token: bytes) -> bool:
    """`Authorization: Bearer TOKEN`, or `Basic base64(any-user:TOKEN)` (what a browser sends)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        given = value.encode("latin-1", "replace")
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value, validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            return False
    else:
        return False
    return secrets.compare_digest(given, token)


class _Documented:
    """Security schemes that only describe the API in OpenAPI (`auth` does the checking), so a
    malformed header gets our 401, not FastAPI's."""

    class Bearer(HTTPBearer):
        async def __call__(self, request: Request) -> None:  # type: ignore[override]
            return None

    class Basic(HTTPBasic):
        async def __call__(self, request: Request) -> None:  # type: ignore[override]
            return None


@cache
def _static_text(name: str) -> str:
    return resources.files("towerrec.serve").joinpath(f"static/{name}").read_text(encoding="utf-8")


@cache
def _docs_file(name: str) -> bytes | None:
    """A Swagger UI file, from fastapi-offline's copy of the swagger-ui-dist package (or ours: docs.js)."""
    if name == "docs.js":
        return _static_text(name).encode()
    try:
        return resources.files("fastapi_offline").joinpath(f"static/{name}").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        return None


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


def _items(service: RecommenderService, recs: Recommendations, explanations: list | None = None) -> list[dict]:
    """Row 0 of `recs` as API items (padding left out; scores JSON-safe), each with its explanation
    (`schemas.ItemExplanation`) when `explanations` are given (one per listed item, in order)."""
    out = []
    listed = [(idx, score) for idx, score in zip(recs.item_idx[0].tolist(), recs.scores[0].tolist()) if idx >= 0]
    for n, (idx, score) in enumerate(listed):
        item = service.catalogue.describe(idx)
        item["score"] = score if math.isfinite(score) else None
        if explanations is not None:
            item["explanation"] = _explanation(service, explanations[n])
        out.append(item)
    return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _explanation(service: RecommenderService, e) -> dict:
    """An `Explanation` as `schemas.ItemExplanation`: history items with their titles."""
    titles = service.catalogue.titles

    def reasons(contributions) -> list[dict]:
        out = []
        for c in contributions:
            idx = service.index_of(c.item_id)
            out.append({"item_id": c.item_id, "title": titles[idx] if titles is not None and idx is not None else None,
                        "weight": _finite(c.weight)})
        return out

    because, nearest = reasons(e.because), reasons(e.nearest)
    name = (because or nearest or [{}])[0]
    label = name.get("title") or name.get("item_id")
    sentence = (f"because you liked {label}" if because else
                f"close to {label} in the model's item space" if nearest else e.method)
    return {"sentence": sentence, "method": e.method, "because": because, "nearest": nearest,
            "features": [{"side": f.side, "feature": f.feature, "weight": _finite(f.weight)} for f in e.features]}


def create_app(service: RecommenderService | LiveService, *, token: str | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The FastAPI app for one loaded model. `token`: require `Authorization: Bearer <token>`.

    Every route reads the current service once, at its start, from a `LiveService`
    (`towerrec.serve.live`): a reload or a catalogue change swaps it between requests, never inside one."""
    from towerrec import __version__

    live = service if isinstance(service, LiveService) else LiveService(service)
    app = FastAPI(title="towerrec", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  description=f"Recommendations from a saved towerrec model ({live.service.model.name}).")
    app.state.service, app.state.live = live.service, live
    del service                       # routes read `live.service`, never the service this app started with
    secret = check_token(token).encode() if token is not None else None

    def authorized(request: Request) -> bool:
        return secret is None or credentials_ok(request.headers.get("authorization"), secret)

    def auth(request: Request,
             _bearer: None = Depends(_Documented.Bearer(scheme_name="HTTPBearer", description="programs: the token")),
             _basic: None = Depends(_Documented.Basic(scheme_name="HTTPBasic",
                                                      description="browsers: any user name, the token as password"))
             ) -> None:
        if not authorized(request):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    # without a token the spec declares no security scheme: it describes what the server checks
    protected = [Depends(auth)] if token is not None else []
    errors = schemas.ERROR_RESPONSES

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(exc)
        return JSONResponse({"detail": message, "errors": _jsonable_errors(exc)}, status_code=status)

    # Starlette's class: FastAPI raises it too (an unparsable body, an unknown route, a wrong method)
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
            # FastAPI's "error parsing the body" hides why: an integer over Python's 4300-digit limit,
            # bytes that are not UTF-8, a streamed body over the size limit (BodyLimit)
            detail = f"cannot parse the request body: {str(exc.__cause__).splitlines()[0][:200]}"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(TowerrecError)
    async def _towerrec(request: Request, exc: TowerrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    def page(request: Request, name: str, csp: str) -> HTMLResponse:
        """An HTML page, or (no token yet) the 401 that makes a browser ask for it."""
        if not authorized(request):
            return HTMLResponse(_static_text("unauthorized.html"), status_code=401,
                                headers={"WWW-Authenticate": BASIC_CHALLENGE})
        return HTMLResponse(_static_text(name), headers={"Content-Security-Policy": csp})

    @app.get("/", include_in_schema=False)
    def demo(request: Request) -> HTMLResponse:
        return page(request, "index.html", PAGE_CSP)

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        return page(request, "docs.html", DOCS_CSP)

    @app.get("/static/{name}", include_in_schema=False, dependencies=protected)
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, f"no static file {name!r}")
        return Response(_static_text(name), media_type=STATIC_FILES[name])

    @app.get("/docs/{name}", include_in_schema=False, dependencies=protected)
    def docs_file(name: str) -> Response:
        if name not in DOCS_FILES:
            raise HTTPException(404, f"no docs file {name!r}")
        data = _docs_file(name)
        if data is None:
            raise HTTPException(503, "the Swagger UI files are not installed: pip install 'towerrec[serve]'")
        return Response(data, media_type=DOCS_FILES[name], headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/openapi.json", include_in_schema=False, dependencies=protected)
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/health", response_model=schemas.Health)
    def health() -> dict:
        """Liveness: the model is loaded (no token needed)."""
        service = live.service
        return {"status": "ok", "model": service.model.name, "items": service.model.n_items}

    @app.get("/info", response_model=schemas.Info, dependencies=protected, responses=errors)
    def info() -> dict:
        """Model, data, catalogue, versions (model version and lineage), index kind and ANN recall@10."""
        service = live.service
        out = service.info()
        out["version"] = {**out["version"], **live.info()}
        return out

    @app.post("/recommend", response_model=schemas.RecommendResponse, dependencies=protected, responses=errors)
    # async on purpose: one request is ~0.3 ms of numpy. In FastAPI's thread pool, 8 concurrent
    # requests fought over the GIL (every torch/numpy call releases and re-takes it) and a single
    # worker managed ~300 req/s; on the event loop it serves ~1,000 (benchmarks/serve.py).
    async def recommend(body: schemas.RecommendRequest) -> Response:
        """Top-k items for a known user, a new user's `history`, or (fallback) by popularity."""
        service = live.service
        filters = {k: (v.model_dump() if isinstance(v, schemas.Range) else v) for k, v in (body.filters or {}).items()}
        query = ServiceQuery(user_id=body.user_id, history=body.history, k=body.k, exclude_seen=body.exclude_seen,
                             exclude_items=body.exclude_items, filters=filters or None,
                             user_features=body.user_features,
                             rerank=body.rerank.model_dump() if body.rerank is not None else None)
        try:
            recs = service.recommend(query)
        except UnknownIdError as exc:   # like /items/{item_id}: the item is not in this catalogue
            raise HTTPException(404, f"history: {exc}") from None
        explanations = service.explain(query, recs) if body.explain else None
        # the hot endpoint answers with orjson directly: `response_model` still documents (and the
        # schemathesis test checks) the shape, without a second validation pass per request
        payload = {"user_id": body.user_id, "items": _items(service, recs, explanations), "fallback": recs.fallback[0],
                   "model": service.model.name, "index": service.index.kind if service.index is not None else "model"}
        return Response(orjson.dumps(payload), media_type="application/json")

    @app.get("/items", response_model=schemas.ItemsResponse, dependencies=protected, responses=errors)
    def items(q: str = Query("", max_length=200, description="text to find in titles (case-insensitive)"),
              limit: Annotated[int, Query(ge=1, le=MAX_K), QUERY_INT] = 20) -> dict:
        """Search the catalogue by title; most popular matches first (empty q: the most popular items)."""
        service = live.service
        hits = service.catalogue.search(q, limit + service.model.n_items - int(service.active.sum())
                                        if service.active is not None else limit)
        hits = [i for i in hits if not service.is_retired(int(i))][:limit]
        return {"query": q, "items": [service.catalogue.describe(int(i)) for i in hits]}

    def _item_index(service: RecommenderService, item_id: str) -> int:
        idx = service.model.item_map_.get_index([item_id])
        if idx[0] < 0:
            raise HTTPException(404, f"unknown item: {item_id}")
        if service.is_retired(int(idx[0])):
            raise HTTPException(404, f"item {item_id} was retired from the catalogue")
        return int(idx[0])

    item_path = Path(..., min_length=1, max_length=MAX_ID_LENGTH,
                     description="an item id; it may contain '/' (as is, or escaped as %2F)")

    # `:path` lets ids contain "/"; the longer route goes first, so an id ending in "/similar" is
    # always read as the similar-items route of the id before it
    @app.get("/items/{item_id:path}/similar", response_model=schemas.SimilarResponse, dependencies=protected,
             responses=errors)
    def similar(item_id: str = item_path, k: Annotated[int, Query(ge=1, le=MAX_K), QUERY_INT] = 10) -> dict:
        """Items most like `item_id` (the item itself left out)."""
        service = live.service
        _item_index(service, item_id)
        try:
            recs = service.similar(item_id, k)
        except NotImplementedError as exc:
            raise HTTPException(422, f"{exc}; this model cannot rank similar items") from None
        return {"item_id": item_id, "items": _items(service, recs), "model": service.model.name}

    @app.get("/items/{item_id:path}", response_model=schemas.Item, dependencies=protected, responses=errors)
    def item(item_id: str = item_path) -> dict:
        """One catalogue item: title and attributes."""
        service = live.service
        return service.catalogue.describe(_item_index(service, item_id))

    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            service = live.service
            spec = default_openapi()
            body = spec["components"]["schemas"]["RecommendRequest"]["properties"]
            body["filters"] = filters_schema(service.catalogue, body["filters"].get("description", ""))
            if service.model.capabilities.user_features:
                body["user_features"] = user_features_schema(service.model.user_feature_columns(),
                                                             body["user_features"].get("description", ""))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    add_update_routes(app, live, has_token=secret is not None, authorized=authorized, errors=errors)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app


def filters_schema(catalogue, description: str) -> dict:
    """The `filters` schema of this artifact: its attribute names, numbers or ranges for numeric ones."""
    import pandas as pd

    props = {}
    for name, series in catalogue.attributes.items():
        if pd.api.types.is_numeric_dtype(series):
            one, extra = dict(NUMBER_SCHEMA), [{"$ref": "#/components/schemas/Range"}]
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
            props[c["name"]] = dict(NUMBER_SCHEMA)
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

    config = json.loads(os.environ["TOWERREC_SERVE_CONFIG"])
    # before loading: on a busy machine, multi-threaded OpenMP regions in a FAISS build can wait
    # on each other ~50x longer than one thread takes (PQ on 4000 items: 10 s vs 0.2 s)
    set_threads(int(config.get("threads", 1)))

    def load(path) -> RecommenderService:
        return RecommenderService.from_artifact(path, index_kind=config["index"], items_file=config.get("items"),
                                                faiss_config=FaissConfig(**config.get("faiss", {})))

    live = LiveService(load(config["artifact"]), source=config["artifact"], load=load,
                       workers=int(config.get("workers", 1)))
    live.watch(float(config.get("watch") or 0))
    return create_app(live, token=os.environ.get("TOWERREC_TOKEN") or None,
                      max_body_bytes=config.get("max_body_bytes", MAX_BODY_BYTES))


