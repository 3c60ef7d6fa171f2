"""Serving a saved model over HTTP (the `serve` extra: FastAPI, uvicorn, FAISS).

Public surface: `RecommenderService` (a model + catalogue + retrieval index, no HTTP), `Query`,
`create_app` (the FastAPI app), imported on first use.
"""
from __future__ import annotations

from towerrec.lazy import lazy_exports

_PUBLIC = {
    "RecommenderService": "towerrec.serve.service",
    "Query": "towerrec.serve.service",
    "create_app": "towerrec.serve.app",
}
__getattr__, __all__ = lazy_exports("towerrec.serve", _PUBLIC)
