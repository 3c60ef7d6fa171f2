"""Serving a saved model over HTTP (the `serve` extra: FastAPI, uvicorn, FAISS).

Public surface: `RecommenderService` (a model + catalogue + retrieval index, no HTTP), `Query`,
`create_app` (the FastAPI app), imported on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {"RecommenderService": "towerrec.serve.service", "Query": "towerrec.serve.service",
           "create_app": "towerrec.serve.app"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'towerrec.serve' has no attribute {name!r}")
