"""Where the real datasets live for tests: ../shared/data; missing data fails under CI=true, else skips.

A module of its own (not conftest) so test files in any folder can import it unambiguously.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("TOWERREC_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of ../shared/data/<name>; a missing folder fails in CI and skips elsewhere."""
    path = SHARED_DATA / name
    if not (path / "interactions.csv").exists():
        message = f"real dataset {name!r} not found at {path}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
