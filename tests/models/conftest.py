"""Fixtures shared by the two-tower preset tests (test_two_tower*.py, test_fism/lightgcn/multvae.py)."""
from __future__ import annotations

import pytest

from test_two_tower import _genre_data, _tables


@pytest.fixture(scope="module")
def data():
    """The genre-structured log of test_two_tower.py: interactions, user and item frames, and their tables."""
    inter, users, items = _genre_data()
    return inter, users, items, *_tables(inter, users, items)
