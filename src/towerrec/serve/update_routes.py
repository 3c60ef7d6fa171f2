"""The routes that change what a server serves, all behind the token (and refused without one):

- `POST /admin/reload`: load the artifact (or the store's LATEST version) again and swap to it
  atomically (`towerrec.serve.live`); the old version answers until the swap, a failed load keeps it;
- `POST /items`: add catalogue items from their features / text (models that embed items from
  content: `capabilities.add_items`), into the model and the retrieval index;
- `DELETE /items/{id}`: retire an item: never recommended, listed as similar or found again.

With `--workers N > 1` each worker is its own process: these routes would change one of them, so
they answer 409 (use `--watch` and publish a new artifact version instead).
"""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from fastapi import FastAPI, HTTPException, Path, Request

from towerrec.errors import TowerrecError, UnknownIdError
from towerrec.serve.live import LiveService
from towerrec.serve.schemas import MAX_ID_LENGTH
from towerrec.serve.update_schemas import AddItemsRequest, AddItemsResponse, ReloadResponse, RetireResponse

NO_TOKEN = ("routes that change the served model need a token: start the server with --token-file FILE "
            "or $TOWERREC_TOKEN")


def add_update_routes(app: FastAPI, live: LiveService, *, has_token: bool, authorized: Callable[[Request], bool],
                      errors: dict) -> None:
    """Register the three routes on `app` (see the module docstring)."""
    responses = {**errors, 403: errors.get(401, {}) | {"description": "the server has no token"},
                 409: errors.get(422, {}) | {"description": "the change cannot be made on this server"}}

    def admin(request: Request) -> None:
        if not has_token:
            raise HTTPException(403, NO_TOKEN)
        if not authorized(request):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def single_process(what: str) -> None:
        if live.workers > 1:
            raise HTTPException(409, f"{what} would change one of {live.workers} worker processes: publish a new "
                                     "artifact version and let --watch reload every worker")

    @app.post("/admin/reload", response_model=ReloadResponse, responses=responses)
    def reload(request: Request) -> dict:
        """Load the artifact (a model store's LATEST version) again and serve it; 409 keeps the old one."""
        admin(request)
        single_process("an HTTP reload")
        try:
            out = live.reload()
        except TowerrecError as exc:
            raise HTTPException(409, str(exc)) from None
        app.openapi_schema = None            # filters and features may differ in the new version
        return out

    @app.post("/items", response_model=AddItemsResponse, responses=responses)
    def add_items(body: AddItemsRequest, request: Request) -> dict:
        """Add catalogue items, embedded from their features and text (content models only; others: 409)."""
        admin(request)
        single_process("adding items")
        rows = [{k: ("|".join(v) if isinstance(v, list) else v) for k, v in item.model_dump().items()}
                for item in body.items]
        frame = pd.DataFrame(rows)
        ids = frame["item_id"].astype(str)
        if ids.duplicated().any():
            raise HTTPException(409, f"items: duplicated item_id(s) {ids[ids.duplicated()].tolist()[:5]}")
        known = [i for i in ids if i in live.service.model.item_map_]
        if known:
            raise HTTPException(409, f"already in the catalogue: {known[:5]}")
        try:
            service = live.add_items(frame)
        except NotImplementedError as exc:       # this server's model cannot: a conflict with its state
            raise HTTPException(409, str(exc)) from None
        return {"added": ids.tolist(), "items": service.model.n_items, "model_version": service.model.version}

    item_path = Path(..., min_length=1, max_length=MAX_ID_LENGTH, description="an item id (may contain '/')")

    @app.delete("/items/{item_id:path}", response_model=RetireResponse, responses=responses)
    def retire(request: Request, item_id: str = item_path) -> dict:
        """Retire an item: it is never recommended, listed as similar or found by search again."""
        admin(request)
        single_process("retiring items")
        try:
            service = live.retire_items([item_id])
        except UnknownIdError:
            raise HTTPException(404, f"unknown item: {item_id}") from None
        active = service.active
        served = int(active.sum()) if active is not None else service.model.n_items
        return {"retired": item_id, "items": served, "model_version": service.model.version}
